//! Continuous batching: many concurrent sequences without cross-talk, and cancellation that
//! frees the slot (and its KV) so a queued request starts.

use ferrogate_engine::{EngineConfig, GenEvent};
use serde_json::{Value, json};

use crate::common::{GUARD, collect, greedy, smollm2, start, user};

const WORDS: [&str; 32] = [
    "apple", "tiger", "violin", "candle", "helmet", "zebra", "walnut", "rocket", "pillow", "anchor", "bottle",
    "castle", "dragon", "feather", "glacier", "hammer", "pencil", "jacket", "kettle", "ladder", "magnet", "basket",
    "oyster", "parrot", "quilt", "saddle", "teapot", "tunnel", "vessel", "wizard", "yacht", "button",
];

/// Two worked examples, then the word: SmolLM2-135M answers with the word itself. The shared
/// examples also give the prefix cache something to reuse across the 32 prompts.
fn repeat_prompt(word: &str) -> Vec<Value> {
    vec![
        user("Repeat the word: cat"),
        json!({"role": "assistant", "content": "cat"}),
        user("Repeat the word: river"),
        json!({"role": "assistant", "content": "river"}),
        user(&format!("Repeat the word: {word}")),
    ]
}

#[tokio::test]
async fn thirty_two_concurrent_requests_each_get_their_own_answer() {
    let engine = start(EngineConfig { parallel: Some(8), ..smollm2() }).await;
    let generations: Vec<_> = WORDS.iter().map(|w| engine.submit(greedy(repeat_prompt(w), 6)).unwrap()).collect();
    let mut answers = Vec::new();
    for g in generations {
        answers.push(collect(g).await.text.to_lowercase());
    }
    let mut problems = Vec::new();
    for (word, answer) in WORDS.iter().zip(&answers) {
        if !answer.contains(word) {
            problems.push(format!("{word:?} not in its answer {answer:?}"));
        }
        for other in WORDS.iter().filter(|o| *o != word && answer.contains(*o)) {
            problems.push(format!("{word:?}'s answer {answer:?} mentions {other:?}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    let stats = engine.stats();
    assert_eq!(stats.slots_busy, 0);
    assert_eq!(stats.queue_depth, 0);
    assert!(stats.requests_total >= 32);
}

#[tokio::test]
async fn cancelling_frees_the_slot_for_a_queued_request() {
    let engine = start(EngineConfig { parallel: Some(1), ..smollm2() }).await;
    let prompt = vec![user("Write a very long essay about the ocean.")];
    let mut first = engine.submit(greedy(prompt.clone(), 400)).unwrap();
    // Wait until it is generating.
    loop {
        match tokio::time::timeout(GUARD, first.next()).await.unwrap() {
            Some(GenEvent::Text(_)) => break,
            Some(GenEvent::Started { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let second = engine.submit(greedy(prompt, 4)).unwrap();
    assert_eq!(engine.stats().slots_busy, 1);
    drop(first);
    let out = collect(second).await;
    assert_eq!(out.finish.completion_tokens, 4);
    // The cancelled sequence's KV was dropped, not kept for reuse.
    assert_eq!(out.cached_tokens, 0);
}
