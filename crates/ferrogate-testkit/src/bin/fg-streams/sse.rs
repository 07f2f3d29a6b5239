//! Counting one SSE stream as its bytes arrive: events are split on the blank line (`\n\n`), and
//! only `data:` events are frames — a `: keep-alive` comment does not hide a stall.
//!
//! A content frame is a data event whose JSON has a non-empty `"content":"…"` (a substring test,
//! not a parse: the client reads 100k frames/s on a shared core). Role-only, finish and usage
//! chunks are frames for the gap but not content; `[DONE]` ends the stream; an `event: error`
//! or a `{"error"…}` payload marks it failed.

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct SseTally {
    /// Bytes of an event not yet terminated by a blank line.
    pending: Vec<u8>,
    /// When the previous data event arrived (the gap clock).
    last: Option<Instant>,
    pub max_gap: Duration,
    pub content_frames: u64,
    pub done: bool,
    pub error: bool,
}

impl SseTally {
    /// Feeds the bytes of one read, all of which arrived at `now`.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = find(&self.pending[start..], b"\n\n") {
            let event = start..start + end;
            start += end + 2;
            self.event(event, now);
        }
        self.pending.drain(..start);
    }

    fn event(&mut self, range: std::ops::Range<usize>, now: Instant) {
        let mut is_data = false;
        let mut error = false;
        let mut done = false;
        let mut content = false;
        for line in self.pending[range].split(|&b| b == b'\n') {
            if let Some(data) = line.strip_prefix(b"data:") {
                let data = data.trim_ascii();
                is_data = true;
                done |= data == b"[DONE]";
                error |= data.starts_with(br#"{"error""#);
                content |= has_content(data);
            } else if line.trim_ascii() == b"event: error" {
                error = true;
            }
        }
        if is_data {
            self.tick(now);
        }
        self.done |= done;
        self.error |= error;
        self.content_frames += u64::from(content);
    }

    fn tick(&mut self, now: Instant) {
        if let Some(last) = self.last {
            self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
        }
        self.last = Some(now);
    }
}

/// Whether a chunk carries text: `"content":` then a string that is not empty.
fn has_content(json: &[u8]) -> bool {
    let key = br#""content":"#;
    let mut rest = json;
    while let Some(at) = find(rest, key) {
        rest = &rest[at + key.len()..];
        let value = rest.trim_ascii_start();
        if value.len() >= 2 && value[0] == b'"' && value[1] != b'"' {
            return true;
        }
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"tok \"}}]}\n\n";

    #[test]
    fn counts_content_frames_split_anywhere() {
        let stream =
            [CHUNK, CHUNK, b"data: {\"choices\":[{\"delta\":{\"content\":\"\"}}]}\n\n", b"data: [DONE]\n\n"].concat();
        for cut in 0..stream.len() {
            let mut t = SseTally::default();
            let now = Instant::now();
            t.feed(&stream[..cut], now);
            t.feed(&stream[cut..], now);
            assert_eq!((t.content_frames, t.done, t.error), (2, true, false), "cut at {cut}");
        }
    }

    #[test]
    fn gap_is_between_data_events_only() {
        let mut t = SseTally::default();
        let t0 = Instant::now();
        t.feed(CHUNK, t0);
        t.feed(b": keep-alive\n\n", t0 + Duration::from_millis(400));
        t.feed(CHUNK, t0 + Duration::from_millis(900));
        t.feed(CHUNK, t0 + Duration::from_millis(1000));
        assert_eq!(t.max_gap, Duration::from_millis(900));
    }

    #[test]
    fn error_events_mark_the_stream() {
        let mut t = SseTally::default();
        t.feed(b"event: error\ndata: {\"error\":{\"message\":\"x\"}}\n\n", Instant::now());
        assert!(t.error && !t.done && t.content_frames == 0);
    }
}
