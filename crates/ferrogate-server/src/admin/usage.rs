//! Usage reports: `GET /admin/v1/usage` (master key: any tenant or key) and `GET /v1/usage` (a
//! client key with the `usage-read` scope: its own tenant only, plus the remaining budgets of the
//! key and the tenant). JSON, or CSV with `format=csv` or `Accept: text/csv`.
//!
//! Invariant: a client key never sees another tenant's rows — a filter naming another tenant or
//! its key is 404, exactly like an id that does not exist.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferrogate_core::tenancy::quota::Seed;
use ferrogate_core::tenancy::time::{self, DAY_MS};
use ferrogate_core::tenancy::{GroupBy, KeyId, KeyLookup, Limits, TenantId, UsageQuery, UsageRow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{query, tenancy};
use crate::error::ApiError;
use crate::request::RequestCx;
use crate::state::AppState;
use crate::tenancy::Tenancy;
use crate::tenancy::quotas::OwnerId;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// tenant | key | model | backend | hour | day.
    #[serde(default)]
    group_by: Option<String>,
    /// Start (inclusive): unix ms, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]Z`; default 24 h ago.
    #[serde(default)]
    from: Option<String>,
    /// End (exclusive), same forms; default now.
    #[serde(default)]
    to: Option<String>,
    /// Only this tenant (id or name).
    #[serde(default)]
    tenant: Option<String>,
    /// Only this key (id).
    #[serde(default)]
    key: Option<String>,
    /// json (default) or csv.
    #[serde(default)]
    format: Option<String>,
}

struct Window {
    group_by: GroupBy,
    from_ms: i64,
    to_ms: i64,
}

fn window(p: &UsageParams, default_group: GroupBy, now_ms: i64) -> Result<Window, ApiError> {
    let group_by = match &p.group_by {
        Some(g) => g
            .parse()
            .map_err(|e: ferrogate_core::tenancy::InvalidInput| ApiError::invalid(Some("group_by".into()), e.0))?,
        None => default_group,
    };
    let at = |name: &str, v: &Option<String>, default: i64| match v {
        None => Ok(default),
        Some(s) => time::parse_time(s).ok_or_else(|| {
            ApiError::invalid(
                Some(name.into()),
                format!("'{s}' is not a time: use unix ms, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"),
            )
        }),
    };
    let from_ms = at("from", &p.from, now_ms - DAY_MS)?;
    let to_ms = at("to", &p.to, now_ms + 1)?;
    if from_ms > to_ms {
        return Err(ApiError::invalid(Some("from".into()), "from is after to"));
    }
    Ok(Window { group_by, from_ms, to_ms })
}

fn wants_csv(p: &UsageParams, headers: &HeaderMap) -> Result<bool, ApiError> {
    match p.format.as_deref() {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::invalid(Some("format".into()), format!("unknown format '{other}' (json, csv)"))),
        None => Ok(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"))),
    }
}

fn row_json(r: &UsageRow, labels: &HashMap<String, String>) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["total_tokens"] = Value::from(r.totals.total_tokens());
    if let Some(l) = labels.get(&r.group) {
        v["label"] = Value::from(l.as_str());
    }
    v
}

/// One CSV cell. A text starting with `=`, `+`, `-`, `@`, tab or CR is prefixed with `'`, so a
/// spreadsheet shows it rather than evaluating it as a formula (OWASP's CSV injection advice):
/// group labels include model names, which clients choose.
fn csv_field(s: &str) -> String {
    let s = match s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => Cow::Owned(format!("'{s}")),
        false => Cow::Borrowed(s),
    };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.into_owned() }
}

/// One header line and one line per group.
pub fn csv(rows: &[UsageRow], labels: &HashMap<String, String>) -> String {
    let mut out = String::from(
        "group,label,requests,prompt_tokens,cached_tokens,completion_tokens,total_tokens,errors,cancelled\n",
    );
    for r in rows {
        let t = &r.totals;
        let label = labels.get(&r.group).map_or("", String::as_str);
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            csv_field(&r.group),
            csv_field(label),
            t.requests,
            t.prompt_tokens,
            t.cached_tokens,
            t.completion_tokens,
            t.total_tokens(),
            t.errors,
            t.cancelled
        );
    }
    out
}

