//! The context policy: which messages a turn sends when the history is longer than the model's
//! context. A pure function of the instructions, the history, the new input and a token counter.
//!
//! `auto` (ferrogate's default): drop the oldest whole turns of the history — a turn is a user
//! item and everything after it up to the next user item — until the prompt plus the output
//! budget fits; system and developer items of the history, the instructions and the new input are
//! never dropped. If even that does not fit: [`ContextLengthExceeded`].
//! `disabled`: nothing is dropped; a prompt that does not fit is [`ContextLengthExceeded`]
//! (400 `context_length_exceeded`, as OpenAI answers).

use ferrogate_protocol::openai::responses::convert::{chat_message, join_tool_calls};
use ferrogate_protocol::openai::responses::{ItemRole, ResponseItem, Truncation};
use ferrogate_protocol::openai::{ChatMessage, Role};

/// The prompt plus the output budget is larger than the model's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this turn needs {needed} tokens (prompt plus max output), more than the model's context of {limit}")]
pub struct ContextLengthExceeded {
    /// Prompt tokens plus the output budget.
    pub needed: u64,
    /// The model's context length.
    pub limit: u64,
}

/// What a turn is made of.
#[derive(Debug, Clone, Copy)]
pub struct ContextRequest<'a> {
    /// Placed first, as a system message; never dropped.
    pub instructions: Option<&'a str>,
    /// Earlier items, oldest first.
    pub history: &'a [ResponseItem],
    /// This turn's new items.
    pub input: &'a [ResponseItem],
    /// The model's context length, in tokens.
    pub context_length: u32,
    /// Tokens reserved for the answer (`max_output_tokens`, or the deployment's default).
    pub max_output_tokens: u32,
    /// `auto` drops oldest turns; `disabled` refuses.
    pub truncation: Truncation,
}

/// The messages to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Instructions, kept history and input, in order.
    pub messages: Vec<ChatMessage>,
    /// Their tokens, as the counter measured them (what usage and the ledger should count).
    pub prompt_tokens: u64,
    /// How many history items were left out.
    pub dropped_items: usize,
}

/// Applies the policy; `count` measures one message in tokens (template overhead included).
/// Each message is measured once, whatever the number of turns tried.
pub fn fit_context(
    req: &ContextRequest<'_>,
    count: impl Fn(&ChatMessage) -> u32,
) -> Result<Fitted, ContextLengthExceeded> {
    let measure = |m: &ChatMessage| u64::from(count(m));
    let system = req.instructions.map(|i| ChatMessage::new(Role::System, i));
    let history: Vec<ChatMessage> = req.history.iter().map(chat_message).collect();
    let input: Vec<ChatMessage> = req.input.iter().map(chat_message).collect();
    let history_tokens: Vec<u64> = history.iter().map(measure).collect();
    let fixed: u64 = system.iter().chain(&input).map(measure).sum();
    let (limit, budget) = (u64::from(req.context_length), u64::from(req.max_output_tokens));
    let starts = turn_starts(req.history);
    let candidates = if req.truncation == Truncation::Auto { starts.len() } else { 0 };
    let mut needed = 0;
    // Try dropping 0, 1, 2, … of the oldest turns; the first arrangement that fits wins.
    for drop in 0..=candidates {
        let keep = kept(req.history, &starts, drop);
        let prompt = fixed + history_tokens.iter().zip(&keep).filter(|(_, k)| **k).map(|(t, _)| t).sum::<u64>();
        needed = prompt + budget;
        if needed <= limit {
            let kept_history = history.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(m, _)| m);
            let messages: Vec<ChatMessage> =
                join_tool_calls(system.into_iter().chain(kept_history).chain(input).collect());
            let dropped_items = keep.iter().filter(|k| !**k).count();
            return Ok(Fitted { messages, prompt_tokens: prompt, dropped_items });
        }
    }
    Err(ContextLengthExceeded { needed, limit })
}

/// Where each turn of the history starts (the index of each user item; items before the first
/// user item belong to no turn and are kept).
fn turn_starts(history: &[ResponseItem]) -> Vec<usize> {
    history.iter().enumerate().filter(|(_, i)| i.role() == Some(ItemRole::User)).map(|(n, _)| n).collect()
}

