//! [`Upstream`]: one backend's HTTP client. By default hyper-util's pooled client directly
//! (keep-alive, TCP_NODELAY, TCP keep-alive, HTTP/1.1, and HTTP/2 where TLS negotiates it; rustls
//! with the public roots plus a `ca_file`'s): none of reqwest's per-request layers (redirect
//! policy, URL re-parsing) on the hot path. A backend with a `proxy`, or with credentials in its
//! `base_url`, goes through reqwest, which forwards plain-HTTP requests and tunnels HTTPS ones as
//! proxies expect, and turns URL credentials into Basic authentication.
//!
//! Invariant: requests carry no overall timeout here — callers bound each phase; the headers
//! every request carries (user agent, API key, configured extras) are built once per backend, the
//! API key marked sensitive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrogate_core::{BackendError, RequestObs, TimeoutKind};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{error_chain, status_error};

/// Any error of a response body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response body, whichever client read it.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;
pub(crate) type Response = http::Response<Body>;

/// Idle pooled connections are closed after this long: under the 5 s after which common
/// inference servers close an idle keep-alive connection themselves (uvicorn under vLLM and
/// SGLang, llama.cpp's httplib), so the pool never hands out a connection the server is closing
/// at that moment. That race failed requests now and then (retried elsewhere: with prefix
/// routing, a tenant moved engines and lost its cache; 6 of 240 requests in bench-routing).
/// httpx, LiteLLM's client, keeps 5 s too.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// TCP keep-alive probes find dead peers of long idle streams.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// HTTP/2 connections: a PING after this long without a frame from the upstream…
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// …and the connection (with every stream on it) is closed if the answer takes longer.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/2 connections' flow-control window. `h2` closes a connection ("too_many_data_frames")
/// when small DATA frames pile up unread beyond half this window (each frame under 256 bytes
/// costs 256 minus its size): at hyper's 5 MB that was ~20,000 token chunks per connection, under
/// a second of lag for 2,500 streams on one. 8 MB of budget lets a gateway that falls behind
/// deliver late instead of cutting every stream of the connection; an upstream can send at most
/// this much ahead of what is read.
const H2_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
const USER_AGENT: HeaderValue = HeaderValue::from_static(concat!("ferrogate/", env!("CARGO_PKG_VERSION")));
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a backend's HTTP client is built from.
pub(crate) struct ClientSettings<'a> {
    pub base_url: &'a str,
    pub bearer: Option<&'a str>,
    pub headers: &'a BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub pool_idle_per_host: usize,
    /// Every connection speaks HTTP/2 (h2c with prior knowledge on `http://`).
    pub http2_prior_knowledge: bool,
    /// With `http2_prior_knowledge`: the HTTP/2 connections requests are spread over.
    pub http2_connections: usize,
    pub proxy: Option<&'a str>,
    /// Extra roots (PEM) for a private CA.
    pub ca_file: Option<&'a std::path::Path>,
}

type Direct = Client<Origin, Full<Bytes>>;

/// The authority of a cleartext HTTP/1 backend's request URIs (see [`Origin`]).
const POOL_KEY: &str = "u";

// One per backend, built once: the common variant stays inline rather than behind a Box.
#[allow(clippy::large_enum_variant)]
enum Transport {
    Direct(Direct),
    /// HTTP/2 with prior knowledge: a client per connection (each keeps one shared connection),
    /// requests spread over them in turn, so one connection's failure — or the `h2` crate's
    /// flood guard closing it — takes only its share of the streams.
    Spread {
        clients: Box<[Direct]>,
        next: AtomicUsize,
    },
    Proxied(reqwest::Client),
}

/// One backend's pooled client and the headers every request carries.
pub(crate) struct Upstream {
    transport: Transport,
    headers: HeaderMap,
    /// `http2_prior_knowledge`: named in the error when a connection closes unanswered.
    http2_only: bool,
    /// Request URIs carry [`POOL_KEY`] as their authority (see [`Origin`]).
    short_key: bool,
}

/// One request being built: method, URI, headers, body.
pub(crate) struct Call(Request<Bytes>);

