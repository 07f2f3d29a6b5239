//! Prompt (prefix) cache: a repeated or extended conversation reuses the KV of the slot that
//! holds its prefix, reports cached tokens, and generates exactly what a cold run does.

use ferrogate_engine::EngineConfig;
use serde_json::json;

use crate::common::{greedy, run, smollm2, start, user};

#[tokio::test]
async fn prefix_reuse_gives_the_same_text_and_reports_cached_tokens() {
    let engine = start(EngineConfig { parallel: Some(2), ..smollm2() }).await;
    let system = json!({"role": "system", "content": "You are a geography teacher. Answer in one sentence."});
    let turn1 = vec![system.clone(), user("What is the capital of France?")];

    let cold = run(&engine, greedy(turn1.clone(), 16)).await;
    assert_eq!(cold.cached_tokens, 0);

    let warm = run(&engine, greedy(turn1.clone(), 16)).await;
    assert_eq!(warm.text, cold.text);
    assert_eq!(warm.cached_tokens, warm.prompt_tokens - 1);
    assert_eq!(warm.finish.cached_tokens, warm.cached_tokens);

    // The next turn of the conversation starts with the whole first exchange.
    let mut turn2 = turn1;
    turn2.push(json!({"role": "assistant", "content": cold.text}));
    turn2.push(user("And of Italy?"));
    let next = run(&engine, greedy(turn2.clone(), 16)).await;
    assert!(next.cached_tokens > cold.prompt_tokens / 2, "cached {} of {}", next.cached_tokens, next.prompt_tokens);

    // A cold engine without the cache generates the same continuation.
    let no_cache = start(EngineConfig { prompt_cache: false, ..smollm2() }).await;
    let reference = run(&no_cache, greedy(turn2, 16)).await;
    assert_eq!(reference.cached_tokens, 0);
    assert_eq!(next.text, reference.text);
    assert!(engine.stats().cached_tokens_total >= u64::from(warm.cached_tokens));
}
