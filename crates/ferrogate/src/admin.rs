//! `ferrogate tenants …`, `ferrogate keys …`, `ferrogate usage`: an HTTP client of the admin API
//! (`/admin/v1`), authenticated by the master key from `FERROGATE_MASTER_KEY`. Readable tables by
//! default, the API's JSON with `--json` (and CSV for usage with `--csv`).
//!
//! Invariant: the master key is read from the environment only (never a flag: it would show in
//! `ps` and shell history), and a client key is printed once, by `keys create` / `keys rotate`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ferrogate_core::tenancy::time::{self, now_ms};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::table::Table;

/// Where the gateway is.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The gateway's base URL.
    #[arg(long, env = "FERROGATE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args, Default)]
pub struct LimitArgs {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens (prompt + completion) per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Largest max_tokens of one request (and the default when a request sets none).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Token budget per UTC day.
    #[arg(long)]
    daily_tokens: Option<u64>,
    /// Token budget per UTC month.
    #[arg(long)]
    monthly_tokens: Option<u64>,
    /// Cost budget per UTC day, USD (priced with the configured [prices.<model>]).
    #[arg(long)]
    daily_usd: Option<f64>,
    /// Cost budget per UTC month, USD.
    #[arg(long)]
    monthly_usd: Option<f64>,
}