impl Upstream {
    pub(crate) fn new(s: &ClientSettings<'_>) -> Result<Self, String> {
        let headers = default_headers(s)?;
        let (transport, short_key) = if s.proxy.is_some() || has_credentials(s.base_url) {
            (Transport::Proxied(proxied(s)?), false)
        } else if s.http2_prior_knowledge && s.http2_connections > 1 {
            let clients = (0..s.http2_connections).map(|_| direct(s, None)).collect::<Result<_, _>>()?;
            (Transport::Spread { clients, next: AtomicUsize::new(0) }, false)
        } else {
            // Cleartext HTTP/1 with the `Host` header set once per backend: nothing on the wire
            // comes from the request URI's authority, so the pool may be keyed by a short one.
            let origin =
                (headers.contains_key(header::HOST) && host_header(s).is_some()).then(|| origin(s.base_url)).flatten();
            let short_key = origin.is_some();
            (Transport::Direct(direct(s, origin)?), short_key)
        };
        Ok(Self { transport, headers, http2_only: s.http2_prior_knowledge, short_key })
    }

    /// `base` + `path` as a request URI, parsed once per backend; for a cleartext HTTP/1
    /// backend with [`POOL_KEY`] as its authority (see [`Origin`]).
    pub(crate) fn uri(&self, base: &str, path: &str) -> Result<Uri, String> {
        let full = uri(base, path)?;
        if !self.short_key {
            return Ok(full);
        }
        let mut parts = full.into_parts();
        parts.authority = Some(http::uri::Authority::from_static(POOL_KEY));
        Uri::from_parts(parts).map_err(|e| format!("invalid base_url '{base}': {e}"))
    }

    /// A request to `uri` (parsed once, when the backend was built) with the backend's headers.
    pub(crate) fn call(&self, method: Method, uri: &Uri) -> Call {
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = method;
        *req.uri_mut() = uri.clone();
        // Sized for the per-request headers too, so adding them never grows the map.
        let h = req.headers_mut();
        h.reserve(self.headers.len() + 5);
        for (name, value) in &self.headers {
            h.insert(name.clone(), value.clone());
        }
        Call(req)
    }

    /// Sends `call`; a non-2xx answer becomes the matching error (its body read, bounded).
    pub(crate) async fn send(&self, call: Call) -> Result<Response, BackendError> {
        let resp = match &self.transport {
            Transport::Direct(c) => self.send_direct(c, call).await?,
            Transport::Spread { clients, next } => {
                let turn = next.fetch_add(1, Ordering::Relaxed) % clients.len();
                let c = clients.get(turn).ok_or_else(|| BackendError::Internal("no HTTP/2 client".into()))?;
                self.send_direct(c, call).await?
            }
            Transport::Proxied(c) => {
                let (parts, body) = call.0.into_parts();
                // Built from the URL text so reqwest moves URL credentials into Basic auth.
                let rb = c.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body);
                let resp = http::Response::from(rb.send().await.map_err(super::transport_error)?);
                resp.map(|b| b.map_err(|e| Box::new(e.without_url()) as BoxError).boxed_unsync())
            }
        };
        if resp.status().is_success() { Ok(resp) } else { Err(status_error(resp).await) }
    }

    async fn send_direct(&self, c: &Direct, call: Call) -> Result<Response, BackendError> {
        let resp = c.request(call.0.map(Full::new)).await.map_err(|e| direct_error(&e, self.http2_only))?;
        Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
    }
}

impl Call {
    /// A JSON body (`Content-Type: application/json`).
    pub(crate) fn json(mut self, body: Vec<u8>) -> Self {
        self.0.headers_mut().insert(header::CONTENT_TYPE, JSON);
        *self.0.body_mut() = Bytes::from(body);
        self
    }

    /// `Accept: text/event-stream`.
    pub(crate) fn event_stream(mut self) -> Self {
        self.0.headers_mut().insert(header::ACCEPT, EVENT_STREAM);
        self
    }

    /// `X-Request-Id: <id>`, skipped when the id is not a valid header value.
    pub(crate) fn request_id(mut self, request_id: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(request_id)
            && !request_id.is_empty()
        {
            self.0.headers_mut().insert(REQUEST_ID, v);
        }
        self
    }

