//! OpenTelemetry traces: the tracer (OTLP over HTTP/protobuf, batched off the request path), and
//! the spans of one request.
//!
//! One span per request (kind server, named after the route), with children built from times
//! recorded while the request ran: `auth`, `routing`, `limits`, one `backend` span per attempt
//! (its context is the `traceparent` sent upstream), the embedded engine's `engine.queue`,
//! `engine.prefill` and `engine.decode`, and `settle`. The engine runs on its own thread, so its
//! phases are instants it recorded (`EnginePhases`), turned into spans with explicit start and
//! end times when the request settles.
//!
//! Invariants: an unsampled request costs one sampler decision and no span data (its
//! `traceparent` is still forwarded, flagged unsampled); exporting never blocks a request — the
//! batch processor runs on its own thread and drops spans when its queue is full.
//!
//! Exporting never takes CPU from requests either: the batch processor's thread (which encodes
//! the spans) and the exporter's own runtime thread (`ferrogate-otlp`, which sends them) run at
//! idle priority (`SCHED_IDLE` on Linux). At normal priority their bursts (encoding 512 spans,
//! a 100 kB POST) preempted request workers and showed in the latency tail. What no priority
//! covers is the kernel's share of sending a POST, so batches are small
//! (`max_export_batch_spans`, 64 by default). On a CPU that never idles, spans wait in the queue
//! and, once it is full, are dropped — counted: the spans ended and exported are in
//! `ferrogate_tracing_spans_total{outcome}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HeaderExtractor, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};

use super::config::TracingConfig;

/// The tracer and its provider (which owns the batch processor's thread).
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    counts: Arc<SpanCounts>,
    /// Keeps the exporter's runtime thread alive (it ends when this drops).
    _export_thread: tokio::sync::oneshot::Sender<()>,
}

/// Spans ended (sampled) and spans the collector accepted, since start.
#[derive(Debug, Default)]
pub struct SpanCounts {
    pub ended: AtomicU64,
    pub exported: AtomicU64,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracing")
    }
}

/// `endpoint` is a base URL (`http://host:4318`) or the full traces URL (`…/v1/traces`).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") }
}

impl Tracing {
    /// Builds the exporter and tracer, their threads at idle priority (see the module docs).
    pub fn start(cfg: &TracingConfig) -> Result<Self, String> {
        let (rt, export_thread) = export_runtime()?;
        let client = OtlpHttp {
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(cfg.export_timeout_ms))
                .build()
                .map_err(|e| format!("tracing: cannot build the OTLP HTTP client: {e}"))?,
            rt,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(traces_url(&cfg.endpoint))
            .with_timeout(Duration::from_millis(cfg.export_timeout_ms))
            .build()
            .map_err(|e| format!("tracing: cannot build the OTLP exporter: {e}"))?;
        let counts = Arc::new(SpanCounts::default());
        let exporter = Counted { inner: exporter, counts: Arc::clone(&counts) };
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(cfg.export_interval_ms))
            .with_max_queue_size(cfg.max_queue_spans)
            .with_max_export_batch_size(cfg.max_export_batch_spans)
            .build();
        // The processor's thread inherits the policy of the thread that spawns it.
        let processor = std::thread::scope(|s| {
            s.spawn(|| {
                ferrogate_core::background::idle_priority("tracing batch processor");
                BatchSpanProcessor::builder(exporter).with_batch_config(batch).build()
            })
            .join()
        })
        .map_err(|_| "tracing: cannot start the batch processor".to_owned())?;
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sampling_ratio)));
        let resource = Resource::builder().with_service_name(cfg.service_name.clone()).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("ferrogate");
        Ok(Self { provider, tracer, propagator: TraceContextPropagator::new(), counts, _export_thread: export_thread })
    }

    /// Spans ended and exported so far.
    pub fn counts(&self) -> &SpanCounts {
        &self.counts
    }

    /// Starts a request's root span, continuing the client's `traceparent` if it sent one.
    pub fn root(&self, headers: &HeaderMap, method: &str, path: &str, started: SystemTime) -> RequestTrace {
        let parent = self.propagator.extract(&HeaderExtractor(headers));
        let builder = self
            .tracer
            .span_builder(format!("{method} {path}"))
            .with_kind(SpanKind::Server)
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.path", path.to_owned()),
            ]);
        let span = self.tracer.build_with_context(builder, &parent);
        let cx = parent.with_span(span);
        let sampled = cx.span().span_context().is_sampled();
        RequestTrace { cx, sampled, tracer: self.tracer.clone(), counts: Arc::clone(&self.counts) }
    }

    /// Exports every finished span now (tests, shutdown). Blocks: call from a blocking thread.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "tracing: flush failed");
        }
    }

    /// Flushes and stops the exporter. Blocks: call from a blocking thread.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "tracing: shutdown failed");
        }
    }
}