/// Readable names of tenant and key groups (`acme`, `fg-abcd1234 (ci)`).
async fn labels(
    t: &Tenancy,
    group_by: GroupBy,
    tenant: Option<&TenantId>,
) -> Result<HashMap<String, String>, ApiError> {
    Ok(match group_by {
        GroupBy::Tenant => t.store.list_tenants().await?.into_iter().map(|x| (x.id.to_string(), x.name)).collect(),
        GroupBy::Key => t
            .store
            .list_keys(tenant)
            .await?
            .into_iter()
            .map(|k| (k.id.to_string(), format!("{} ({})", k.prefix, k.name)))
            .collect(),
        GroupBy::Model | GroupBy::Backend | GroupBy::Hour | GroupBy::Day => HashMap::new(),
    })
}

/// For `group_by=model`, the deployment behind each name asked for: an alias's deployment, or
/// the tiers `auto` chooses between. A deployment's own name needs no label.
fn model_labels(st: &AppState) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    for d in st.registry.deployments() {
        for alias in &d.aliases {
            labels.insert(alias.clone(), format!("served by {}", d.name));
        }
    }
    if let Some(t) = &st.tiers {
        labels.insert(t.model.clone(), format!("served by {} (small) or {} (large)", t.small(), t.large()));
    }
    labels
}

