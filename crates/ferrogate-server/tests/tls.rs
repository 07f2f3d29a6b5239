//! TLS on the gateway's own listener (issue 21, item 5), with certificates made here (rcgen):
//! HTTPS over HTTP/1.1 and HTTP/2 (ALPN), plain HTTP to the TLS port answered with a plain 400,
//! a client that never finishes its handshake cut at `header_read_timeout_secs`, a new
//! certificate picked up without a restart (and a broken one ignored), mTLS in front of the
//! admin API, and an upstream behind a private CA reached through the backend's `ca_file`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrogate_testkit::upstream::FakeUpstream;
use ferrogate_testkit::{TestDatabase, TestGateway};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASTER: &str = "test-master-key-0123456789";

/// A CA that signs server and client certificates.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for 127.0.0.1 and localhost (server) or a client, with this serial and CN:
    /// (certificate PEM, key PEM, certificate DER).
    fn issue(&self, cn: &str, serial: u64, client: bool) -> (String, String, Vec<u8>) {
        let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from(serial));
        p.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// The files a `[server.tls]` section names, in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` through a rename, as a deploy tool (or a ConfigMap swap) would.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let (tmp, to) = (self.path(&format!(".{name}.tmp")), self.path(name));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &to).unwrap();
        to
    }
}

/// `[server.tls]` lines for the pair in `files` (`cert.pem`, `key.pem`) plus `extra`.
fn tls_section(files: &Files, extra: &str) -> String {
    format!(
        "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}\n",
        files.path("cert.pem").display(),
        files.path("key.pem").display()
    )
}

/// A TLS gateway over an OpenAI fake: `server` lines go under `[server]`, `tls` under
/// `[server.tls]`, `extra` at the end.
async fn gateway(fake: &FakeUpstream, server: &str, tls: &str, extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[server]\n{server}\n{tls}\n[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\n{extra}",
        fake.url("/v1")
    ))
    .await
}

/// A client trusting `ca`, optionally presenting `identity` (certificate PEM + key PEM).
fn client(ca: &str, identity: Option<(&str, &str)>, http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .timeout(Duration::from_secs(20))
        .no_proxy();
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap());
    }
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

fn https(addr: SocketAddr, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", addr.port())
}

/// The DER of the certificate the server presented.
fn served_cert(r: &reqwest::Response) -> Vec<u8> {
    r.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate()).expect("TLS info").to_vec()
}

/// A CA, a server pair written to `files`, and the DER of the leaf.
fn server_pki(files: &Files) -> (Ca, Vec<u8>) {
    let ca = Ca::new("ferrogate test CA");
    let (cert, key, der) = ca.issue("gateway-1", 1, false);
    files.write("cert.pem", &cert);
    files.write("key.pem", &key);
    files.write("ca.pem", &ca.pem());
    (ca, der)
}