/// One request's trace: the root span (ended when the request's context drops) and the tracer
/// for its children.
pub struct RequestTrace {
    cx: Context,
    pub sampled: bool,
    tracer: SdkTracer,
    counts: Arc<SpanCounts>,
}

impl RequestTrace {
    /// `traceparent` for an upstream call made under `span_cx` (or the root).
    pub fn traceparent(cx: &Context) -> String {
        let sc = cx.span().span_context().clone();
        format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())
    }

    pub fn trace_id(&self) -> String {
        self.cx.span().span_context().trace_id().to_string()
    }

    pub fn root_context(&self) -> &Context {
        &self.cx
    }

    pub fn set(&self, attrs: impl IntoIterator<Item = KeyValue>) {
        if self.sampled {
            self.cx.span().set_attributes(attrs);
        }
    }

    pub fn error(&self, code: &'static str) {
        if self.sampled {
            self.cx.span().set_attribute(KeyValue::new("error.type", code));
            self.cx.span().set_status(Status::error(code));
        }
    }

    /// A finished child of `parent` (the root when `None`) with explicit times.
    pub fn child(
        &self,
        parent: Option<&Context>,
        name: &'static str,
        start: SystemTime,
        end: SystemTime,
        attrs: Vec<KeyValue>,
    ) {
        if !self.sampled {
            return;
        }
        let cx = self.open(parent, name, start, attrs);
        cx.span().end_with_timestamp(end);
    }

    /// A child left open (a backend attempt): end it with `end_with_timestamp` on its context.
    pub fn open(
        &self,
        parent: Option<&Context>,
        name: &'static str,
        start: SystemTime,
        attrs: Vec<KeyValue>,
    ) -> Context {
        let parent = parent.unwrap_or(&self.cx);
        let kind = if name == "backend" { SpanKind::Client } else { SpanKind::Internal };
        let b = self.tracer.span_builder(name).with_kind(kind).with_start_time(start).with_attributes(attrs);
        let span = self.tracer.build_with_context(b, parent);
        if self.sampled {
            self.counts.ended.fetch_add(1, Ordering::Relaxed);
        }
        parent.with_span(span)
    }

    /// Ends the root span now.
    pub fn end(&self) {
        if self.sampled {
            self.counts.ended.fetch_add(1, Ordering::Relaxed);
        }
        self.cx.span().end_with_timestamp(SystemTime::now());
    }
}

/// Turns an `Instant` into wall time, given one pair taken at the same moment.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub fn now() -> Self {
        Self { instant: Instant::now(), wall: SystemTime::now() }
    }

    pub fn wall(&self, t: Instant) -> SystemTime {
        match t.checked_duration_since(self.instant) {
            Some(d) => self.wall + d,
            None => self.wall - self.instant.duration_since(t),
        }
    }
}

/// The exporter's runtime: one thread (`ferrogate-otlp`) at idle priority, running until the
/// returned sender drops.
fn export_runtime() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>), String> {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("ferrogate-otlp".into())
        .spawn(move || {
            ferrogate_core::background::idle_priority("tracing exporter");
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => {
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async move {
                        let _ = stop_rx.await;
                    });
                }
                Err(e) => {
                    let _ = handle_tx.send(Err(format!("tracing: cannot start the exporter's runtime: {e}")));
                }
            }
        })
        .map_err(|e| format!("tracing: cannot start the exporter's thread: {e}"))?;
    let handle = handle_rx.recv().map_err(|_| "tracing: the exporter's thread ended at start".to_owned())??;
    Ok((handle, stop_tx))
}

/// Counts the spans the collector accepted.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    counts: Arc<SpanCounts>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.counts.exported.fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// OTLP over our reqwest 0.12 client: the export future runs on the exporter's own runtime
/// ([`export_runtime`]), awaited by the batch processor's thread.
#[derive(Debug)]
struct OtlpHttp {
    client: reqwest::Client,
    rt: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for OtlpHttp {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.rt.spawn(async move {
            let (parts, body) = request.into_parts();
            let resp =
                client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body = resp.bytes().await?;
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, HttpError>(out)
        });
        let result = task.await.map_err(|e| Box::new(e) as HttpError)?;
        // The SDK's own diagnostics are compiled out (no `internal-logs`): a collector that is
        // down or refuses spans must still show in the log (at most once per export interval).
        match &result {
            Ok(r) if !r.status().is_success() => {
                tracing::warn!(status = r.status().as_u16(), "tracing: the OTLP collector refused spans");
            }
            Err(e) => tracing::warn!(error = %e, "tracing: cannot export spans to the OTLP collector"),
            Ok(_) => {}
        }
        result
    }
}

/// Shared handle to the tracer, when tracing is on.
pub type SharedTracing = Option<Arc<Tracing>>;
