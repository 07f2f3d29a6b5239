//! A client that stays connected but stops reading a stream (issue 17, item 2): after
//! `server.client_write_timeout_secs` the gateway cuts the stream, cancels the upstream, frees
//! the deployment's slot and settles the request as `client_stalled` — over a real socket with a
//! small receive buffer that the test simply stops reading.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{FakeUpstream, chat_json, chat_sse};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_and_frees_its_slot() {
    let f = FakeUpstream::openai().await.unwrap();
    // ~20 MB of stream: far more than the socket buffers and the pump's channel hold.
    let piece = "x".repeat(1024);
    let pieces: Vec<&str> = vec![piece.as_str(); 20_000];
    f.push(CHAT, chat_sse(&pieces, None));
    f.on(CHAT, chat_json("ok", Some((1, 1))));
    let gw = TestGateway::start(&format!(
        "[server]\nclient_write_timeout_secs = 1\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\nconcurrency = 1\nqueue_size = 0\n",
        f.url("/v1")
    ))
    .await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(gw.addr).await.unwrap();
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
    let mut first = [0u8; 512];
    let n = conn.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"), "the stream started");
    // From here on the client reads nothing, and stays connected.

    let start = Instant::now();
    assert!(f.wait_for_disconnects(1, Duration::from_secs(15)).await, "the upstream stream was not cancelled");
    assert!(start.elapsed() < Duration::from_secs(12), "cut within the timeout (plus buffers): {:?}", start.elapsed());
    let res = gw.http.post(gw.url(CHAT)).json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(res.send().await.unwrap().status(), 200, "the one slot is free again");
    let metrics = gw.http.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("client_stalled"), "settled as client_stalled");
    drop(conn);
    gw.shutdown().await;
}
