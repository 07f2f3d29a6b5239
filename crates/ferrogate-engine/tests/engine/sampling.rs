//! Sampling: greedy determinism, seeded reproducibility (also beside other requests), exact
//! max_tokens and stop strings that are never emitted, even across token boundaries.

use ferrogate_engine::{EngineConfig, FinishReason, GenerateRequest, SamplingParams};

use crate::common::{collect, greedy, run, smollm2, start, user};

const QUESTION: &str = "Tell me about the history of Paris in a few sentences.";

#[tokio::test]
async fn greedy_output_is_deterministic() {
    let engine = start(EngineConfig { prompt_cache: false, ..smollm2() }).await;
    let a = run(&engine, greedy(vec![user(QUESTION)], 24)).await;
    let b = run(&engine, greedy(vec![user(QUESTION)], 24)).await;
    assert!(!a.text.is_empty());
    assert_eq!(a.text, b.text);
    assert_eq!(a.finish.completion_tokens, b.finish.completion_tokens);
    assert_eq!(a.cached_tokens, 0);
}

fn seeded(seed: u64, question: &str) -> GenerateRequest {
    GenerateRequest {
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 0.95,
            top_k: 40,
            seed: Some(seed),
            ..SamplingParams::default()
        },
        max_tokens: Some(24),
        ..GenerateRequest::chat(vec![user(question)])
    }
}

#[tokio::test]
async fn seeded_sampling_is_reproducible_alone_and_in_a_batch() {
    let engine = start(EngineConfig { prompt_cache: false, ..smollm2() }).await;
    let alone = run(&engine, seeded(7, QUESTION)).await;
    assert_eq!(alone.text, run(&engine, seeded(7, QUESTION)).await.text);

    // The same seed while other sampled requests share its batches. Each sequence has its own
    // KV stream (kv_unified off, the default), so its numbers do not depend on its batch mates.
    for mates in [1, 3] {
        let target = engine.submit(seeded(7, QUESTION)).unwrap();
        let others: Vec<_> = ["Name a fruit.", "What is rain?", "Count to five."]
            .iter()
            .take(mates)
            .enumerate()
            .map(|(i, q)| engine.submit(seeded(100 + i as u64, q)).unwrap())
            .collect();
        assert_eq!(collect(target).await.text, alone.text, "with {mates} batch mates");
        for other in others {
            collect(other).await;
        }
    }

    // Different seeds explore different text.
    let mut texts = vec![alone.text];
    for seed in [8, 9, 10] {
        texts.push(run(&engine, seeded(seed, QUESTION)).await.text);
    }
    texts.dedup();
    assert!(texts.len() > 1, "four seeds gave one text");
}

#[tokio::test]
async fn max_tokens_and_stop_strings_are_exact() {
    let engine = start(EngineConfig { prompt_cache: false, ..smollm2() }).await;
    let full = run(&engine, greedy(vec![user(QUESTION)], 24)).await;
    assert_eq!(full.finish.reason, FinishReason::Length);
    assert_eq!(full.finish.completion_tokens, 24);
    assert!(full.chunks.len() >= 8, "expected token-by-token chunks: {:?}", full.chunks);

    // A stop string straddling two streamed chunks: the end of chunk 4 + the start of chunk 5.
    let left: String = full.chunks[4].chars().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect();
    let right: String = full.chunks[5].chars().take(2).collect();
    let stop = format!("{left}{right}");
    let expected = &full.text[..full.text.find(&stop).unwrap()];

    let mut req = greedy(vec![user(QUESTION)], 24);
    req.stop = vec![stop.clone(), "never-appears-zq".into()];
    let cut = run(&engine, req).await;
    assert_eq!(cut.finish.reason, FinishReason::Stop, "stop {stop:?}");
    assert_eq!(cut.text, expected);
    assert!(!cut.text.contains(&stop));
    assert!(cut.finish.completion_tokens < 24);
    assert_eq!(cut.finish.prompt_tokens, full.finish.prompt_tokens);
}
