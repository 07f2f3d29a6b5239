//! Stop-sequence matching on streamed text: a stop string is never emitted, even when it
//! arrives split across several tokens.
//!
//! Text that could still be the beginning of a stop string is held back until the next token
//! decides; everything before it is released at once, so streaming stays token by token.

/// What the caller may send after pushing a piece of text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StopOutcome {
    /// Generation goes on; this text is safe to emit (may be empty while text is held).
    Continue(String),
    /// A stop string matched: emit this text (what preceded the stop), then finish.
    Stopped(String),
}

#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    /// Non-empty stop strings from the request.
    stops: Vec<String>,
    /// Text received but not yet released: a possible prefix of a stop string.
    held: String,
}

impl StopMatcher {
    pub(crate) fn new(stops: &[String]) -> Self {
        let stops = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        Self { stops, held: String::new() }
    }

    pub(crate) fn push(&mut self, text: &str) -> StopOutcome {
        if self.stops.is_empty() {
            return StopOutcome::Continue(text.to_owned());
        }
        self.held.push_str(text);
        if let Some(at) = self.earliest_match() {
            self.held.truncate(at);
            return StopOutcome::Stopped(std::mem::take(&mut self.held));
        }
        let keep = self.longest_partial_suffix();
        let tail = self.held.split_off(self.held.len() - keep);
        StopOutcome::Continue(std::mem::replace(&mut self.held, tail))
    }

    /// The generation ended for another reason: whatever is held is plain text after all.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    fn earliest_match(&self) -> Option<usize> {
        self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min()
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop string.
    /// Only prefixes ending on a char boundary count, so the split point is one in `held` too.
    fn longest_partial_suffix(&self) -> usize {
        self.stops
            .iter()
            .flat_map(|stop| {
                (1..stop.len()).rev().filter(|&k| stop.is_char_boundary(k)).find(|&k| self.held.ends_with(&stop[..k]))
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn cont(s: &str) -> StopOutcome {
        StopOutcome::Continue(s.to_owned())
    }

    #[test]
    fn no_stops_passes_everything() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("abc"), cont("abc"));
    }

    #[test]
    fn stop_inside_one_piece_cuts_before_it() {
        let mut m = matcher(&["END"]);
        assert_eq!(m.push("hello END world"), StopOutcome::Stopped("hello ".into()));
    }

    #[test]
    fn stop_split_across_pieces_is_never_emitted() {
        let mut m = matcher(&["</s>"]);
        assert_eq!(m.push("done <"), cont("done "));
        assert_eq!(m.push("/"), cont(""));
        assert_eq!(m.push("s>tail"), StopOutcome::Stopped("".into()));
    }

    #[test]
    fn a_false_start_is_released() {
        let mut m = matcher(&["STOP"]);
        assert_eq!(m.push("ST"), cont(""));
        assert_eq!(m.push("AR"), cont("STAR"));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut m = matcher(&["b", "a"]);
        assert_eq!(m.push("xxaxb"), StopOutcome::Stopped("xx".into()));
    }

    #[test]
    fn finish_releases_held_text() {
        let mut m = matcher(&["\n\n"]);
        assert_eq!(m.push("line\n"), cont("line"));
        assert_eq!(m.finish(), "\n");
    }

    #[test]
    fn multibyte_stop_prefixes_split_on_char_boundaries() {
        let mut m = matcher(&["日本"]);
        assert_eq!(m.push("a日"), cont("a"));
        assert_eq!(m.push("x"), cont("日x"));
        assert_eq!(m.push("日本"), StopOutcome::Stopped("".into()));
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        let mut m = matcher(&[""]);
        assert_eq!(m.push("abc"), cont("abc"));
    }
}
