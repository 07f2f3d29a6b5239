//! Default values shared by the HTTP adapters' configs (serde `default = …` functions).

pub(crate) fn connect_timeout_ms() -> u64 {
    2_000
}
pub(crate) fn first_token_timeout_ms() -> u64 {
    120_000
}
pub(crate) fn inter_token_timeout_ms() -> u64 {
    60_000
}
pub(crate) fn total_timeout_ms() -> u64 {
    600_000
}
pub(crate) fn health_timeout_ms() -> u64 {
    5_000
}
/// Enough for the gateway's concurrency on one upstream without reconnecting: a connection
/// beyond it is closed when its request ends, so a busier moment would open new connections on
/// every request (at 64, a 512-client load reconnected 7 times in 8). Idle ones close after 4 s.
pub(crate) fn pool_idle_per_host() -> usize {
    1024
}
/// HTTP/2 connections an `http2_prior_knowledge` backend spreads requests over: a few, so one
/// connection closing (the upstream restarting it, or the `h2` crate's flood guard when the
/// gateway falls behind on thousands of streams) takes a quarter of the streams, not all.
pub(crate) fn http2_connections() -> usize {
    4
}
