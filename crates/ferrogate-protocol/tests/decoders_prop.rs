//! Property tests of the byte-stream decoders (issue 17 item 11): on *any* bytes — not only
//! well-formed streams — the SSE decoder and the NDJSON line splitter never panic, and give the
//! same frames however the input is cut into chunks.

#![allow(clippy::unwrap_used)]

mod strategies;

use ferrogate_protocol::lines::LineDecoder;
use ferrogate_protocol::sse::{SseDecoder, SseEvent};
use proptest::prelude::*;

/// Bytes biased towards what matters to the decoders: line ends, field names, colons, a BOM,
/// multi-byte UTF-8 and invalid UTF-8.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: x".to_vec()),
        Just(b"id: 7".to_vec()),
        Just(b": c".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just("é🦀".as_bytes().to_vec()),
        Just(b"\xF0\x9F".to_vec()),
        Just(b"\x00".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
        "[a-z{}\":, ]{0,8}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Cut `bytes` at the given points (taken modulo the length, sorted).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain([bytes.len()]) {
        out.push(bytes[prev..c].to_vec());
        prev = c;
    }
    out
}

fn sse_decode(parts: &[Vec<u8>]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut out: Vec<SseEvent> = parts.iter().flat_map(|p| d.push(p)).collect();
    out.extend(d.finish());
    out
}

fn lines_decode(parts: &[Vec<u8>]) -> Vec<String> {
    let mut d = LineDecoder::new();
    let mut out: Vec<String> = parts.iter().flat_map(|p| d.push(p)).collect();
    out.extend(d.finish());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(strategies::cases(512)))]

    #[test]
    fn sse_any_bytes_any_cut_same_events(bytes in stream_bytes(), cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
        let whole = sse_decode(std::slice::from_ref(&bytes));
        prop_assert_eq!(sse_decode(&chunks(&bytes, &cuts)), whole.clone());
        // One byte at a time: the worst split.
        let single: Vec<Vec<u8>> = bytes.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(sse_decode(&single), whole);
    }

    #[test]
    fn lines_any_bytes_any_cut_same_lines(bytes in stream_bytes(), cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
        let whole = lines_decode(std::slice::from_ref(&bytes));
        prop_assert_eq!(lines_decode(&chunks(&bytes, &cuts)), whole.clone());
        let single: Vec<Vec<u8>> = bytes.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(lines_decode(&single), whole.clone());
        // No line holds a line end; joining the lines back gives the non-empty lines of the input.
        prop_assert!(whole.iter().all(|l| !l.contains('\n') && !l.is_empty()));
    }

    /// A bounded decoder refuses the same input whatever the cut: the events it gave before
    /// refusing are a prefix of the unbounded decoder's.
    #[test]
    fn bounded_sse_is_a_prefix_of_unbounded(bytes in stream_bytes(), cuts in proptest::collection::vec(any::<usize>(), 0..8), limit in 1usize..64) {
        let mut d = SseDecoder::with_limit(limit);
        let mut got = Vec::new();
        for part in chunks(&bytes, &cuts) {
            match d.try_push(&part) {
                Ok(events) => got.extend(events),
                Err(_) => break,
            }
        }
        let all = sse_decode(std::slice::from_ref(&bytes));
        prop_assert!(got.len() <= all.len());
        prop_assert_eq!(&all[..got.len()], &got[..]);
    }
}
