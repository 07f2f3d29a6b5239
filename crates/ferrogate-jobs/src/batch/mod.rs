//! Batches on the durable queue: each input line a `batch_item` job, driven to OpenAI's output
//! and error files by [`BatchDriver`]. The server runs the lines (a [`crate::Runner`] answering
//! [`ItemResponse`]s) and calls the driver from its endpoints and a ticker.
//!
//! Floors: [`item`] (payloads and file lines, pure) → [`driver`].

pub mod driver;
pub mod item;

pub use driver::{BatchConfig, BatchDriver};
pub use item::{BatchItemJob, FileLine, ItemResponse, file_line};
