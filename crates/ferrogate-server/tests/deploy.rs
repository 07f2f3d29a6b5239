//! deploy/: the Prometheus alert rules pass `promtool check rules`, and every metric the rules and
//! the Grafana dashboard query is one a running gateway exports (a gateway with the embedded
//! engine, an HTTP upstream and tenancy on, so every family with known labels is present).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrogate_testkit::gateway::SMOLLM2;
use ferrogate_testkit::upstream::FakeUpstream;
use ferrogate_testkit::{TestGateway, model_path};
use serde_json::{Value, json};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} in deploy/{dir}");
    v
}

/// Metric names (`ferrogate_…`, `gen_ai_…`) in a PromQL text, without histogram suffixes.
fn metric_names(text: &str, out: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (rest.starts_with("ferrogate_") || rest.starts_with("gen_ai_")) {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let name = &rest[..len];
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            out.insert(base.to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
}

fn used_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in files("prometheus", "yml") {
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if !line.contains("summary:") && !line.contains("description:") {
                metric_names(line, &mut names);
            }
        }
    }
    for f in files("grafana", "json") {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for p in v["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                metric_names(t["expr"].as_str().unwrap(), &mut names);
            }
        }
        metric_names(&v["templating"].to_string(), &mut names);
    }
    names
}

#[test]
fn alert_rules_pass_promtool() {
    for f in files("prometheus", "yml") {
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(&f)
            .output()
            .expect("promtool not found: run scripts/setup.sh --test (Debian package prometheus)");
        assert!(
            out.status.success(),
            "promtool check rules {}:\n{}{}",
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dashboard_and_rules_cover_the_issue_and_name_only_known_families() {
    let used = used_metrics();
    let known: BTreeSet<&str> = ferrogate_server::observability::metrics::FAMILIES.iter().map(|f| f.1).collect();
    let unknown: Vec<&String> = used.iter().filter(|n| !known.contains(n.as_str())).collect();
    assert!(unknown.is_empty(), "deploy/ uses metrics ferrogate does not define: {unknown:?}");
    for must in [
        "ferrogate_requests_total",
        "ferrogate_time_to_first_token_seconds",
        "ferrogate_queue_depth",
        "ferrogate_rate_limit_rejections_total",
        "ferrogate_circuit_state",
        "ferrogate_engine_slots_in_use",
        "ferrogate_ledger_write_lag_seconds",
        "ferrogate_budget_rejections_total",
        "ferrogate_model_loaded",
    ] {
        assert!(used.contains(must), "deploy/ never uses {must}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_deploy_uses_is_exported() {
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[tenancy]\nmaster_key = \"test-master-key-0123456789\"\ndatabase_url = \"sqlite://{}/fg.db\"\n\
         [backends.smollm2]\nkind = \"embedded\"\nmodel_path = \"{}\"\nparallel = 1\nctx_per_seq = 512\nthreads = 1\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.smollm2]\nbackends = [\"smollm2\"]\n[deployments.m]\nbackends = [\"up\"]\n\
         [metrics]\ntenant_labels = true\n",
        dir.path().display(),
        model_path(SMOLLM2).display(),
        fake.url("/v1")
    );
    let gw = TestGateway::start(&toml).await;
    gw.wait_ready(std::time::Duration::from_secs(60)).await;
    let http = reqwest::Client::new();
    let admin = |m: reqwest::Method, p: &str| http.request(m, gw.url(p)).bearer_auth("test-master-key-0123456789");
    let r = admin(reqwest::Method::POST, "/admin/v1/tenants").json(&json!({"name": "acme"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = admin(reqwest::Method::POST, "/admin/v1/keys")
        .json(&json!({"tenant": "acme", "name": "k"}))
        .send()
        .await
        .unwrap();
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    for (model, stream) in [("m", true), ("smollm2", true), ("m", false)] {
        let body =
            json!({"model": model, "stream": stream, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
        let res = http.post(gw.url("/v1/chat/completions")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let res = http.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401, "with tenancy on, /metrics needs the master key");
    let res = http.get(gw.url("/metrics")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), 401, "a tenant's key may not read every tenant's metrics");
    let text = admin(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let exported: BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let missing: Vec<String> = used_metrics().into_iter().filter(|n| !exported.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "used by deploy/ but not exported: {missing:?}\n{text}");
    assert!(text.contains(r#"tenant="acme""#), "tenant labels when configured");
    gw.shutdown().await;
}