/// Which history items stay when the `drop` oldest turns go; system and developer items always
/// stay, as do items before the first user item.
fn kept(history: &[ResponseItem], starts: &[usize], drop: usize) -> Vec<bool> {
    let cut_end = match drop {
        0 => 0,
        d if d >= starts.len() => history.len(),
        d => starts[d],
    };
    let first = starts.first().copied().unwrap_or(history.len());
    history
        .iter()
        .enumerate()
        .map(|(n, item)| {
            n < first || n >= cut_end || matches!(item.role(), Some(ItemRole::System | ItemRole::Developer))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::cell::Cell;

    use ferrogate_protocol::openai::responses::{MessageItem, Part};

    use super::*;

    fn item(role: ItemRole, text: &str) -> ResponseItem {
        MessageItem::new(format!("msg_{text}"), role, vec![Part::InputText { text: text.into() }]).into()
    }

    /// One token per character plus one per message: easy to reason about.
    fn count(m: &ChatMessage) -> u32 {
        m.text().len() as u32 + 1
    }

    fn history() -> Vec<ResponseItem> {
        vec![
            item(ItemRole::User, "aaaa"),      // 5
            item(ItemRole::Assistant, "bbbb"), // 5
            item(ItemRole::System, "ss"),      // 3, mid-history: kept
            item(ItemRole::User, "cccc"),      // 5
            item(ItemRole::Assistant, "dddd"), // 5
        ]
    }

    fn req<'a>(h: &'a [ResponseItem], input: &'a [ResponseItem], ctx: u32, t: Truncation) -> ContextRequest<'a> {
        ContextRequest {
            instructions: Some("ii"), // 3
            history: h,
            input,
            context_length: ctx,
            max_output_tokens: 10,
            truncation: t,
        }
    }

    fn texts(f: &Fitted) -> Vec<String> {
        f.messages.iter().map(ChatMessage::text).collect()
    }

    #[test]
    fn everything_fits_nothing_dropped() {
        let (h, input) = (history(), [item(ItemRole::User, "q")]);
        // 3 + 23 + 2 = 28 prompt, + 10 output.
        let f = fit_context(&req(&h, &input, 38, Truncation::Auto), count).unwrap();
        assert_eq!((f.prompt_tokens, f.dropped_items), (28, 0));
        assert_eq!(f.messages[0].role, Role::System, "instructions first");
    }

    #[test]
    fn auto_drops_the_oldest_whole_turn_and_keeps_system_items() {
        let (h, input) = (history(), [item(ItemRole::User, "q")]);
        let f = fit_context(&req(&h, &input, 37, Truncation::Auto), count).unwrap();
        assert_eq!(texts(&f), ["ii", "ss", "cccc", "dddd", "q"]);
        assert_eq!((f.prompt_tokens, f.dropped_items), (18, 2));
        let f = fit_context(&req(&h, &input, 27, Truncation::Auto), count).unwrap();
        assert_eq!(texts(&f), ["ii", "ss", "q"], "both turns gone, the system item stays");
    }

    #[test]
    fn auto_refuses_when_even_the_bare_turn_does_not_fit() {
        let (h, input) = (history(), [item(ItemRole::User, "q")]);
        let err = fit_context(&req(&h, &input, 17, Truncation::Auto), count).unwrap_err();
        assert_eq!(err, ContextLengthExceeded { needed: 18, limit: 17 });
    }

    #[test]
    fn disabled_never_drops() {
        let (h, input) = (history(), [item(ItemRole::User, "q")]);
        let err = fit_context(&req(&h, &input, 37, Truncation::Disabled), count).unwrap_err();
        assert_eq!(err, ContextLengthExceeded { needed: 38, limit: 37 });
        assert!(fit_context(&req(&h, &input, 38, Truncation::Disabled), count).is_ok());
    }

    #[test]
    fn each_message_is_measured_once() {
        let (h, input) = (history(), [item(ItemRole::User, "q")]);
        let calls = Cell::new(0);
        let counting = |m: &ChatMessage| {
            calls.set(calls.get() + 1);
            count(m)
        };
        fit_context(&req(&h, &input, 27, Truncation::Auto), counting).unwrap();
        assert_eq!(calls.get(), 7, "instructions, five history items, one input");
    }

    #[test]
    fn items_before_the_first_user_item_are_kept() {
        let h = vec![item(ItemRole::Assistant, "greeting"), item(ItemRole::User, "u"), item(ItemRole::Assistant, "a")];
        let input = [item(ItemRole::User, "q")];
        // greeting 9, u 2, a 2, q 2, ii 3 = 18; drop the one turn → 14.
        let f = fit_context(&req(&h, &input, 24, Truncation::Auto), count).unwrap();
        assert_eq!(texts(&f), ["ii", "greeting", "q"]);
    }
}
