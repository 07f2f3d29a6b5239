//! The accept side (issue 17, item 3), over real sockets: a slowloris connection is closed
//! within `server.header_read_timeout_secs` (no key needed to try), an idle kept-alive connection
//! within `server.idle_timeout_secs`, a body trickled slowly is cut with 408 after
//! `server.body_read_timeout_secs`, and thousands of idle connections neither stop a new request
//! nor get past `server.max_connections`, beyond which a connection is answered 503 and closed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ferrogate_testkit::TestGateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway with one deployment (never called here) and `server` lines under `[server]`.
async fn gateway(server: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[server]\n{server}\n[backends.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [deployments.m]\nbackends = [\"up\"]\n"
    ))
    .await
}

/// Everything the peer sends until it closes (or resets) the connection.
async fn read_until_closed(c: &mut TcpStream) -> String {
    let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Waits for the close, failing past `within`; returns what was read and when the close came.
async fn closed_within(c: &mut TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    let got = tokio::time::timeout(within, read_until_closed(c)).await.expect("the gateway closed the connection");
    (got, start.elapsed())
}

/// One `GET /health` on `c`, kept alive; returns the response head and body as read.
async fn get_health(c: &mut TcpStream) -> String {
    c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_within_the_header_timeout() {
    let gw = gateway("header_read_timeout_secs = 1").await;
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // A connection that says nothing at all (hyper-util is still detecting its protocol).
    let mut mute = TcpStream::connect(gw.addr).await.unwrap();
    // One that sends a byte a time, a byte too few for the protocol to be known.
    let mut drip = TcpStream::connect(gw.addr).await.unwrap();
    drip.write_all(b"P").await.unwrap();

    let (_, after) = closed_within(&mut slow, Duration::from_secs(5)).await;
    assert!(after >= Duration::from_millis(800), "not before the timeout: {after:?}");
    let (got, _) = closed_within(&mut mute, Duration::from_secs(3)).await;
    assert!(!got.starts_with("HTTP/1.1 2"), "{got}");
    closed_within(&mut drip, Duration::from_secs(3)).await;
    // The server is unharmed.
    assert_eq!(gw.http.get(gw.url("/health")).send().await.unwrap().status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let gw = gateway("idle_timeout_secs = 1\nheader_read_timeout_secs = 30").await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    assert!(get_health(&mut c).await.starts_with("HTTP/1.1 200"));
    let (_, after) = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(after >= Duration::from_millis(800), "not before the timeout: {after:?}");
    gw.shutdown().await;
}

/// The idle deadline counts from the last request's end: a connection that keeps asking more
/// often than the idle timeout stays open past it, and closes once it stops asking.
#[tokio::test]
async fn a_connection_in_use_outlives_the_idle_timeout_and_closes_after_its_last_request() {
    let gw = gateway("idle_timeout_secs = 1\nheader_read_timeout_secs = 30").await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let start = Instant::now();
    for _ in 0..5 {
        assert!(get_health(&mut c).await.starts_with("HTTP/1.1 200"), "still open {:?} in", start.elapsed());
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert!(start.elapsed() > Duration::from_millis(2_400), "asked past the idle timeout");
    assert!(get_health(&mut c).await.starts_with("HTTP/1.1 200"));
    let (_, after) = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(after >= Duration::from_millis(800), "not before the timeout: {after:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_body_trickled_slowly_is_cut_with_408() {
    let gw = gateway("body_read_timeout_secs = 1").await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{")
        .await
        .unwrap();
    let start = Instant::now();
    let (mut rx, mut tx) = c.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tx.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), rx.read_to_end(&mut out)).await;
    trickle.abort();
    let got = String::from_utf8_lossy(&out);
    assert!(read.is_ok(), "cut within 5 s; got so far: {got}");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"code\":\"body_read_timeout\""), "{got}");
    assert!(start.elapsed() >= Duration::from_millis(800), "not before the timeout: {:?}", start.elapsed());
    gw.shutdown().await;
}

/// 2,000 idle connections (4,000 descriptors in this process with the server's ends; the
/// limit here is 20,000, so no `RLIMIT_NOFILE` change is needed) under a cap of 2,001.
#[tokio::test]
async fn idle_connections_do_not_stop_new_requests_and_the_cap_refuses_beyond_it() {
    const IDLE: usize = 2_000;
    let gw = gateway(&format!("header_read_timeout_secs = 120\nmax_connections = {}", IDLE + 1)).await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // Accepted in order: this one gets the last slot, and is served at once.
    let mut last = TcpStream::connect(gw.addr).await.unwrap();
    let start = Instant::now();
    assert!(get_health(&mut last).await.starts_with("HTTP/1.1 200"));
    assert!(start.elapsed() < Duration::from_secs(2), "served promptly: {:?}", start.elapsed());

    let mut over = TcpStream::connect(gw.addr).await.unwrap();
    let (got, _) = closed_within(&mut over, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("\"code\":\"too_many_connections\"") && got.contains("retry-after: 1"), "{got}");

    // A slot given back is a slot to use.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        if get_health(&mut c).await.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(idle);
    gw.shutdown().await;
}

/// An HTTP/1 connection is told from HTTP/2 by its first bytes, peeked. A request whose first
/// segment could still be the HTTP/2 preface ("P", then the rest) goes the version-detecting
/// way and is served all the same, as is one whose first bytes settle it at once.
#[tokio::test]
async fn http1_is_served_whether_or_not_its_first_bytes_could_be_the_http2_preface() {
    let gw = gateway("").await;
    let mut unsure = TcpStream::connect(gw.addr).await.unwrap();
    // "P" is also the preface's first byte: `PUT /health` (405, but an HTTP/1.1 answer).
    unsure.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    unsure.write_all(b"UT /health HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), unsure.read(&mut buf)).await.expect("an answer").unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(got.starts_with("HTTP/1.1 405"), "{got}");
    // Kept alive on either path.
    assert!(get_health(&mut unsure).await.starts_with("HTTP/1.1 200"));
    let mut sure = TcpStream::connect(gw.addr).await.unwrap();
    for _ in 0..2 {
        let got = get_health(&mut sure).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let gw = gateway("").await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let res = h2.get(gw.url("/health")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.version()), (200, reqwest::Version::HTTP_2));
    gw.shutdown().await;
}
