//! DNS-discovered backends (issue 22 item 6): a backend whose `base_url` host is resolved through
//! a resolver this test controls (the gateway's `Resolver` trait; the real one is
//! `tokio::net::lookup_host`), its answer changing between polls — one address, then two, then
//! only the second — against real upstreams on `127.0.0.2` and `127.0.0.3` (same port, as the
//! pods behind one headless Service). While streamed and whole requests run without pause: the
//! added address gets traffic, the removed one gets no new request once its in-flight ones have
//! finished, and no request fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrogate::discovery::Resolver;
use ferrogate_core::tenancy::time::SystemClock;
use ferrogate_testkit::redis::{shared_url, unique_prefix};
use ferrogate_testkit::upstream::{FakeUpstream, Reply, chat_json, chat_sse, models_json, openai_error};
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// Answers every lookup with the addresses the test set last (the port asked for).
#[derive(Default)]
struct ScriptedDns {
    ips: Mutex<Vec<&'static str>>,
    lookups: AtomicUsize,
}

impl ScriptedDns {
    fn answer(&self, ips: &[&'static str]) {
        *self.ips.lock().unwrap() = ips.to_vec();
    }
}

impl Resolver for ScriptedDns {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        assert_eq!(host, "pool.test");
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let ips = self.ips.lock().unwrap().clone();
        Box::pin(async move { Ok(ips.iter().map(|ip| SocketAddr::new(ip.parse().unwrap(), port)).collect()) })
    }
}

/// An OpenAI-shaped upstream on `addr` whose answers take a while (so requests are in flight
/// when the answer changes): whole ones 120 ms, streams 4 chunks 30 ms apart.
async fn upstream(addr: &str) -> FakeUpstream {
    let fake = FakeUpstream::start_on(addr).await.unwrap();
    fake.on("/v1/models", models_json(&["m"]));
    fake.on(
        "/v1/chat/completions",
        Reply::dynamic(|r| match r.wants_stream(false) {
            true => chat_sse(&["a", "b", "c", "d"], Some((3, 4))).delay(Duration::from_millis(30)).into(),
            false => chat_json("hello", Some((3, 1))).after(Duration::from_millis(120)),
        }),
    );
    fake
}

fn chats(fake: &FakeUpstream) -> usize {
    fake.requests().iter().filter(|r| r.path == "/v1/chat/completions").count()
}

async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One client: requests in a loop (every other one streamed) until `stop`; counts failures.
async fn client(url: String, stop: Arc<AtomicBool>, ok: Arc<AtomicUsize>, failed: Arc<Mutex<Vec<String>>>) {
    let http = reqwest::Client::new();
    let mut stream = false;
    while !stop.load(Ordering::Relaxed) {
        stream = !stream;
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream});
        let outcome = match http.post(&url).json(&body).send().await {
            Err(e) => Err(e.to_string()),
            Ok(res) => {
                let status = res.status().as_u16();
                let text = res.text().await.unwrap_or_default();
                let complete = if stream { text.contains("[DONE]") && !text.contains("\"error\"") } else { true };
                if status == 200 && complete { Ok(()) } else { Err(format!("{status}: {text}")) }
            }
        };
        match outcome {
            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                failed.lock().unwrap().push(e);
                0
            }
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_come_and_go_while_requests_run_and_none_fails() {
    let a = upstream("127.0.0.2:0").await;
    let port = a.addr().port();
    let b = upstream(&format!("127.0.0.3:{port}")).await;
    let dns = Arc::new(ScriptedDns::default());
    dns.answer(&["127.0.0.2"]);

    let toml = format!(
        "[backends.pool]\nkind = \"openai\"\nbase_url = \"http://pool.test:{port}/v1\"\ndiscover = \"dns\"\n\
         discover_interval_ms = 100\n[deployments.m]\nbackends = [\"pool\"]\n"
    );
    let mut cfg = ferrogate::config::load_str(&toml).unwrap();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let resolver: Arc<dyn Resolver> = dns.clone();
    let running = ferrogate::start_with(&cfg, std::future::pending(), Arc::new(SystemClock), None, resolver)
        .await
        .expect("gateway starts");
    let url = format!("http://{}/v1/chat/completions", running.addr);

    // The configured backend is one backend per address, named after it.
    let ready: Value = reqwest::get(format!("http://{}/ready", running.addr)).await.unwrap().json().await.unwrap();
    let a_name = format!("pool@127.0.0.2:{port}");
    let backends = &ready["deployments"]["m"]["backends"];
    assert!(backends.get(&a_name).is_some(), "{ready}");

    let (stop, ok, failed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::default());
    let clients: Vec<_> =
        (0..4).map(|_| tokio::spawn(client(url.clone(), stop.clone(), ok.clone(), Arc::clone(&failed)))).collect();

    // One address: every request goes to A.
    wait_until("A served 10 requests", Duration::from_secs(10), || chats(&a) >= 10).await;
    assert_eq!(chats(&b), 0);

    // B appears: it gets traffic too.
    dns.answer(&["127.0.0.2", "127.0.0.3"]);
    wait_until("B served 10 requests", Duration::from_secs(10), || chats(&b) >= 10).await;
    let a_before_removal = chats(&a);

    // A disappears: its requests in flight finish, and it gets no new one.
    dns.answer(&["127.0.0.3"]);
    let removed_at = chats(&a);
    tokio::time::sleep(Duration::from_millis(600)).await; // a poll (100 ms) + the slowest request in flight
    let a_after_drain = chats(&a);
    let b_then = chats(&b);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(chats(&a), a_after_drain, "A got requests after it was removed and drained");
    assert!(chats(&b) > b_then + 10, "B carries the traffic alone");
    assert!(a_before_removal >= 10 && removed_at >= a_before_removal);

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "{} requests failed, e.g. {:?}", failed.len(), failed.first());
    assert!(ok.load(Ordering::Relaxed) > 40);
    assert!(dns.lookups.load(Ordering::Relaxed) >= 5, "the name was resolved again every interval");

    let ready: Value = reqwest::get(format!("http://{}/ready", running.addr)).await.unwrap().json().await.unwrap();
    let backends = ready["deployments"]["m"]["backends"].as_object().unwrap();
    let names: Vec<&String> = backends.keys().collect();
    assert_eq!(names, [&format!("pool@127.0.0.3:{port}")], "{ready}");
}

