//! Server-sent events: an incremental decoder that follows the WHATWG event-stream rules and is
//! correct for any split of the byte stream (mid-line, mid-UTF-8, `\r\n` split across chunks),
//! and the small encoder ferrogate writes with.
//!
//! Invariant: one event (its unfinished line plus the data lines gathered so far) is at most the
//! decoder's limit ([`MAX_FRAME_BYTES`] by default); a longer one is an error ([`FrameTooLarge`])
//! and nothing more is decoded, so an upstream cannot make the gateway buffer without bound.

use bytes::Bytes;

/// The default bound of one SSE event or NDJSON line from an upstream: far above any real
/// chunk (a few hundred bytes; a whole non-streamed answer rarely reaches 1 MiB).
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The UTF-8 byte order mark a stream may open with (skipped).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An upstream event or line outgrew the decoder's limit: a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge {
    pub limit: usize,
}

impl std::fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an upstream event is larger than {} bytes", self.limit)
    }
}

impl std::error::Error for FrameTooLarge {}

/// One dispatched event. `data` has the `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    /// The OpenAI stream terminator `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }
}

#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a leading `\n` of the next chunk belongs to it.
    pending_cr: bool,
    /// Fields of the event being built.
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    /// The stream's first bytes may be a UTF-8 BOM, which is skipped.
    started: bool,
    /// Largest event, in bytes (see [`MAX_FRAME_BYTES`]).
    limit: usize,
    /// An event outgrew `limit`: every later push is refused.
    overflowed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_limit(MAX_FRAME_BYTES)
    }
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder refusing events larger than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            line: Vec::new(),
            pending_cr: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            id: None,
            started: false,
            limit,
            overflowed: false,
        }
    }

    /// Feeds bytes; returns the events they complete, in order, or [`FrameTooLarge`] once an
    /// event outgrew the limit (then and for every later call). The events completed before the
    /// over-long one are lost with it: the stream is broken either way.
    pub fn try_push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, FrameTooLarge> {
        let mut out = Vec::new();
        self.try_push_with(chunk, |ev| out.push(ev))?;
        Ok(out)
    }

    /// [`SseDecoder::try_push`], handing each event to `each` as it completes: no list per
    /// chunk, and nothing kept between chunks. On an error, the events of this chunk before the
    /// over-long one have been handed over; none after it.
    pub fn try_push_with(&mut self, chunk: &[u8], mut each: impl FnMut(SseEvent)) -> Result<(), FrameTooLarge> {
        if self.overflowed {
            return Err(FrameTooLarge { limit: self.limit });
        }
        self.push_unchecked(chunk, &mut each);
        if self.overflowed || self.line.len() + self.data.len() > self.limit {
            self.overflowed = true;
            (self.line, self.data) = (Vec::new(), Vec::new());
            return Err(FrameTooLarge { limit: self.limit });
        }
        Ok(())
    }

    /// [`SseDecoder::try_push`], with an over-long event ending the output silently: for callers
    /// (tests, trusted input) that do not need to tell.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.try_push(chunk).unwrap_or_default()
    }

    fn push_unchecked(&mut self, mut chunk: &[u8], out: &mut impl FnMut(SseEvent)) {
        if chunk.is_empty() {
            return;
        }
        if !self.started {
            // The stream may open with a BOM, perhaps cut across chunks: `line` holds the part of
            // it seen so far. Bytes that turn out not to be one stay as the first line's start.
            let want = &BOM[self.line.len()..];
            let n = want.len().min(chunk.len());
            if chunk[..n] == want[..n] {
                if n < want.len() {
                    self.line.extend_from_slice(chunk);
                    return;
                }
                self.line.clear();
                chunk = &chunk[n..];
            }
            self.started = true;
        }
        if self.pending_cr && !chunk.is_empty() {
            self.pending_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        self.scan(chunk, out);
    }

    /// Splits `chunk` into lines at `\n`, `\r\n` or `\r`. A line whole in `chunk` is read where
    /// it lies; only an unfinished one is copied into `line`, to be completed by the next chunk.
    fn scan(&mut self, mut chunk: &[u8], out: &mut impl FnMut(SseEvent)) {
        while let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) {
            if self.overflowed {
                return; // an over-long data line: no later event of this chunk is handed over
            }
            if self.line.is_empty() {
                self.read_line(&chunk[..end], out);
            } else {
                self.line.extend_from_slice(&chunk[..end]);
                self.end_line(out);
            }
            let mut next = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            chunk = &chunk[next..];
        }
        self.line.extend_from_slice(chunk);
    }

    /// End of input: an event without its closing blank line is discarded, as the spec says.
    pub fn finish(&mut self) -> Option<SseEvent> {
        None
    }

    /// Reads the finished line; its buffer is kept (cleared) for the next one, so a stream's
    /// lines cost no allocation once the longest has been seen.
    fn end_line(&mut self, out: &mut impl FnMut(SseEvent)) {
        let line = std::mem::take(&mut self.line);
        self.read_line(&line, out);
        self.line = line;
        self.line.clear();
    }

    fn read_line(&mut self, line: &[u8], out: &mut impl FnMut(SseEvent)) {
        if line.is_empty() {
            if let Some(ev) = self.dispatch() {
                out(ev);
            }
            return;
        }
        if line[0] == b':' {
            return; // comment (keep-alive)
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" if self.data.len() + value.len() > self.limit => self.overflowed = true,
            b"data" => {
                self.data.reserve(value.len() + 1);
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => self.id = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // retry and unknown fields are ignored
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the trailing '\n'
        // Valid UTF-8 (the normal case) becomes the event's text without a copy.
        let data = String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Some(SseEvent { event, data, id: self.id.clone() })
    }
}

/// `data: <json>\n\n`
pub fn data_frame(payload: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.extend_from_slice(b"data: ");
    v.extend_from_slice(payload);
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";
pub const KEEPALIVE_FRAME: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_over_long_event_is_an_error_however_it_is_cut() {
        let mut d = SseDecoder::with_limit(16);
        assert_eq!(d.try_push(b"data: 0123456789\n\n").unwrap()[0].data, "0123456789");
        // Many short data lines of one event add up.
        assert!(d.try_push(b"data: 01234567\n").is_ok());
        assert_eq!(d.try_push(b"data: 01234567\n"), Err(FrameTooLarge { limit: 16 }));
        assert!(d.try_push(b"\n").is_err(), "nothing more is decoded");
        // One line trickled without an end.
        let mut trickled = SseDecoder::with_limit(16);
        let errors = (0..40).filter(|_| trickled.try_push(b"d").is_err()).count();
        assert_eq!(errors, 40 - 16);
        // Comments and blank lines do not count.
        let mut keepalive = SseDecoder::with_limit(16);
        for _ in 0..100 {
            assert!(keepalive.try_push(b": keep-alive\n\n").unwrap().is_empty());
        }
    }

    fn decode_all(parts: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for p in parts {
            out.extend(d.push(p));
        }
        out
    }

    #[test]
    fn basic_events_comments_and_multiline_data() {
        let evs =
            decode_all(&[b": ping\n\ndata: {\"a\":1}\n\nevent: x\ndata: l1\ndata: l2\nid: 7\n\ndata: [DONE]\n\n"]);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].event.as_deref(), Some("x"));
        assert_eq!(evs[1].data, "l1\nl2");
        assert_eq!(evs[1].id.as_deref(), Some("7"));
        assert!(evs[2].is_done());
    }

    #[test]
    fn crlf_split_between_chunks_and_bom() {
        let evs = decode_all(&[b"\xEF\xBB", b"\xBFdata: a\r", b"\n\r", b"\ndata: b\r\r"]);
        assert_eq!(evs.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn a_bom_cut_anywhere_is_skipped_and_bytes_like_one_are_kept() {
        let whole = b"\xEF\xBB\xBFdata: a\n\n";
        for cut in 0..=whole.len() {
            let evs = decode_all(&[&whole[..cut], &whole[cut..]]);
            assert_eq!(evs.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), vec!["a"], "cut at {cut}");
        }
        // Not a BOM after all: the held bytes are the first line's (a field name).
        let evs = decode_all(&[b"\xEF", b"\xBBx\ndata: b\n\n"]);
        assert_eq!(evs.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), vec!["b"]);
        let evs = decode_all(&[b"\xEF\xBB", b"data: c\n\n", b"data: d\n\n"]);
        assert_eq!(evs.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), vec!["d"], "one line");
    }

    #[test]
    fn push_with_hands_over_events_up_to_an_over_long_one() {
        let mut d = SseDecoder::with_limit(8);
        let mut got = Vec::new();
        d.try_push_with(b"data: a\n\ndata: b\n", |e| got.push(e.data)).unwrap();
        d.try_push_with(b"\n", |e| got.push(e.data)).unwrap();
        assert_eq!(got, ["a", "b"]);
        let err = d.try_push_with(b"data: c\n\ndata: 0123456789\n\ndata: d\n\n", |e| got.push(e.data));
        assert_eq!(err, Err(FrameTooLarge { limit: 8 }));
        assert_eq!(got, ["a", "b", "c"], "nothing after the over-long event");
        assert!(d.try_push_with(b"data: e\n\n", |e| got.push(e.data)).is_err());
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn empty_chunk_between_cr_and_lf() {
        let evs = decode_all(&[b"data: a\r", b"", b"\ndata: b\r\n\r\n"]);
        assert_eq!(evs.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), vec!["a\nb"]);
    }

    #[test]
    fn no_space_after_colon_and_event_without_data() {
        let evs = decode_all(&[b"event: e\n\ndata:x\n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "x");
        assert_eq!(evs[0].event, None);
    }

    fn encode(events: &[String], eol: &str) -> Vec<u8> {
        let mut s = String::new();
        for e in events {
            for line in e.split('\n') {
                s.push_str("data: ");
                s.push_str(line);
                s.push_str(eol);
            }
            s.push_str(": comment");
            s.push_str(eol);
            s.push_str(eol);
        }
        s.into_bytes()
    }

    proptest! {
        #[test]
        fn any_split_any_line_ending(
            events in proptest::collection::vec("[a-zA-Z0-9 {}\":,\\[\\]é日本🦀\n]{0,40}", 1..6),
            eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            cuts in proptest::collection::vec(0usize..400, 0..12),
            bom in any::<bool>(),
        ) {
            let mut bytes = if bom { BOM.to_vec() } else { Vec::new() };
            bytes.extend(encode(&events, eol));
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = SseDecoder::new();
            let mut got = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                got.extend(d.push(&bytes[prev..c]).into_iter().map(|e| e.data));
                prev = c;
            }
            prop_assert_eq!(got, events);
        }
    }
}