    /// The request's W3C trace context (`traceparent`, `tracestate`), so the upstream's spans join
    /// the gateway's trace; nothing when tracing is off.
    pub(crate) fn trace(mut self, obs: &RequestObs) -> Self {
        for (name, value) in &obs.trace_headers {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                self.0.headers_mut().insert(n, v);
            }
        }
        self
    }
}

/// Whether the answer is JSON (an upstream that ignored `stream: true`).
pub(crate) fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// `base` + `path` as a request URI.
fn uri(base: &str, path: &str) -> Result<Uri, String> {
    format!("{base}{path}").parse::<Uri>().map_err(|e| format!("invalid base_url '{base}': {e}"))
}

/// The connector of a direct client: connects to `to` whatever the request URI names, or to the
/// URI's own origin when `to` is `None`.
///
/// Why: hyper-util's pool finds a connection by hashing the request's scheme and authority with
/// SipHash, the authority one byte at a time (`http`'s `Hash` for `Authority`), three times per
/// request, and its map's hasher cannot be chosen: with the one-byte key a proxied JSON request
/// costs 1.1% fewer instructions (`make bench-instructions`: SipHash ~1,800 → ~400). A client
/// serves one backend, so its cleartext HTTP/1 requests carry the one-byte [`POOL_KEY`] as
/// their authority and this connector dials the backend's real origin. Nothing else reads the
/// authority there: HTTP/1 requests go out in origin form with the `Host` header the backend set
/// once ([`host_header`]). TLS (SNI, the certificate's name, maybe HTTP/2's `:authority`) and
/// HTTP/2 keep the real authority in the URI (`to` is `None`).
#[derive(Clone)]
pub(crate) struct Origin {
    inner: HttpsConnector<HttpConnector>,
    to: Option<Uri>,
}

impl tower::Service<Uri> for Origin {
    type Response = <HttpsConnector<HttpConnector> as tower::Service<Uri>>::Response;
    type Error = <HttpsConnector<HttpConnector> as tower::Service<Uri>>::Error;
    type Future = <HttpsConnector<HttpConnector> as tower::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let uri = self.to.clone().unwrap_or(uri);
        self.inner.call(uri)
    }
}

/// `base_url`'s scheme and authority (what a connector dials).
fn origin(base_url: &str) -> Option<Uri> {
    let uri = base_url.parse::<Uri>().ok()?;
    Uri::builder().scheme(uri.scheme()?.clone()).authority(uri.authority()?.clone()).path_and_query("/").build().ok()
}

fn direct(s: &ClientSettings<'_>, to: Option<Uri>) -> Result<Direct, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_connect_timeout(Some(s.connect_timeout));
    http.enforce_http(false);
    let tls = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config(s.ca_file)?).https_or_http();
    // With prior knowledge TLS offers only `h2` (a server that cannot speak it fails the
    // handshake, clearly, rather than answering HTTP/1.1 to an HTTP/2 client).
    let https = if s.http2_prior_knowledge {
        tls.enable_http2().wrap_connector(http)
    } else {
        tls.enable_http1().enable_http2().wrap_connector(http)
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_max_idle_per_host(s.pool_idle_per_host)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // A shared HTTP/2 connection carries every stream of the host: a peer that stops
        // answering is found by PINGs, not by the streams' token timeouts one by one.
        .http2_keep_alive_interval(H2_PING_INTERVAL)
        .http2_keep_alive_timeout(H2_PING_TIMEOUT)
        .http2_initial_connection_window_size(H2_CONNECTION_WINDOW);
    if s.http2_prior_knowledge {
        client.http2_only(true);
    }
    Ok(client.build(Origin { inner: https, to }))
}

