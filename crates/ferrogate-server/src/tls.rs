//! TLS on the gateway's own listener (`[server.tls]`): rustls (ring) behind the accept loop,
//! HTTP/1.1 and HTTP/2 offered by ALPN, the certificate re-read when its files change, and
//! optional client certificates (mTLS) that the admin API may demand (`gate`).
//!
//! Invariants: a certificate pair that does not load (unreadable, not PEM, key not matching the
//! leaf) never replaces the one in use — it is logged and the old pair keeps serving; a client
//! certificate that is presented must verify against `client_ca_file` or the handshake fails,
//! and only such a verified certificate marks a connection [`PeerCert::verified`].

pub mod gate;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::settings::TlsSection;

/// What a request learns about its connection's TLS (a request extension, beside the peer
/// address). Absent on a plain-HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCert {
    /// The client presented a certificate and it verified against `client_ca_file`.
    pub verified: bool,
}

/// The listener's TLS: the acceptor and the certificate it serves, swapped on reload.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    cert: Arc<LiveCert>,
    /// `client_ca_file` is set: a certificate the client presents is verified.
    pub verifies_clients: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert.files).field("verifies_clients", &self.verifies_clients).finish()
    }
}

/// The pair in use and where it comes from.
struct LiveCert {
    files: (PathBuf, PathBuf),
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for LiveCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCert").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

/// The crypto provider: ring, the one reqwest already links (no second provider in the binary).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the listener's TLS from `[server.tls]` (reads the files once).
pub fn build(sec: &TlsSection) -> Result<Tls, String> {
    let provider = provider();
    let key = load_pair(&sec.cert_file, &sec.key_file, &provider)?;
    let cert = Arc::new(LiveCert {
        files: (sec.cert_file.clone(), sec.key_file.clone()),
        current: RwLock::new(Arc::new(key)),
        provider: Arc::clone(&provider),
    });
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| format!("server.tls: {e}"))?;
    let builder = match &sec.client_ca_file {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("server.tls.client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), cert, verifies_clients: sec.client_ca_file.is_some() })
}

/// Every problem of `[server.tls]` (for the config check): the files load and fit together.
pub fn check(sec: &TlsSection, errs: &mut Vec<String>) {
    if let Err(e) = load_pair(&sec.cert_file, &sec.key_file, &provider()) {
        errs.push(e);
    }
    match &sec.client_ca_file {
        Some(ca) => {
            if let Err(e) = load_roots(ca) {
                errs.push(e);
            }
        }
        None if sec.admin_requires_client_cert => {
            errs.push("server.tls.admin_requires_client_cert needs server.tls.client_ca_file".into());
        }
        None => {}
    }
    if !(1..=3600).contains(&sec.reload_interval_secs) {
        errs.push("server.tls.reload_interval_secs must be between 1 and 3600".into());
    }
}

/// The leaf chain and its key, checked to belong together.
fn load_pair(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = load_certs(cert_file).map_err(|e| format!("server.tls.cert_file: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("server.tls.key_file: cannot read a PEM private key from {}: {e}", key_file.display()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "server.tls: the key in {} does not fit the certificate in {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })
}

/// Every certificate of a PEM file; none is an error.
fn load_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read PEM certificates from {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", file.display()));
    }
    Ok(certs)
}

fn load_roots(file: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(file).map_err(|e| format!("server.tls.client_ca_file: {e}"))? {
        roots.add(c).map_err(|e| format!("server.tls.client_ca_file: {}: {e}", file.display()))?;
    }
    Ok(roots)
}

/// SIGHUP, where there is one; never fires elsewhere or when it cannot be listened for.
#[cfg(unix)]
struct Hangup(Option<tokio::signal::unix::Signal>);

#[cfg(unix)]
impl Hangup {
    fn new() -> Self {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Hangup(Some(s)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: certificates reload on file change only");
                Hangup(None)
            }
        }
    }

    async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                if s.recv().await.is_none() {
                    self.0 = None;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

#[cfg(not(unix))]
struct Hangup;

#[cfg(not(unix))]
impl Hangup {
    fn new() -> Self {
        Hangup
    }

    async fn recv(&mut self) {
        std::future::pending::<()>().await;
    }
}

/// What a file looked like at the last check.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

impl Tls {
    /// Re-reads the pair when either file's modification time or size changed (a Kubernetes
    /// Secret's symlink swap included: the metadata of the link's target is read), every
    /// `every`, and at once on SIGHUP, until `stop`.
    pub fn spawn_reloader(&self, every: Duration, tasks: &TaskTracker, stop: CancellationToken) {
        let cert = Arc::clone(&self.cert);
        tasks.spawn(async move {
            let mut hup = Hangup::new();
            let mut seen = (stamp(&cert.files.0), stamp(&cert.files.1));
            loop {
                let forced = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => false,
                    _ = hup.recv() => true,
                };
                let now = (stamp(&cert.files.0), stamp(&cert.files.1));
                if now == seen && !forced {
                    continue;
                }
                seen = now;
                cert.reload();
            }
        });
    }

    /// Loads the pair now (the reloader's step; tests).
    pub fn reload(&self) -> bool {
        self.cert.reload()
    }
}

impl LiveCert {
    /// Loads the files; on success the new pair serves the next handshakes, else the old stays.
    fn reload(&self) -> bool {
        match load_pair(&self.files.0, &self.files.1, &self.provider) {
            Ok(key) => match self.current.write() {
                Ok(mut cur) => {
                    *cur = Arc::new(key);
                    tracing::info!(cert_file = %self.files.0.display(), "TLS certificate reloaded");
                    metrics::counter!("ferrogate_tls_cert_reloads_total", "result" => "ok").increment(1);
                    true
                }
                Err(_) => false,
            },
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded: keeping the one in use");
                metrics::counter!("ferrogate_tls_cert_reloads_total", "result" => "error").increment(1);
                false
            }
        }
    }
}
