//! Circuit breakers shared by a fleet of gateway replicas through Redis pub/sub (opt-in:
//! `[breaker] shared = true`).
//!
//! Each replica keeps its own breakers (core's [`Breaker`]); when one of them opens *because of
//! this replica's own failures* ([`Breaker::opened_here`] grew), the replica publishes
//! `<replica id> <backend>` on one channel. Every other replica subscribed to it force-opens its
//! breaker for that backend ([`Breaker::force_open`]): the fleet stops sending to a dead backend
//! within one publish (a few ms), then each replica probes it on its own after `open_for`.
//! Forced opens are not republished, so a message never echoes around the fleet.
//!
//! Best effort by design: a replica that misses a message (Redis down, reconnecting) still opens
//! its breaker on its own failures, as without sharing. Both loops reconnect with backoff.
//!
//! The breakers are a [`BreakerSet`] the composition root refreshes when a reload or a DNS
//! discovery builds backends, so a backend added later is shared like the ones of the start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ferrogate_core::breaker::Breaker;
use futures::StreamExt;
use redis::AsyncCommands;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::redis_limits::{KindName, connection};

/// How often this replica's breakers are looked at for opens to publish.
pub const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Counts of what the shared breakers did (exported as metrics by whoever holds them).
#[derive(Debug, Default)]
pub struct FleetCounts {
    /// Opens of ours published.
    pub published: AtomicU64,
    /// Breakers opened because another replica said so.
    pub forced: AtomicU64,
    /// Publish or subscribe failures.
    pub errors: AtomicU64,
}

/// Breakers by backend name.
type Breakers = HashMap<String, Arc<Breaker>>;

/// The breakers in force by backend name (the same names on every replica: one configuration).
#[derive(Clone, Default)]
pub struct BreakerSet(Arc<RwLock<Arc<Breakers>>>);

impl BreakerSet {
    /// A set of these breakers.
    pub fn new(breakers: HashMap<String, Arc<Breaker>>) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(breakers))))
    }

    /// These breakers from now on (a backend kept by a reload keeps its breaker object).
    pub fn replace(&self, breakers: HashMap<String, Arc<Breaker>>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(breakers);
    }

    fn current(&self) -> Arc<Breakers> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Starts publishing this replica's breaker opens and applying the others', on `url` and the
/// channel `<key_prefix>breakers`, until `stop`.
pub fn spawn(
    url: &str,
    key_prefix: &str,
    breakers: BreakerSet,
    stop: CancellationToken,
) -> Result<Arc<FleetCounts>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("not a valid Redis URL ({})", e.kind_name()))?;
    let conn = connection(url, Duration::from_millis(500))?;
    let channel = format!("{key_prefix}breakers");
    let me = uuid::Uuid::new_v4().simple().to_string();
    let counts = Arc::new(FleetCounts::default());
    tokio::spawn(publish(conn, channel.clone(), me.clone(), breakers.clone(), Arc::clone(&counts), stop.clone()));
    tokio::spawn(subscribe(client, channel, me, breakers, Arc::clone(&counts), stop));
    Ok(counts)
}

async fn publish(
    mut conn: redis::aio::ConnectionManager,
    channel: String,
    me: String,
    breakers: BreakerSet,
    counts: Arc<FleetCounts>,
    stop: CancellationToken,
) {
    // Per backend: its breaker object and its opens when last looked at. A new object — a
    // backend added, or rebuilt by a reload — starts from zero: it was built by this process,
    // so every open it counts is this replica's to tell (even one before the first look).
    let mut seen: HashMap<String, (Arc<Breaker>, u64)> =
        breakers.current().iter().map(|(k, b)| (k.clone(), (Arc::clone(b), b.opened_here()))).collect();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let current = breakers.current();
        seen.retain(|name, _| current.contains_key(name));
        for (name, b) in current.iter() {
            let now = b.opened_here();
            if !matches!(seen.get(name), Some((known, _)) if Arc::ptr_eq(known, b)) {
                seen.insert(name.clone(), (Arc::clone(b), 0));
            }
            let Some((_, last)) = seen.get_mut(name) else { continue };
            if now == *last {
                continue;
            }
            *last = now;
            let sent = tokio::time::timeout(
                Duration::from_millis(500),
                conn.publish::<_, _, i64>(&channel, format!("{me} {name}")),
            );
            match sent.await {
                Ok(Ok(_)) => {
                    counts.published.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(backend = %name, "breaker opened here: told the other replicas");
                }
                _ => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %name, "breaker open not shared: Redis unavailable");
                }
            }
        }
    }
}

async fn subscribe(
    client: redis::Client,
    channel: String,
    me: String,
    breakers: BreakerSet,
    counts: Arc<FleetCounts>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listened = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            backoff = Duration::from_millis(100); // subscribed: a later loss starts over
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Ok(text) = msg.get_payload::<String>() else { continue };
                let Some((from, backend)) = text.split_once(' ') else { continue };
                if from == me {
                    continue;
                }
                if let Some(b) = breakers.current().get(backend)
                    && b.force_open(Instant::now())
                {
                    counts.forced.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend, "breaker opened: another replica saw the backend fail");
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            () = stop.cancelled() => return,
            r = listened => {
                if let Err(e) = r {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = e.kind_name(), "shared breakers: subscription lost, reconnecting");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
