//! Live reconfiguration of a real `ferrogate serve` process (issue 21 item 4): reload by SIGHUP
//! and by a change of the file — an in-place rewrite and Kubernetes' ConfigMap `..data` symlink
//! swap —, an invalid file refused with the old configuration still serving, a new deployment in
//! `/v1/models`, a changed rate limit in force while unchanged counters keep their values, a
//! removed key refused, and zero failed requests (streams and not) across 20 reloads under load.
//! The upstream is the test kit's fake OpenAI server, slowed so requests are in flight when the
//! configuration changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use ferrogate_testkit::upstream::{FakeUpstream, Reply, chat_json, chat_sse, models_json};
use serde_json::{Value, json};

const MASTER: &str = "reload-test-master-key-0123456789";
const KEY1: &str = "sk-reload-one";
const KEY2: &str = "sk-reload-two";

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fg-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fake upstream whose answers take a while: non-streams 150 ms, streams 6 chunks 40 ms apart.
async fn slow_upstream() -> FakeUpstream {
    let fake = FakeUpstream::start().await.unwrap();
    fake.on("/v1/models", models_json(&["fake-model"]));
    fake.on(
        "/v1/chat/completions",
        Reply::dynamic(|r| match r.wants_stream(false) {
            true => chat_sse(&["a", "b", "c", "d", "e", "f"], Some((3, 6))).delay(Duration::from_millis(40)).into(),
            false => chat_json("slow hello", Some((3, 2))).after(Duration::from_millis(150)),
        }),
    );
    fake
}

/// A configuration: deployments over the fake (each `name = [aliases]`), the static keys, a
/// global rate-limit rule (requests per minute), tenancy (for `/admin/v1/config`) in `dir`.
struct Cfg<'a> {
    upstream: &'a str,
    deployments: &'a [&'a str],
    keys: &'a [&'a str],
    rpm: Option<u32>,
    poll_ms: u64,
    dir: &'a Path,
}

impl Cfg<'_> {
    fn toml(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(|k| format!("\"{k}\"")).collect();
        let mut t = format!(
            "[server]\napi_keys = [{}]\nconfig_poll_ms = {}\nbackend_header = true\n\
             [tenancy]\nmaster_key = \"{MASTER}\"\ndata_dir = \"{}\"\n\
             [metrics]\npublic = true\n\
             [backends.fake]\nkind = \"openai\"\nbase_url = \"{}\"\n",
            keys.join(", "),
            self.poll_ms,
            self.dir.display(),
            self.upstream,
        );
        for d in self.deployments {
            t.push_str(&format!("[deployments.{d}]\nbackends = [\"fake\"]\nupstream_model = \"fake-model\"\n"));
        }
        if let Some(rpm) = self.rpm {
            t.push_str(&format!(
                "[[limits.rules]]\nname = \"all\"\nscope = \"global\"\nrequests_per_minute = {rpm}\nburst_requests = {rpm}\n"
            ));
        }
        t
    }
}