impl LimitArgs {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        put("requests_per_minute", self.rpm.map(Value::from));
        put("tokens_per_minute", self.tpm.map(Value::from));
        put("max_concurrent_requests", self.concurrency.map(Value::from));
        put("max_tokens_per_request", self.max_tokens.map(Value::from));
        put("tokens_per_day", self.daily_tokens.map(Value::from));
        put("tokens_per_month", self.monthly_tokens.map(Value::from));
        put("usd_per_day", self.daily_usd.map(Value::from));
        put("usd_per_month", self.monthly_usd.map(Value::from));
        Value::Object(m)
    }
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (a team); its limits cap all its keys together.
    Create {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List tenants.
    List,
    /// Delete a tenant (refused while it has keys that are not revoked).
    Delete {
        /// Tenant name or id.
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key; it is printed once and cannot be shown again.
    Create {
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
        /// A name for the key ("ci", "alice's laptop").
        #[arg(long, default_value = "default")]
        name: String,
        /// Models the key may use, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Endpoint groups, comma-separated: inference, batch, usage-read (default: inference,batch).
        #[arg(long, value_delimiter = ',')]
        endpoints: Vec<String>,
        /// Expire after this long: 30d, 12h, 90m.
        #[arg(long)]
        expires_in: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List keys (revoked ones too).
    List {
        /// Only this tenant's keys (name or id).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Issue a new secret for a key (same id, prefix, scopes, limits); prints it once.
    Rotate {
        /// The key's id or its shown prefix (`fg-k3j9x2ab`).
        id: String,
    },
    /// Revoke a key for good; every instance refuses it within about a second.
    Revoke {
        /// The key's id or its shown prefix (`fg-k3j9x2ab`).
        id: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    /// Group by tenant, key, model, backend, hour or day.
    #[arg(long, default_value = "tenant")]
    by: String,
    /// Start: a duration back from now (24h, 7d, 30m) or a UTC date/time (2025-01-31, 2025-01-31T12:00Z).
    #[arg(long, default_value = "24h")]
    since: String,
    /// End (exclusive), same forms; default now.
    #[arg(long)]
    until: Option<String>,
    /// Only this tenant (name or id).
    #[arg(long)]
    tenant: Option<String>,
    /// Only this key (id).
    #[arg(long)]
    key: Option<String>,
    /// CSV instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
}

// === the HTTP client ===

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    master: String,
}

impl Client {
    pub(crate) fn new(t: &Target) -> anyhow::Result<Self> {
        let master = std::env::var("FERROGATE_MASTER_KEY").unwrap_or_default();
        if master.is_empty() {
            bail!("set FERROGATE_MASTER_KEY to the gateway's master key");
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self { http, base: t.url.trim_end_matches('/').to_owned(), master })
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.master);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.with_context(|| format!("cannot reach ferrogate at {}", self.base))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let error = serde_json::from_str::<Value>(&text).ok().map(|v| v["error"].clone()).unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND && error["code"] == "unknown_url" {
            bail!("{}", tenancy_off(&self.base));
        }
        let message = error["message"].as_str().map_or(text, str::to_owned);
        bail!("{status}: {message}")
    }

    /// The key whose id or shown prefix (`fg-uyjrgqlf`) is `id_or_prefix`: its id.
    async fn key_id(&self, id_or_prefix: &str) -> anyhow::Result<String> {
        if !id_or_prefix.starts_with("fg-") {
            return Ok(id_or_prefix.to_owned());
        }
        let keys = self.json(Method::GET, "/admin/v1/keys", None).await?;
        let data = keys["data"].as_array().cloned().unwrap_or_default();
        match data.iter().find(|k| k["prefix"] == id_or_prefix).and_then(|k| k["id"].as_str()) {
            Some(id) => Ok(id.to_owned()),
            None => bail!("no key with prefix '{id_or_prefix}' (see `ferrogate keys list`)"),
        }
    }

    pub(crate) async fn json(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let res = self.send(method, path, body).await?;
        if res.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        Ok(res.json().await?)
    }
}

/// What to say when the gateway has no admin API: tenancy is off there.
fn tenancy_off(base: &str) -> String {
    format!(
        "the gateway at {base} has tenancy off, so it has no tenants, keys or usage to manage.\n\
         Start it with FERROGATE_MASTER_KEY set (or [tenancy] master_key in its config) to turn tenancy on \
         (README, \"Tenants, keys and usage\")."
    )
}

/// Percent-encodes a query value.
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// "30d", "12h", "90m", "45s" → milliseconds.
fn duration_ms(s: &str) -> Option<i64> {
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

/// A relative duration back from now, or an absolute time.
fn time_arg(s: &str) -> anyhow::Result<i64> {
    duration_ms(s)
        .map(|d| now_ms() - d)
        .or_else(|| time::parse_time(s))
        .with_context(|| format!("'{s}' is neither a duration (24h, 7d) nor a time (2025-01-31, 2025-01-31T12:00Z)"))
}

pub(crate) fn when(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".into(), |ms| time::format_datetime(ms).replace('T', " "))
}

fn limits_text(v: &Value) -> String {
    let Some(m) = v.as_object().filter(|m| !m.is_empty()) else { return "-".into() };
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// A scope list as `a,b`, or `all` when the key is not limited.
fn scope_text(v: &Value) -> String {
    v.as_array()
        .filter(|m| !m.is_empty())
        .map_or_else(|| "all".into(), |m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
}

fn expiry_text(v: &Value) -> String {
    if v.is_null() { "never".into() } else { when(v) }
}

// === tenants ===

pub async fn tenants(t: Target, cmd: TenantCommand) -> anyhow::Result<()> {
    let c = Client::new(&t)?;
    match cmd {
        TenantCommand::Create { name, limits } => {
            let v = c
                .json(Method::POST, "/admin/v1/tenants", Some(json!({"name": name, "limits": limits.to_json()})))
                .await?;
            if t.json {
                print_json(&v)?;
            } else {
                println!(
                    "Created tenant {} (id {}).",
                    v["name"].as_str().unwrap_or(""),
                    v["id"].as_str().unwrap_or("")
                );
            }
        }
        TenantCommand::List => {
            let v = c.json(Method::GET, "/admin/v1/tenants", None).await?;
            if t.json {
                return print_json(&v);
            }
            let mut table = Table::new(["NAME", "ID", "LIMITS", "CREATED"]);
            for x in v["data"].as_array().into_iter().flatten() {
                table.row([
                    x["name"].as_str().unwrap_or("").to_owned(),
                    x["id"].as_str().unwrap_or("").to_owned(),
                    limits_text(&x["limits"]),
                    when(&x["created_at_ms"]),
                ]);
            }
            print!("{table}");
        }
        TenantCommand::Delete { tenant } => {
            c.json(Method::DELETE, &format!("/admin/v1/tenants/{}", enc(&tenant)), None).await?;
            if !t.json {
                println!("Deleted tenant {tenant}.");
            }
        }
    }
    Ok(())
}

// === keys ===

fn print_secret(v: &Value, what: &str) {
    println!(
        "{what} key {} \"{}\" (id {}).\nThis is the only time the key is shown; store it now:\n\n  {}\n",
        v["prefix"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or(""),
        v["id"].as_str().unwrap_or(""),
        v["key"].as_str().unwrap_or("")
    );
}

pub async fn keys(t: Target, cmd: KeyCommand) -> anyhow::Result<()> {
    let c = Client::new(&t)?;
    match cmd {
        KeyCommand::Create { tenant, name, models, endpoints, expires_in, limits } => {
            let mut body = json!({"tenant": tenant, "name": name, "limits": limits.to_json()});
            let mut scopes = Map::new();
            if !models.is_empty() {
                scopes.insert("models".into(), json!(models));
            }
            if !endpoints.is_empty() {
                scopes.insert("endpoints".into(), json!(endpoints));
            }
            if !scopes.is_empty() {
                body["scopes"] = Value::Object(scopes);
            }
            if let Some(e) = expires_in {
                let ms = duration_ms(&e).with_context(|| format!("--expires-in '{e}': use 30d, 12h or 90m"))?;
                body["expires_at_ms"] = json!(now_ms() + ms);
            }
            let v = c.json(Method::POST, "/admin/v1/keys", Some(body)).await?;
            if t.json { print_json(&v)? } else { print_secret(&v, "Created") }
        }
        KeyCommand::List { tenant } => {
            let path = match &tenant {
                Some(x) => format!("/admin/v1/keys?tenant={}", enc(x)),
                None => "/admin/v1/keys".into(),
            };
            let v = c.json(Method::GET, &path, None).await?;
            if t.json {
                return print_json(&v);
            }
            let tenants = c.json(Method::GET, "/admin/v1/tenants", None).await?;
            let tenant_name = |id: &Value| {
                tenants["data"].as_array().into_iter().flatten().find(|x| x["id"] == *id).map_or_else(
                    || id.as_str().unwrap_or("").to_owned(),
                    |x| x["name"].as_str().unwrap_or("").to_owned(),
                )
            };
            let mut table = Table::new([
                "PREFIX",
                "NAME",
                "TENANT",
                "STATUS",
                "MODELS",
                "ENDPOINTS",
                "LIMITS",
                "EXPIRES",
                "CREATED",
                "ID",
            ]);
            for k in v["data"].as_array().into_iter().flatten() {
                table.row([
                    k["prefix"].as_str().unwrap_or("").to_owned(),
                    k["name"].as_str().unwrap_or("").to_owned(),
                    tenant_name(&k["tenant_id"]),
                    k["status"].as_str().unwrap_or("").to_owned(),
                    scope_text(&k["scopes"]["models"]),
                    scope_text(&k["scopes"]["endpoints"]),
                    limits_text(&k["limits"]),
                    expiry_text(&k["expires_at_ms"]),
                    when(&k["created_at_ms"]),
                    k["id"].as_str().unwrap_or("").to_owned(),
                ]);
            }
            print!("{table}");
        }
        KeyCommand::Rotate { id } => {
            let id = c.key_id(&id).await?;
            let v = c.json(Method::POST, &format!("/admin/v1/keys/{}/rotate", enc(&id)), None).await?;
            if t.json { print_json(&v)? } else { print_secret(&v, "Rotated") }
        }
        KeyCommand::Revoke { id } => {
            let id = c.key_id(&id).await?;
            let v = c.json(Method::POST, &format!("/admin/v1/keys/{}/revoke", enc(&id)), None).await?;
            if t.json {
                print_json(&v)?;
            } else {
                println!("Revoked key {} (id {}).", v["prefix"].as_str().unwrap_or(""), v["id"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

// === usage ===

pub async fn usage(t: Target, a: UsageArgs) -> anyhow::Result<()> {
    let c = Client::new(&t)?;
    let mut path = format!("/admin/v1/usage?group_by={}&from={}", enc(&a.by), time_arg(&a.since)?);
    if let Some(u) = &a.until {
        path.push_str(&format!("&to={}", time_arg(u)?));
    }
    for (name, v) in [("tenant", &a.tenant), ("key", &a.key)] {
        if let Some(v) = v {
            path.push_str(&format!("&{name}={}", enc(v)));
        }
    }
    if a.csv {
        let text = c.send(Method::GET, &format!("{path}&format=csv"), None).await?.text().await?;
        print!("{text}");
        return Ok(());
    }
    let v = c.json(Method::GET, &path, None).await?;
    if t.json {
        return print_json(&v);
    }
    let cols =
        ["requests", "prompt_tokens", "cached_tokens", "completion_tokens", "total_tokens", "errors", "cancelled"];
    let mut table = Table::new([
        a.by.to_uppercase().as_str(),
        "REQUESTS",
        "PROMPT",
        "CACHED",
        "COMPLETION",
        "TOTAL",
        "ERRORS",
        "CANCELLED",
    ]);
    let mut sums = [0u64; 7];
    for r in v["data"].as_array().into_iter().flatten() {
        let mut cells = vec![group_text(r, &a.by)];
        for (i, col) in cols.iter().enumerate() {
            let n = r[*col].as_u64().unwrap_or(0);
            sums[i] += n;
            cells.push(n.to_string());
        }
        table.row(cells);
    }
    table.row(std::iter::once("TOTAL".to_owned()).chain(sums.iter().map(u64::to_string)));
    println!("Usage by {} from {} to {} (UTC)\n", a.by, when(&v["from"]), when(&v["to"]));
    print!("{table}");
    Ok(())
}

/// A row's group as a person reads it: a tenant's or key's label, or for models the name asked
/// for with the deployment that served it (`default (served by smollm2)`).
fn group_text(row: &Value, by: &str) -> String {
    let group = row["group"].as_str().filter(|g| !g.is_empty());
    let label = row["label"].as_str().filter(|l| !l.is_empty());
    match (group, label) {
        (Some(g), Some(l)) if by == "model" => format!("{g} ({l})"),
        (_, Some(l)) => l.to_owned(),
        (Some(g), None) => g.to_owned(),
        (None, None) => "(none)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(duration_ms("24h"), Some(86_400_000));
        assert_eq!(duration_ms("30m"), Some(1_800_000));
        assert_eq!(duration_ms("7d"), Some(604_800_000));
        assert_eq!(duration_ms("h"), None);
        assert_eq!(duration_ms(""), None);
        assert_eq!(time_arg("2024-02-29").ok(), Some(1_709_164_800_000));
        assert!(time_arg("soon").is_err());
        assert_eq!(enc("a b&c"), "a%20b%26c");
    }
}