/// A prefix-routed deployment reads its engines' load: an address discovery adds is scraped
/// too (its probe built with its backend), not only the ones there at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_address_is_scraped_for_prefix_routing() {
    let a = upstream("127.0.0.2:0").await;
    let port = a.addr().port();
    let b = upstream(&format!("127.0.0.3:{port}")).await;
    let metrics = "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n";
    for fake in [&a, &b] {
        fake.on("/metrics", Reply::text(200, metrics));
    }
    let dns = Arc::new(ScriptedDns::default());
    dns.answer(&["127.0.0.2"]);
    let toml = format!(
        "[backends.pool]\nkind = \"openai\"\nbase_url = \"http://pool.test:{port}/v1\"\ndiscover = \"dns\"\n\
         discover_interval_ms = 100\n[routing]\nscrape_interval_ms = 50\n\
         [deployments.m]\nbackends = [\"pool\"]\nrouting = \"prefix\"\n"
    );
    let mut cfg = ferrogate::config::load_str(&toml).unwrap();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let resolver: Arc<dyn Resolver> = dns.clone();
    let _running = ferrogate::start_with(&cfg, std::future::pending(), Arc::new(SystemClock), None, resolver)
        .await
        .expect("gateway starts");
    let scrapes = |fake: &FakeUpstream| fake.requests().iter().filter(|r| r.path == "/metrics").count();
    wait_until("A is scraped", Duration::from_secs(10), || scrapes(&a) >= 3).await;
    assert_eq!(scrapes(&b), 0, "B is not in force yet");
    dns.answer(&["127.0.0.2", "127.0.0.3"]);
    wait_until("B is scraped once discovered", Duration::from_secs(10), || scrapes(&b) >= 3).await;
}

/// With `[breaker] shared`, the breaker of an address discovery adds is shared too: one replica
/// opens it on its own failures, and the other stops sending there (not only the backends of
/// the start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_backends_breaker_is_shared_by_the_fleet() {
    let a = upstream("127.0.0.2:0").await;
    let port = a.addr().port();
    let b = FakeUpstream::start_on(&format!("127.0.0.3:{port}")).await.unwrap();
    b.on("/v1/models", models_json(&["m"]));
    b.on("/v1/chat/completions", openai_error(500, "the engine crashed"));
    let dns = Arc::new(ScriptedDns::default());
    dns.answer(&["127.0.0.2"]);
    let toml = format!(
        "[limits]\nredis_url = \"{redis}\"\nkey_prefix = \"{prefix}\"\n\
         [breaker]\nconsecutive_failures = 2\nopen_ms = 60000\nshared = true\n[retry]\nmax_retries = 0\n\
         [backends.pool]\nkind = \"openai\"\nbase_url = \"http://pool.test:{port}/v1\"\ndiscover = \"dns\"\n\
         discover_interval_ms = 100\n[deployments.m]\nbackends = [\"pool\"]\n",
        redis = shared_url(),
        prefix = unique_prefix("discovered-breakers"),
    );
    let mut cfg = ferrogate::config::load_str(&toml).unwrap();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let (mut fleet, mut held) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let resolver: Arc<dyn Resolver> = dns.clone();
        let running = ferrogate::start_with(&cfg, std::future::pending(), Arc::new(SystemClock), None, resolver)
            .await
            .expect("gateway starts");
        fleet.push(format!("http://{}", running.addr));
        held.push(running);
    }
    let b_name = format!("pool@127.0.0.3:{port}");
    let breaker = |ready: &Value| ready["deployments"]["m"]["backends"][&b_name]["breaker"]["state"].clone();
    let ready = |base: String| async move {
        reqwest::get(format!("{base}/ready")).await.unwrap().json::<Value>().await.unwrap()
    };
    dns.answer(&["127.0.0.2", "127.0.0.3"]);
    for base in &fleet {
        let deadline = Instant::now() + Duration::from_secs(10);
        while breaker(&ready(base.clone()).await) != json!("closed") {
            assert!(Instant::now() < deadline, "{base} never built {b_name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Replica one sends until its breaker for B opens on B's failures.
    let http = reqwest::Client::new();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..100 {
        let _ = http.post(format!("{}/v1/chat/completions", fleet[0])).json(&body).send().await.unwrap();
        if breaker(&ready(fleet[0].clone()).await) == json!("open") {
            break;
        }
    }
    assert_eq!(breaker(&ready(fleet[0].clone()).await), json!("open"), "replica one opened B's breaker");
    let deadline = Instant::now() + Duration::from_secs(2);
    while breaker(&ready(fleet[1].clone()).await) != json!("open") {
        assert!(Instant::now() < deadline, "replica two did not hear of B's open breaker within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
