//! Local token estimates, used only when an upstream reports no usage. The estimate is ~4 bytes
//! per token for prompts (the usual rule of thumb for BPE vocabularies on English text) and one
//! token per streamed content delta for completions (engines stream one token per chunk).

use ferrogate_protocol::openai::ChatMessage;

/// Estimated tokens of `text`: ⌈bytes / 4⌉.
pub fn estimate(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// Estimated prompt tokens of a conversation, with a small per-message overhead for the
/// template's role markers.
pub fn estimate_messages(messages: &[ChatMessage]) -> u32 {
    messages.iter().map(|m| estimate(&m.text()).saturating_add(4)).fold(0, u32::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("abc"), 1);
        assert_eq!(estimate("abcde"), 2);
    }
}