/// rustls with the public web roots (as reqwest's `rustls-tls` had) and a `ca_file`'s certificates.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(file) = ca_file {
        for cert in extra_roots(file)? {
            roots.add(cert).map_err(|e| format!("ca_file {}: {e}", file.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The certificates of a PEM bundle (at least one).
pub(crate) fn extra_roots(file: &std::path::Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(file).map_err(|e| format!("ca_file {}: {e}", file.display()))?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {}: not PEM certificates: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {} holds no PEM certificate", file.display()));
    }
    Ok(certs)
}

/// Whether `base_url` carries `user:password@` (reqwest sends them as Basic authentication).
fn has_credentials(base_url: &str) -> bool {
    base_url.parse::<Uri>().ok().and_then(|u| u.authority().map(|a| a.as_str().contains('@'))).unwrap_or(false)
}

/// The reqwest client of a backend behind a proxy or with URL credentials (environment proxy
/// variables are ignored).
fn proxied(s: &ClientSettings<'_>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(s.connect_timeout)
        .pool_max_idle_per_host(s.pool_idle_per_host)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(TCP_KEEPALIVE)
        .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
        .redirect(reqwest::redirect::Policy::none())
        .use_rustls_tls()
        .no_proxy();
    if s.http2_prior_knowledge {
        builder = builder.http2_prior_knowledge();
    }
    if let Some(p) = s.proxy {
        builder = builder.proxy(reqwest::Proxy::all(p).map_err(|e| format!("invalid proxy '{p}': {e}"))?);
    }
    if let Some(file) = s.ca_file {
        let pem = std::fs::read(file).map_err(|e| format!("ca_file {}: {e}", file.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("ca_file: {e}"))? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

fn default_headers(s: &ClientSettings<'_>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(s.headers.len() + 6);
    map.insert(header::USER_AGENT, USER_AGENT);
    for (name, value) in s.headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name '{name}'"))?;
        let v = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header '{name}'"))?;
        map.insert(n, v);
    }
    if let Some(key) = s.bearer {
        let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| "the API key is not a valid header value".to_owned())?;
        v.set_sensitive(true);
        map.insert(header::AUTHORIZATION, v);
    }
    if !map.contains_key(header::HOST)
        && let Some(host) = host_header(s)
    {
        map.insert(header::HOST, host);
    }
    Ok(map)
}

/// The `Host` header hyper-util writes on every HTTP/1 request (`host[:port]`, without the
/// scheme's default port), made once per backend: the client would build it with a `format!`
/// per request. Only for cleartext HTTP/1 (`http://` without prior knowledge): over TLS the
/// connection may turn out to be HTTP/2, which names the authority in `:authority` instead.
fn host_header(s: &ClientSettings<'_>) -> Option<HeaderValue> {
    if s.http2_prior_knowledge {
        return None;
    }
    let uri = s.base_url.parse::<Uri>().ok()?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return None;
    }
    let host = uri.host()?;
    match uri.port() {
        Some(port) if port.as_u16() != 80 => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

/// A hyper-util client failure → the variant that says which phase failed (as reqwest's were).
fn direct_error(e: &hyper_util::client::legacy::Error, http2_only: bool) -> BackendError {
    let detail = error_chain(e);
    if e.is_connect() {
        if timed_out(e) { BackendError::Timeout(TimeoutKind::Connect) } else { BackendError::Connect(detail) }
    } else if http2_only {
        // The usual cause: a server that speaks only HTTP/1.1 answered the HTTP/2 preface with
        // a 400 and closed.
        BackendError::Closed(format!(
            "{detail} (the backend has http2_prior_knowledge = true: does the server speak HTTP/2 without being asked?)"
        ))
    } else {
        // Sent, but the connection closed before any response: the upstream crashed or dropped
        // it. Nothing reached the client, so another attempt is safe.
        BackendError::Closed(detail)
    }
}

/// Whether an I/O timeout is among `e`'s causes (the connector's connect timeout).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bearer_header_is_sensitive() {
        let headers = BTreeMap::from([("x-extra".to_owned(), "1".to_owned())]);
        let s = ClientSettings {
            base_url: "http://x/v1",
            bearer: Some("sk-secret"),
            headers: &headers,
            connect_timeout: Duration::from_secs(1),
            pool_idle_per_host: 1,
            http2_prior_knowledge: false,
            http2_connections: 1,
            proxy: None,
            ca_file: None,
        };
        let map = default_headers(&s).unwrap();
        assert!(map[header::AUTHORIZATION].is_sensitive());
        assert!(!format!("{map:?}").contains("sk-secret"));
        assert_eq!(map["x-extra"], "1");
        assert!(map[header::USER_AGENT].to_str().unwrap().starts_with("ferrogate/"));
    }

    fn settings<'a>(base_url: &'a str, headers: &'a BTreeMap<String, String>, h2: bool) -> ClientSettings<'a> {
        ClientSettings {
            base_url,
            bearer: None,
            headers,
            connect_timeout: Duration::from_secs(1),
            pool_idle_per_host: 1,
            http2_prior_knowledge: h2,
            http2_connections: 1,
            proxy: None,
            ca_file: None,
        }
    }

    #[test]
    fn the_host_header_is_what_the_client_would_write_made_once() {
        let none = BTreeMap::new();
        let host = |url: &str, h2: bool| default_headers(&settings(url, &none, h2)).unwrap().get(header::HOST).cloned();
        assert_eq!(host("http://127.0.0.1:8000/v1", false).unwrap(), "127.0.0.1:8000");
        assert_eq!(host("http://vllm.internal/v1", false).unwrap(), "vllm.internal");
        assert_eq!(host("http://vllm.internal:80/v1", false).unwrap(), "vllm.internal");
        assert_eq!(host("http://[::1]:9000/v1", false).unwrap(), "[::1]:9000");
        // TLS may negotiate HTTP/2, and prior knowledge is HTTP/2: the client decides there.
        assert_eq!(host("https://api.example.com/v1", false), None);
        assert_eq!(host("http://127.0.0.1:8000/v1", true), None);
        // A configured Host header wins.
        let own = BTreeMap::from([("host".to_owned(), "llm.example".to_owned())]);
        let map = default_headers(&settings("http://127.0.0.1:8000/v1", &own, false)).unwrap();
        assert_eq!(map.get_all(header::HOST).iter().collect::<Vec<_>>(), ["llm.example"]);
    }

    #[test]
    fn a_timed_out_cause_is_found_in_the_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp connect error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out_connect = Outer(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"));
        assert!(timed_out(&timed_out_connect));
        assert!(!timed_out(&Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
    }

    #[test]
    fn only_cleartext_http1_uris_carry_the_short_pool_key() {
        let none = BTreeMap::new();
        let authority = |url: &str, h2: bool| {
            let up = Upstream::new(&settings(url, &none, h2)).unwrap();
            up.uri(url, "/chat/completions").unwrap().authority().unwrap().as_str().to_owned()
        };
        assert_eq!(authority("http://127.0.0.1:8000/v1", false), POOL_KEY);
        assert_eq!(authority("https://api.example.com/v1", false), "api.example.com");
        assert_eq!(authority("http://127.0.0.1:8000/v1", true), "127.0.0.1:8000");
        let proxied =
            ClientSettings { proxy: Some("http://127.0.0.1:3128"), ..settings("http://x:1/v1", &none, false) };
        let up = Upstream::new(&proxied).unwrap();
        assert_eq!(up.uri("http://x:1/v1", "/models").unwrap().to_string(), "http://x:1/v1/models");
    }

    /// The request as it reaches the upstream: the real origin dialed, the path and `Host` as
    /// without the short key.
    #[tokio::test]
    async fn a_short_keyed_request_reaches_the_backends_origin_with_its_host() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut heads = Vec::new();
            let (mut conn, _) = listener.accept().await.unwrap();
            // Two requests on one kept-alive connection: the pool found it by the short key.
            for _ in 0..2 {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    conn.read_exact(&mut byte).await.unwrap();
                    head.push(byte[0]);
                }
                heads.push(String::from_utf8(head).unwrap().to_ascii_lowercase());
                conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
            }
            heads
        });
        let none = BTreeMap::new();
        let base = format!("http://127.0.0.1:{port}/v1");
        let up = Upstream::new(&settings(&base, &none, false)).unwrap();
        let uri = up.uri(&base, "/models").unwrap();
        for _ in 0..2 {
            let resp = up.send(up.call(Method::GET, &uri)).await.unwrap();
            assert_eq!(super::super::read_body(resp, 16).await.unwrap(), b"ok");
        }
        for head in server.await.unwrap() {
            assert!(head.starts_with("get /v1/models http/1.1\r\n"), "{head}");
            assert!(head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")), "{head}");
        }
    }

    #[test]
    fn uris_are_checked_once() {
        let u = uri("http://127.0.0.1:8000/v1", "/chat/completions").unwrap();
        assert_eq!(u.path(), "/v1/chat/completions");
        assert!(uri("http://bad host/v1", "/x").is_err());
        assert!(has_credentials("https://bob:secret@x/v1") && !has_credentials("https://x/v1"));
    }
}