fn hup(server: &Server) {
    let ok = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

/// The file `Server::start` wrote.
fn config_file(dir: &Path) -> PathBuf {
    dir.join("gw.toml")
}

/// Replaces `file`'s content atomically (write beside, rename over), as editors and `kubectl cp` do.
fn rewrite(file: &Path, text: &str) {
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

async fn get(http: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let r = http.get(url).bearer_auth(key).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn models(http: &reqwest::Client, s: &Server, key: &str) -> Vec<String> {
    let (_, v) = get(http, &format!("{}/v1/models", s.url), key).await;
    let mut ids: Vec<String> =
        v["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect();
    ids.sort();
    ids
}

async fn active(http: &reqwest::Client, s: &Server) -> Value {
    let (status, v) = get(http, &format!("{}/admin/v1/config", s.url), MASTER).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// `ferrogate_config_reloads_total{result="…"}` from `/metrics`.
async fn reloads(http: &reqwest::Client, s: &Server, result: &str) -> u64 {
    let text = http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    let needle = format!("ferrogate_config_reloads_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&needle)).map_or(0, |v| v.trim().parse().unwrap())
}

async fn until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn chat(http: &reqwest::Client, s: &Server, key: &str, model: &str) -> u16 {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let r = http.post(format!("{}/v1/chat/completions", s.url)).bearer_auth(key).json(&body).send().await.unwrap();
    r.status().as_u16()
}

fn sha256(text: &str) -> String {
    ferrogate::config::version_of(text)
}

#[tokio::test]
async fn sighup_reloads_a_new_deployment_and_admin_config_shows_the_version() {
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempdir("hup");
    let up = fake.url("/v1");
    let first = Cfg { upstream: &up, deployments: &["alpha"], keys: &[KEY1], rpm: None, poll_ms: 0, dir: &dir };
    let s = Server::start(&dir, "gw", &first.toml()).await;
    let http = reqwest::Client::new();
    assert_eq!(models(&http, &s, KEY1).await, ["alpha"]);
    let before = active(&http, &s).await;
    assert_eq!(before["origin"], "start");
    assert_eq!(before["version"], sha256(&first.toml()));
    assert_eq!(before["source"], config_file(&dir).display().to_string());

    let second = Cfg { deployments: &["alpha", "beta"], ..first };
    // poll_ms = 0: only the signal reloads. The file changes, nothing happens until SIGHUP.
    let second_text = second.toml().replace("config_poll_ms = 0", "config_poll_ms = 0\n# second");
    rewrite(&config_file(&dir), &second_text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(models(&http, &s, KEY1).await, ["alpha"]);
    hup(&s);
    until("beta in /v1/models", Duration::from_secs(10), || async { models(&http, &s, KEY1).await.len() == 2 }).await;
    assert_eq!(chat(&http, &s, KEY1, "beta").await, 200);

    let now = active(&http, &s).await;
    assert_eq!(now["object"], "config");
    assert_eq!(now["origin"], "reload");
    assert_eq!(now["version"], sha256(&second_text));
    assert_eq!(now["restart_required"], json!([]));
    assert!(now["loaded_at"].as_u64().unwrap() >= before["loaded_at"].as_u64().unwrap());
    let shown = now.to_string();
    for secret in [MASTER, KEY1] {
        assert!(!shown.contains(secret), "/admin/v1/config shows a secret: {shown}");
    }
    assert_eq!(reloads(&http, &s, "ok").await, 1);
    assert_eq!(reloads(&http, &s, "error").await, 0);
}

#[tokio::test]
async fn restart_only_changes_are_reported_not_applied() {
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempdir("restart");
    let up = fake.url("/v1");
    let cfg = Cfg { upstream: &up, deployments: &["alpha"], keys: &[KEY1], rpm: None, poll_ms: 0, dir: &dir };
    let s = Server::start(&dir, "gw", &cfg.toml()).await;
    let http = reqwest::Client::new();
    // A request timeout (applied live) and an idle connection timeout (read by the accept loop at
    // start: needs a restart).
    let text = cfg.toml().replace("[server]\n", "[server]\nrequest_timeout_secs = 77\nidle_timeout_secs = 5\n");
    rewrite(&config_file(&dir), &text);
    hup(&s);
    until("the reload", Duration::from_secs(10), || async { active(&http, &s).await["origin"] == "reload" }).await;
    assert_eq!(active(&http, &s).await["restart_required"], json!(["server.idle_timeout_secs"]));
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("needs a restart") && log.contains("server.idle_timeout_secs"), "{log}");
}

#[tokio::test]
async fn an_invalid_config_is_refused_and_the_old_one_keeps_serving() {
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempdir("invalid");
    let up = fake.url("/v1");
    let cfg = Cfg { upstream: &up, deployments: &["alpha"], keys: &[KEY1], rpm: None, poll_ms: 100, dir: &dir };
    let s = Server::start(&dir, "gw", &cfg.toml()).await;
    let http = reqwest::Client::new();
    let version = active(&http, &s).await["version"].clone();
    // Two problems: an unknown field and a deployment over a backend that does not exist.
    let bad = format!("{}[deployments.broken]\nbackends = [\"nowhere\"]\n[server.extra]\nbogus = 1\n", cfg.toml());
    rewrite(&config_file(&dir), &bad);
    until("the refusal counted", Duration::from_secs(10), || async { reloads(&http, &s, "error").await == 1 }).await;
    // Also by SIGHUP: refused again.
    hup(&s);
    until("the second refusal", Duration::from_secs(10), || async { reloads(&http, &s, "error").await == 2 }).await;
    assert_eq!(reloads(&http, &s, "ok").await, 0);
    assert_eq!(active(&http, &s).await["version"], version);
    assert_eq!(models(&http, &s, KEY1).await, ["alpha"]);
    assert_eq!(chat(&http, &s, KEY1, "alpha").await, 200);
    let log = std::fs::read_to_string(&s.log).unwrap();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("configuration reload refused")).collect();
    assert!(refusals.iter().any(|l| l.contains("nowhere")), "no line names the missing backend:\n{log}");
    assert!(refusals.iter().any(|l| l.contains("extra")), "no line names the unknown field:\n{log}");
    // Fixed again: applied.
    let good = Cfg { deployments: &["alpha", "gamma"], ..cfg };
    rewrite(&config_file(&dir), &good.toml());
    until("gamma served", Duration::from_secs(10), || async { models(&http, &s, KEY1).await.len() == 2 }).await;
    assert_eq!(reloads(&http, &s, "ok").await, 1);
}

/// Kubernetes mounts a ConfigMap as `<dir>/ferrogate.toml -> ..data/ferrogate.toml`, `..data ->
/// ..<timestamp>`; an update writes a new timestamped directory and renames a new `..data`
/// symlink over the old one, then deletes the old directory. The file's own inode never changes.
#[tokio::test]
async fn a_configmap_symlink_swap_is_reloaded() {
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempdir("configmap");
    let up = fake.url("/v1");
    let mount = dir.join("mount");
    std::fs::create_dir_all(mount.join("..2026_12_06_a")).unwrap();
    let first = Cfg { upstream: &up, deployments: &["alpha"], keys: &[KEY1], rpm: None, poll_ms: 100, dir: &dir };
    std::fs::write(mount.join("..2026_12_06_a/ferrogate.toml"), first.toml()).unwrap();
    std::os::unix::fs::symlink("..2026_12_06_a", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/ferrogate.toml", mount.join("ferrogate.toml")).unwrap();
    let s = Server::start_file(&dir, "gw", &mount.join("ferrogate.toml")).await;
    let http = reqwest::Client::new();
    assert_eq!(models(&http, &s, KEY1).await, ["alpha"]);

    let second = Cfg { deployments: &["alpha", "delta"], ..first };
    std::fs::create_dir_all(mount.join("..2026_12_06_b")).unwrap();
    std::fs::write(mount.join("..2026_12_06_b/ferrogate.toml"), second.toml()).unwrap();
    std::os::unix::fs::symlink("..2026_12_06_b", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..2026_12_06_a")).unwrap();
    until("delta in /v1/models", Duration::from_secs(10), || async { models(&http, &s, KEY1).await.len() == 2 }).await;
    assert_eq!(active(&http, &s).await["version"], sha256(&second.toml()));
    assert_eq!(chat(&http, &s, KEY1, "delta").await, 200);
}

#[tokio::test]
async fn a_changed_rate_limit_takes_effect_and_unchanged_counters_keep_their_values() {
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempdir("limits");
    let up = fake.url("/v1");
    let cfg = Cfg { upstream: &up, deployments: &["alpha"], keys: &[KEY1], rpm: Some(3), poll_ms: 0, dir: &dir };
    let s = Server::start(&dir, "gw", &cfg.toml()).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(chat(&http, &s, KEY1, "alpha").await, 200);
    }
    // Unrelated change, same rule: the counter is the same and stays spent.
    let more = Cfg { deployments: &["alpha", "beta"], ..cfg };
    rewrite(&config_file(&dir), &more.toml());
    hup(&s);
    until("beta served", Duration::from_secs(10), || async { models(&http, &s, KEY1).await.len() == 2 }).await;
    assert_eq!(chat(&http, &s, KEY1, "alpha").await, 429, "a reload reset the rate-limit counter");
    // A higher limit takes effect at once.
    let looser = Cfg { rpm: Some(600), ..more };
    rewrite(&config_file(&dir), &looser.toml());
    hup(&s);
    until("the higher limit", Duration::from_secs(10), || async { chat(&http, &s, KEY1, "alpha").await == 200 }).await;
    // GCRA keeps the rule's state as a theoretical arrival time, so the debt of the old rate
    // carries over (no fresh burst); the new rate admits one request per 100 ms from there,
    // where the old one admitted one per 20 s.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(chat(&http, &s, KEY1, "beta").await, 200);
    }
    // And a removed rule is gone.
    let none = Cfg { rpm: None, ..looser };
    rewrite(&config_file(&dir), &none.toml());
    hup(&s);
    until("three reloads", Duration::from_secs(10), || async { reloads(&http, &s, "ok").await == 3 }).await;
    let r = http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(KEY1)
        .json(&json!({"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-ratelimit-limit-requests").is_none(), "{:?}", r.headers());
}

#[tokio::test]
async fn a_removed_key_stops_working() {
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempdir("keys");
    let up = fake.url("/v1");
    let cfg = Cfg { upstream: &up, deployments: &["alpha"], keys: &[KEY1, KEY2], rpm: None, poll_ms: 100, dir: &dir };
    let s = Server::start(&dir, "gw", &cfg.toml()).await;
    let http = reqwest::Client::new();
    assert_eq!(chat(&http, &s, KEY2, "alpha").await, 200);
    let fewer = Cfg { keys: &[KEY1], ..cfg };
    rewrite(&config_file(&dir), &fewer.toml());
    until("key two refused", Duration::from_secs(10), || async { chat(&http, &s, KEY2, "alpha").await == 401 }).await;
    assert_eq!(chat(&http, &s, KEY1, "alpha").await, 200);
}

/// Clients keep 8 requests in flight (half streams) against a slow upstream while the file is
/// rewritten and SIGHUP sent 20 times; every request must succeed and every stream end cleanly.
#[tokio::test]
async fn zero_failed_requests_across_20_reloads_under_load() {
    let fake = slow_upstream().await;
    let dir = tempdir("load");
    let up = fake.url("/v1");
    let base = Cfg { upstream: &up, deployments: &["alpha"], keys: &[KEY1], rpm: Some(100_000), poll_ms: 0, dir: &dir };
    let s = Server::start(&dir, "gw", &base.toml()).await;
    let http = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for i in 0..8 {
        let (http, url, stop, ok, failed) =
            (http.clone(), s.url.clone(), Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match one_request(&http, &url, i % 2 == 0).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(e);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        }));
    }
    let variants: [&[&str]; 3] = [&["alpha"], &["alpha", "beta"], &["alpha", "beta", "gamma"]];
    for n in 0..20u32 {
        let next = Cfg { deployments: variants[n as usize % 3], rpm: Some(100_000 + n), ..base };
        rewrite(&config_file(&dir), &next.toml());
        hup(&s);
        until("the reload", Duration::from_secs(10), || async { reloads(&http, &s, "ok").await == u64::from(n) + 1 })
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.unwrap());
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed requests across 20 reloads: {errors:?}");
    assert!(ok >= 40, "too few requests ran during the reloads: {ok}");
    assert_eq!(reloads(&http, &s, "error").await, 0);
}

/// One chat request; a stream must end with `[DONE]` and carry no error event.
async fn one_request(http: &reqwest::Client, url: &str, stream: bool) -> Result<(), String> {
    let body = json!({"model": "alpha", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let r = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(KEY1)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("body: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    if stream && (!text.trim_end().ends_with("data: [DONE]") || text.contains("\"error\"")) {
        return Err(format!("stream did not end cleanly: {text}"));
    }
    Ok(())
}
