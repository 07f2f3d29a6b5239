//! Incremental line splitter over a byte stream (NDJSON from Ollama), correct for any split of
//! the input: lines end at `\n` (a preceding `\r` is dropped); bytes are kept until a line is whole,
//! so multi-byte UTF-8 characters split across chunks are never broken.
//!
//! Invariants: linear in the input — every byte is looked at once, however the stream is cut
//! (only the unfinished line is buffered, never rescanned); a line longer than the limit
//! ([`MAX_FRAME_BYTES`] by default) is an error ([`FrameTooLarge`]) and nothing more is decoded,
//! so an upstream cannot make the gateway buffer without bound.

pub use crate::sse::{FrameTooLarge, MAX_FRAME_BYTES};

#[derive(Debug)]
pub struct LineDecoder {
    /// The unfinished line: bytes since the last `\n`.
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::with_limit(MAX_FRAME_BYTES)
    }
}

impl LineDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder refusing lines longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Self { buf: Vec::new(), limit, overflowed: false }
    }

    /// Feeds bytes; returns the complete, non-empty lines they finish, or [`FrameTooLarge`] once a
    /// line outgrew the limit (then and for every later call).
    pub fn try_push(&mut self, chunk: &[u8]) -> Result<Vec<String>, FrameTooLarge> {
        if self.overflowed {
            return Err(FrameTooLarge { limit: self.limit });
        }
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            self.append(&rest[..pos])?;
            let line = trim_cr(&self.buf);
            if !line.is_empty() {
                out.push(String::from_utf8_lossy(line).into_owned());
            }
            self.buf.clear();
            rest = &rest[pos + 1..];
        }
        self.append(rest)?;
        Ok(out)
    }

    /// [`LineDecoder::try_push`], with an over-long line ending the output silently: for callers
    /// (tests, trusted input) that do not need to tell.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.try_push(chunk).unwrap_or_default()
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), FrameTooLarge> {
        if self.buf.len() + bytes.len() > self.limit {
            self.overflowed = true;
            self.buf = Vec::new();
            return Err(FrameTooLarge { limit: self.limit });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The trailing line without a final newline, if any.
    pub fn finish(&mut self) -> Option<String> {
        let line = trim_cr(&self.buf).to_vec();
        self.buf.clear();
        (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_over_long_line_is_an_error_however_it_is_cut() {
        let mut whole = LineDecoder::with_limit(10);
        assert_eq!(whole.try_push(b"0123456789\nabc").unwrap(), ["0123456789"]);
        assert_eq!(whole.try_push(b"0123456789\n"), Err(FrameTooLarge { limit: 10 }));
        assert!(whole.try_push(b"x\n").is_err(), "nothing more is decoded");
        let mut trickled = LineDecoder::with_limit(10);
        let errors = (0..20).filter(|_| trickled.try_push(b"y").is_err()).count();
        assert_eq!(errors, 10, "the 11th byte of an unfinished line is refused");
    }

    /// A 256 KiB line trickled one byte at a time: each byte is looked at once. (The decoder used
    /// to rescan the whole buffered line on every push: ~3·10¹⁰ byte comparisons here.)
    #[test]
    fn a_trickled_line_costs_linear_time() {
        const N: usize = 256 * 1024;
        let mut d = LineDecoder::new();
        let start = std::time::Instant::now();
        for _ in 0..N {
            assert!(d.try_push(b"z").unwrap().is_empty());
        }
        assert_eq!(d.try_push(b"\n").unwrap()[0].len(), N);
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?}", start.elapsed());
    }

    proptest! {
        #[test]
        fn any_split_gives_same_lines(lines in proptest::collection::vec("[a-zé🦀 {}\":,]{1,20}", 1..8), cuts in proptest::collection::vec(0usize..200, 0..10)) {
            let text: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = LineDecoder::new();
            let mut got = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                got.extend(d.push(&bytes[prev..c]));
                prev = c;
            }
            got.extend(d.finish());
            prop_assert_eq!(got, lines);
        }
    }
}
