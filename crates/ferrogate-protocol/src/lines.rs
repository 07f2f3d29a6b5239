//! Incremental line splitter over a byte stream (NDJSON from Ollama), correct for any split of
//! the input: lines end at `\n` (a preceding `\r` is dropped); bytes are kept until a line is whole,
//! so multi-byte UTF-8 characters split across chunks are never broken.

#[derive(Debug, Default)]
pub struct LineDecoder {
    buf: Vec<u8>,
}

impl LineDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the complete, non-empty lines they finish.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let line = trim_cr(&self.buf[start..end]);
            if !line.is_empty() {
                out.push(String::from_utf8_lossy(line).into_owned());
            }
            start = end + 1;
        }
        self.buf.drain(..start);
        out
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
    use super::*;
    use proptest::prelude::*;

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