async fn read_until_closed(c: &mut TcpStream) -> String {
    let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn https_serves_http1_and_http2_and_plain_http_gets_a_plain_400() {
    let files = Files::new();
    let (ca, _) = server_pki(&files);
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&fake, "", &tls_section(&files, ""), "").await;

    let h2 = client(&ca.pem(), None, false);
    let r = h2.get(https(gw.addr, "/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let r = h2.post(https(gw.addr, "/v1/chat/completions")).json(&chat).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("data: [DONE]"), "{body}");

    let h1 = client(&ca.pem(), None, true);
    let r = h1.get(https(gw.addr, "/health")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_11));

    // A client that does not trust the CA fails its handshake.
    let stranger = client(&Ca::new("another CA").pem(), None, false);
    assert!(stranger.get(https(gw.addr, "/health")).send().await.is_err());

    // Plain HTTP to the TLS port: a plain 400 saying so, then the close.
    let mut plain = TcpStream::connect(gw.addr).await.unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), read_until_closed(&mut plain)).await.expect("closed");
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("HTTPS"), "{got}");
    // And the listener still serves TLS.
    assert_eq!(h2.get(https(gw.addr, "/health")).send().await.unwrap().status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_cut_at_the_header_timeout() {
    let files = Files::new();
    let (ca, _) = server_pki(&files);
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&fake, "header_read_timeout_secs = 1", &tls_section(&files, ""), "").await;
    // One says nothing; one starts a TLS record (a handshake, 0x16) and stalls.
    let mut mute = TcpStream::connect(gw.addr).await.unwrap();
    let mut stalled = TcpStream::connect(gw.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01]).await.unwrap();
    let start = Instant::now();
    for c in [&mut mute, &mut stalled] {
        let got = tokio::time::timeout(Duration::from_secs(5), read_until_closed(c)).await.expect("closed");
        assert!(got.is_empty() || !got.contains("200"), "{got}");
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "closed after {took:?}");
    // A real client is served meanwhile and after.
    let r = client(&ca.pem(), None, false).get(https(gw.addr, "/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await;
}

/// Polls until the served certificate is `want`, failing past `within`.
async fn served_becomes(addr: SocketAddr, ca: &str, want: &[u8], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        // A new client each time: a pooled connection would keep the old handshake.
        let r = client(ca, None, false).get(https(addr, "/health")).send().await.unwrap();
        if served_cert(&r) == want {
            return;
        }
        assert!(Instant::now() < deadline, "the new certificate was not served within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_changed_certificate_is_served_without_a_restart_and_a_broken_one_is_ignored() {
    let files = Files::new();
    let (ca, first) = server_pki(&files);
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&fake, "", &tls_section(&files, "reload_interval_secs = 1"), "").await;
    let r = client(&ca.pem(), None, false).get(https(gw.addr, "/health")).send().await.unwrap();
    assert_eq!(served_cert(&r), first);

    // A new pair (other serial, other subject, other key).
    let (cert, key, second) = ca.issue("gateway-2", 2, false);
    assert_ne!(first, second);
    files.write("key.pem", &key);
    files.write("cert.pem", &cert);
    served_becomes(gw.addr, &ca.pem(), &second, Duration::from_secs(10)).await;

    // A broken certificate file, then a key that does not fit: both refused, the second pair stays.
    files.write("cert.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = client(&ca.pem(), None, false).get(https(gw.addr, "/health")).send().await.unwrap();
    assert_eq!(served_cert(&r), second, "a broken file must not replace the certificate in use");
    let (third_cert, _, _) = ca.issue("gateway-3", 3, false);
    files.write("cert.pem", &third_cert);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = client(&ca.pem(), None, false).get(https(gw.addr, "/health")).send().await.unwrap();
    assert_eq!(served_cert(&r), second, "a certificate whose key is not in key.pem must not be used");
    gw.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate_at_once() {
    let files = Files::new();
    let (ca, first) = server_pki(&files);
    let fake = FakeUpstream::openai().await.unwrap();
    // The file check is an hour away: only the signal can bring the new pair in time.
    let gw = gateway(&fake, "", &tls_section(&files, "reload_interval_secs = 3600"), "").await;
    let r = client(&ca.pem(), None, false).get(https(gw.addr, "/health")).send().await.unwrap();
    assert_eq!(served_cert(&r), first);
    let (cert, key, second) = ca.issue("gateway-hup", 7, false);
    files.write("key.pem", &key);
    files.write("cert.pem", &cert);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = client(&ca.pem(), None, false).get(https(gw.addr, "/health")).send().await.unwrap();
    assert_eq!(served_cert(&r), first, "no reload before the signal");
    let hup = std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().unwrap();
    assert!(hup.success());
    served_becomes(gw.addr, &ca.pem(), &second, Duration::from_secs(5)).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_requires_a_verified_client_certificate_when_configured() {
    let files = Files::new();
    let (ca, _) = server_pki(&files);
    let clients_ca = Ca::new("ferrogate clients CA");
    files.write("clients.pem", &clients_ca.pem());
    let (ccert, ckey, _) = clients_ca.issue("operator", 10, true);
    let rogue_ca = Ca::new("rogue CA");
    let (rcert, rkey, _) = rogue_ca.issue("operator", 11, true);
    let db = TestDatabase::open(ferrogate_testkit::db::DbKind::Sqlite).await;
    let fake = FakeUpstream::openai().await.unwrap();
    let tls = tls_section(
        &files,
        &format!("client_ca_file = \"{}\"\nadmin_requires_client_cert = true", files.path("clients.pem").display()),
    );
    let tenancy = format!("[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\n", db.url);
    let gw = gateway(&fake, "", &tls, &tenancy).await;
    let tenants = https(gw.addr, "/admin/v1/tenants");

    // No client certificate: the TLS layer lets it in, the admin API does not.
    let anonymous = client(&ca.pem(), None, false);
    let r = anonymous.get(&tenants).bearer_auth(MASTER).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // Refused inside the access layer: logged and timed like any other answer (issue 21).
    for h in ["x-request-id", "x-response-time-ms"] {
        assert!(r.headers().contains_key(h), "the gate's 403 bypassed the access layer: no {h}");
    }
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("client certificate"), "{body}");
    assert_eq!(anonymous.get(https(gw.addr, "/metrics")).bearer_auth(MASTER).send().await.unwrap().status(), 403);
    // The rest of the API needs no client certificate.
    assert_eq!(anonymous.get(https(gw.addr, "/health")).send().await.unwrap().status(), 200);

    // A verified client certificate (and the master key): served.
    let operator = client(&ca.pem(), Some((&ccert, &ckey)), false);
    let r = operator.get(&tenants).bearer_auth(MASTER).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The certificate does not replace the master key.
    assert_eq!(operator.get(&tenants).send().await.unwrap().status(), 401);
    assert_eq!(operator.get(https(gw.addr, "/metrics")).bearer_auth(MASTER).send().await.unwrap().status(), 200);

    // A certificate from another CA fails the handshake.
    let rogue = client(&ca.pem(), Some((&rcert, &rkey)), false);
    assert!(rogue.get(&tenants).bearer_auth(MASTER).send().await.is_err());
    gw.shutdown().await;
}

#[tokio::test]
async fn an_upstream_behind_a_private_ca_is_reached_with_ca_file() {
    // The upstream: a TLS gateway (its own private CA) in front of the fake.
    let files = Files::new();
    let (_ca, _) = server_pki(&files);
    let fake = FakeUpstream::openai().await.unwrap();
    let upstream = gateway(&fake, "", &tls_section(&files, ""), "").await;
    let base = https(upstream.addr, "/v1");
    let front = |ca_file: Option<&Path>| {
        let ca_line = ca_file.map(|p| format!("ca_file = \"{}\"\n", p.display())).unwrap_or_default();
        format!(
            "[backends.up]\nkind = \"openai\"\nbase_url = \"{base}\"\nmodels = [\"m\"]\n{ca_line}\
             [deployments.m]\nbackends = [\"up\"]\n[retry]\nmax_retries = 0\n"
        )
    };
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});

    let trusting = TestGateway::start(&front(Some(&files.path("ca.pem")))).await;
    let r = trusting.post_json("/v1/chat/completions", &chat).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let chats = || fake.requests().iter().filter(|r| r.path == "/v1/chat/completions").count();
    assert_eq!(chats(), 1);

    // Without the CA the upstream's certificate is not trusted: the request fails upstream.
    let untrusting = TestGateway::start(&front(None)).await;
    let r = untrusting.post_json("/v1/chat/completions", &chat).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    let body = r.text().await.unwrap();
    assert!(body.contains("backend") || body.contains("upstream"), "{body}");
    assert_eq!(chats(), 1, "the untrusted upstream was never asked");

    trusting.shutdown().await;
    untrusting.shutdown().await;
    upstream.shutdown().await;
}

#[test]
fn tls_problems_are_listed_with_the_others_and_skipping_verification_is_not_offered() {
    let files = Files::new();
    let base = "[backends.up]\nkind = \"openai\"\nbase_url = \"https://127.0.0.1:9/v1\"\n";
    let deployments = "[deployments.m]\nbackends = [\"up\"]\n";
    // Missing files, admin mTLS without a client CA, a bad interval — and a backend asking to
    // skip verification — all at once.
    let toml = format!(
        "[server]\nlisten = \"nope\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         admin_requires_client_cert = true\nreload_interval_secs = 0\n{base}insecure_skip_verify = true\n\
         ca_file = \"{}\"\n{deployments}",
        files.path("missing-cert.pem").display(),
        files.path("missing-key.pem").display(),
        files.path("missing-ca.pem").display(),
    );
    let all = ferrogate::config::load_str(&toml).unwrap_err().to_string();
    for needle in [
        "server.listen",
        "server.tls.cert_file",
        "admin_requires_client_cert needs server.tls.client_ca_file",
        "reload_interval_secs",
        "insecure_skip_verify",
        "missing-ca.pem",
    ] {
        assert!(all.contains(needle), "{needle}: {all}");
    }
    // A key that does not fit the certificate is caught at load too.
    let ca = Ca::new("ca");
    let (cert, _, _) = ca.issue("a", 1, false);
    let (_, other_key, _) = ca.issue("b", 2, false);
    files.write("cert.pem", &cert);
    files.write("key.pem", &other_key);
    let toml = format!("{}{base}{deployments}", tls_section(&files, ""));
    let all = ferrogate::config::load_str(&toml).unwrap_err().to_string();
    assert!(all.contains("does not fit"), "{all}");
}
