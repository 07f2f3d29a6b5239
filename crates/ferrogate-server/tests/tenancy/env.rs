//! A gateway with tenancy on, over a fake OpenAI upstream and a fresh database, with a clock the
//! test moves; and small clients for the admin API and the inference API.

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::tenancy::time::{Clock, ManualClock};
use ferrogate_testkit::upstream::FakeUpstream;
use ferrogate_testkit::{TestDatabase, TestGateway};
use serde_json::{Value, json};

pub const MASTER: &str = "test-master-key-0123456789";
pub const CHAT: &str = "/v1/chat/completions";
/// The fake upstream's usage: 5 prompt + 4 completion tokens.
pub const USAGE_TOKENS: u64 = 9;

pub struct Env {
    pub gw: TestGateway,
    pub fake: FakeUpstream,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
}

/// The default `[tenancy]` settings of the tests (besides the master key and database).
pub const TENANCY: &str = "ledger_flush_interval_ms = 100\nauth_failures_per_minute = 100\n";

/// The configuration of a gateway over `fake` and `db`: deployments `m` (alias `mm`, priced at
/// $1 / $2 per million prompt / completion tokens) and `other`. `tenancy` goes into `[tenancy]`,
/// `extra` at the end.
pub fn config(fake: &FakeUpstream, db: &TestDatabase, tenancy: &str, extra: &str) -> String {
    format!(
        "[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\n{tenancy}\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\naliases = [\"mm\"]\n\
         [deployments.other]\nbackends = [\"up\"]\n\
         [prices.m]\ninput = 1.0\noutput = 2.0\n{extra}",
        db.url,
        fake.url("/v1")
    )
}

impl Env {
    pub async fn start(db: &TestDatabase, extra: &str) -> Env {
        Self::start_with(db, TENANCY, extra).await
    }

    pub async fn start_with(db: &TestDatabase, tenancy: &str, extra: &str) -> Env {
        let fake = FakeUpstream::openai().await.unwrap();
        let clock = Arc::new(ManualClock::new(ferrogate_core::tenancy::time::now_ms()));
        let gw = Self::gateway(&fake, db, tenancy, extra, &clock).await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Env { gw, fake, clock, http }
    }

    /// Another gateway on the same database, upstream and clock.
    pub async fn gateway(
        fake: &FakeUpstream,
        db: &TestDatabase,
        tenancy: &str,
        extra: &str,
        clock: &Arc<ManualClock>,
    ) -> TestGateway {
        let clock: Arc<dyn Clock> = clock.clone();
        TestGateway::start_with_clock(&config(fake, db, tenancy, extra), clock).await
    }

    pub fn url(&self, path: &str) -> String {
        self.gw.url(path)
    }

    /// An admin request with the master key.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(MASTER)
    }

    pub async fn admin_json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.admin(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn tenant(&self, name: &str, limits: Value) -> Value {
        let (s, v) = self
            .admin_json(reqwest::Method::POST, "/admin/v1/tenants", Some(json!({"name": name, "limits": limits})))
            .await;
        assert_eq!(s, 201, "{v}");
        v
    }

    /// Creates a key; returns (its record, the plaintext).
    pub async fn key(&self, tenant: &str, extra: Value) -> (Value, String) {
        let mut body = json!({"tenant": tenant, "name": "test"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, v) = self.admin_json(reqwest::Method::POST, "/admin/v1/keys", Some(body)).await;
        assert_eq!(s, 201, "{v}");
        let secret = v["key"].as_str().unwrap().to_owned();
        (v, secret)
    }

    pub async fn chat(&self, key: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.url(CHAT)).bearer_auth(key).json(body).send().await.unwrap()
    }

    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    pub fn tenancy(&self) -> &ferrogate_server::tenancy::Tenancy {
        self.gw.state().tenancy.as_deref().unwrap()
    }
}

/// A chat request for `model` with `max_tokens`.
pub fn chat(model: &str, max_tokens: u32) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
}

/// Status and JSON body.
pub async fn status_json(res: reqwest::Response) -> (u16, Value) {
    let s = res.status().as_u16();
    (s, res.json().await.unwrap_or(Value::Null))
}

/// Asserts an OpenAI-shaped error with this status and code.
pub async fn assert_error(res: reqwest::Response, status: u16, code: &str) -> Value {
    let (s, v) = status_json(res).await;
    assert_eq!((s, v["error"]["code"].as_str()), (status, Some(code)), "{v}");
    let e = &v["error"];
    assert!(e["message"].is_string() && e["type"].is_string() && e.get("param").is_some(), "{v}");
    v
}