fn render(csv_wanted: bool, w: &Window, rows: &[UsageRow], labels: &HashMap<String, String>, extra: Value) -> Response {
    if csv_wanted {
        return ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv(rows, labels)).into_response();
    }
    let mut v = json!({
        "object": "usage_report",
        "group_by": w.group_by,
        "from": w.from_ms,
        "to": w.to_ms,
        "data": rows.iter().map(|r| row_json(r, labels)).collect::<Vec<_>>(),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    Json(v).into_response()
}

/// `GET /admin/v1/usage`.
pub async fn admin(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let p = query(q)?;
    let w = window(&p, GroupBy::Tenant, t.now_ms())?;
    let csv_wanted = wants_csv(&p, &headers)?;
    let tenant = match &p.tenant {
        Some(id) => Some(super::tenants::resolve(t.store.as_ref(), id).await?.id),
        None => None,
    };
    let key = match &p.key {
        Some(id) => {
            Some(t.store.get_key(&KeyId::from(id.as_str())).await?.ok_or_else(|| ApiError::not_found("key", id))?.id)
        }
        None => None,
    };
    let rows = t
        .store
        .query_usage(&UsageQuery { from_ms: w.from_ms, to_ms: w.to_ms, group_by: w.group_by, tenant, key })
        .await?;
    let labels = match w.group_by {
        GroupBy::Model => model_labels(&st),
        g => labels(t, g, None).await?,
    };
    Ok(render(csv_wanted, &w, &rows, &labels, json!({})))
}

/// `GET /v1/usage`: the calling key's tenant only, and the remaining budgets.
pub async fn client(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    headers: HeaderMap,
    q: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let Some(me) = cx.caller.as_ref().and_then(|c| c.principal.key()).cloned() else {
        return Err(ApiError::permission_denied(
            crate::error::ErrorCode::EndpointNotAllowed,
            None,
            "Usage is reported per tenant: use a stored API key with the usage-read scope",
        ));
    };
    let p = query(q)?;
    let w = window(&p, GroupBy::Day, t.now_ms())?;
    let csv_wanted = wants_csv(&p, &headers)?;
    if let Some(other) = &p.tenant
        && *other != me.tenant.name
        && other.as_str() != me.tenant.id.as_str()
    {
        return Err(ApiError::not_found("tenant", other));
    }
    let key = match &p.key {
        Some(id) => match t.store.get_key(&KeyId::from(id.as_str())).await? {
            Some(k) if k.tenant_id == me.tenant.id => Some(k.id),
            _ => return Err(ApiError::not_found("key", id)),
        },
        None => None,
    };
    let tenant = Some(me.tenant.id.clone());
    let q = UsageQuery { from_ms: w.from_ms, to_ms: w.to_ms, group_by: w.group_by, tenant, key };
    let rows = t.store.query_usage(&q).await?;
    let labels = match w.group_by {
        GroupBy::Tenant => HashMap::from([(me.tenant.id.to_string(), me.tenant.name.clone())]),
        GroupBy::Model => model_labels(&st),
        g => labels(t, g, Some(&me.tenant.id)).await?,
    };
    let extra = json!({
        "tenant": { "id": me.tenant.id, "name": me.tenant.name },
        "key": { "id": me.key.id, "prefix": me.key.prefix, "name": me.key.name },
        "budgets": budgets_of(t, &me).await?,
    });
    Ok(render(csv_wanted, &w, &rows, &labels, extra))
}

/// The key's and its tenant's budgets: limit, used (including requests in flight), remaining
/// and when each resets.
async fn budgets_of(t: &Tenancy, me: &KeyLookup) -> Result<Value, ApiError> {
    let now = t.now_ms();
    let key = t.quotas.usage(OwnerId::Key(me.key.id.clone())).await?;
    let tenant = t.quotas.usage(OwnerId::Tenant(me.tenant.id.clone())).await?;
    Ok(json!({ "key": budget_list(&me.key.limits, key, now), "tenant": budget_list(&me.tenant.limits, tenant, now) }))
}

fn budget_list(l: &Limits, used: Seed, now_ms: i64) -> Vec<Value> {
    let next_day = time::day_start(now_ms) + DAY_MS;
    let next_month = time::month_start(time::month_start(now_ms) + 32 * DAY_MS);
    let mut out = Vec::new();
    let tokens = [
        ("day", l.tokens_per_day, used.day.tokens, next_day),
        ("month", l.tokens_per_month, used.month.tokens, next_month),
    ];
    for (window, limit, used, resets) in tokens {
        if let Some(limit) = limit {
            out.push(json!({
                "window": window, "unit": "tokens", "limit": limit, "used": used,
                "remaining": limit.saturating_sub(used), "resets_at": time::format_datetime(resets),
            }));
        }
    }
    let usd = [
        ("day", l.usd_per_day, used.day.micro_usd, next_day),
        ("month", l.usd_per_month, used.month.micro_usd, next_month),
    ];
    for (window, limit, used, resets) in usd {
        if let Some(limit) = limit {
            let used = used as f64 / 1e6;
            out.push(json!({
                "window": window, "unit": "usd", "limit": limit, "used": used,
                "remaining": (limit - used).max(0.0), "resets_at": time::format_datetime(resets),
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ferrogate_core::tenancy::UsageTotals;

    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let rows = vec![UsageRow {
            group: "a,b".into(),
            totals: UsageTotals { requests: 2, prompt_tokens: 3, completion_tokens: 4, ..UsageTotals::default() },
        }];
        let labels = HashMap::from([("a,b".to_owned(), "say \"hi\"".to_owned())]);
        let out = csv(&rows, &labels);
        assert_eq!(out.lines().nth(1), Some("\"a,b\",\"say \"\"hi\"\"\",2,3,0,4,7,0,0"));
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        for (cell, want) in [
            ("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\""),
            ("+1", "'+1"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            ("gpt-4o", "gpt-4o"),
        ] {
            assert_eq!(csv_field(cell), want, "{cell:?}");
        }
    }

    #[test]
    fn windows_default_and_refuse_nonsense() {
        let now = 10 * DAY_MS;
        let w = window(&UsageParams::default(), GroupBy::Day, now).unwrap();
        assert_eq!((w.from_ms, w.to_ms), (now - DAY_MS, now + 1));
        let bad = UsageParams { from: Some("yesterday".into()), ..UsageParams::default() };
        assert_eq!(window(&bad, GroupBy::Day, now).err().and_then(|e| e.param).as_deref(), Some("from"));
        let bad = UsageParams { group_by: Some("planet".into()), ..UsageParams::default() };
        assert_eq!(window(&bad, GroupBy::Day, now).err().and_then(|e| e.param).as_deref(), Some("group_by"));
    }
}
