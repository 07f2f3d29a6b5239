//! The `ferrogate` binary's library half: the configuration file ([`config`]) and the
//! composition root ([`compose`]) that builds backends and stores from it and starts the server,
//! live reconfiguration ([`reload`]) and DNS-discovered backends ([`discovery`]).
//! The CLI (`main.rs`) and the test kit start gateways through it.

// The server's `StartError` and `ApiError` are large on their error paths only.
#![allow(clippy::result_large_err)]

pub mod compose;
pub mod compose_jobs;
pub mod config;
pub mod discovery;
pub mod reload;
pub mod routing_load;
pub mod start;

pub use start::{start, start_with, start_with_clock};
