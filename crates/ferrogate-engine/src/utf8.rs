//! Incremental UTF-8 decoding of token bytes: every string it returns is complete UTF-8.
//!
//! A token can end in the middle of a multi-byte character (byte-level BPE splits emoji and CJK
//! across tokens). The decoder holds such a tail until the next token completes it; bytes that
//! can never become valid UTF-8 turn into U+FFFD instead of being passed on.

/// Holds at most one incomplete character (≤ 3 bytes) between calls.
#[derive(Debug, Default)]
pub(crate) struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Appends `bytes` and returns the text that is now complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(text) => {
                    out.push_str(text);
                    start = self.pending.len();
                }
                Err(err) => {
                    let valid = start + err.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[start..valid]));
                    match err.error_len() {
                        // An incomplete character at the end: keep it for the next token.
                        None => {
                            start = valid;
                            break;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = valid + bad;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_passes_through() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(b"hello"), "hello");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn split_multibyte_is_held_until_complete() {
        let crab = "🦀".as_bytes(); // 4 bytes
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(&crab[..1]), "");
        assert_eq!(d.push(&crab[1..3]), "");
        assert_eq!(d.push(&[crab[3], b'!']), "🦀!");
    }

    #[test]
    fn text_before_an_incomplete_tail_is_emitted() {
        let e = "é".as_bytes();
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(&[b'a', e[0]]), "a");
        assert_eq!(d.push(&e[1..]), "é");
    }

    #[test]
    fn invalid_bytes_become_replacement_chars() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
    }

    #[test]
    fn finish_flushes_an_incomplete_tail() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(&"日".as_bytes()[..2]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn every_split_of_mixed_text_round_trips() {
        let text = "a é 日本 🦀 z";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut d = Utf8Decoder::default();
            let mut out = d.push(&bytes[..cut]);
            out += &d.push(&bytes[cut..]);
            out += &d.finish();
            assert_eq!(out, text, "cut at {cut}");
        }
    }
}
