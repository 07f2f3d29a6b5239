//! Lifecycle and limits: refusals before enqueueing (context, queue, not ready), a missing model
//! reported as Failed, the Gemma fallback template, and flat memory over 300 requests.

use std::time::{Duration, Instant};

use ferrogate_engine::{
    Engine, EngineConfig, EngineError, EngineStatus, FallbackTemplate, GenerateRequest, Prompt, SubmitError,
    TemplateSource,
};

use crate::common::{GEMMA, GUARD, collect, greedy, model_path, run, smollm2, start, user};

/// Issue 17, item 6: 16 MB of prompt is refused from its length alone — `PromptTooLong` is only
/// ever returned before tokenizing — and quickly, while a normal prompt is still served.
#[tokio::test]
async fn a_prompt_too_long_by_its_bytes_alone_is_refused_before_tokenizing() {
    let engine = start(smollm2()).await;
    let huge = "word ".repeat(3_200_000);
    let started = Instant::now();
    match engine.submit(greedy(vec![user(&huge)], 4)) {
        Err(e @ SubmitError::PromptTooLong { bytes, context: 512 }) => {
            assert!(bytes >= huge.len(), "{bytes}");
            assert!(e.is_caller_fault() && !e.retryable());
        }
        other => panic!("expected PromptTooLong, got {:?}", other.err()),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "refused in {:?}", started.elapsed());
    let out = run(&engine, greedy(vec![user("Hi")], 2)).await;
    assert!(out.finish.completion_tokens >= 1);
}

#[tokio::test]
async fn too_long_requests_and_a_full_queue_are_refused_at_once() {
    let engine = start(EngineConfig { parallel: Some(1), queue_size: 1, ..smollm2() }).await;
    match engine.submit(greedy(vec![user("Hi")], 600)) {
        Err(SubmitError::ContextLengthExceeded { prompt_tokens, max_tokens: 600, context: 512 }) => {
            assert!(prompt_tokens > 0)
        }
        other => panic!("expected ContextLengthExceeded, got {other:?}"),
    }
    let running = engine.submit(greedy(vec![user("Write a long poem.")], 200)).unwrap();
    let queued = engine.submit(greedy(vec![user("Write a long poem.")], 200)).unwrap();
    match engine.submit(greedy(vec![user("Hi")], 4)) {
        Err(e @ SubmitError::QueueFull { retry_after }) => {
            assert!(retry_after >= Duration::from_secs(1));
            assert!(e.retryable());
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    drop((running, queued));
    // Places come back once the cancelled requests are reaped.
    let out = tokio::time::timeout(GUARD, async {
        loop {
            if let Ok(g) = engine.submit(greedy(vec![user("Hi")], 2)) {
                return collect(g).await;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(out.finish.completion_tokens <= 2);
}

#[tokio::test]
async fn a_missing_model_fails_clearly_and_submit_refuses() {
    let engine = Engine::start(EngineConfig::new("/nonexistent/model.gguf")).unwrap();
    match tokio::time::timeout(GUARD, engine.wait_ready()).await.unwrap() {
        Err(EngineError::LoadFailed(msg)) => assert!(msg.contains("not found"), "{msg}"),
        other => panic!("expected LoadFailed, got {other:?}"),
    }
    assert!(matches!(engine.status(), EngineStatus::Failed(_)));
    assert!(matches!(engine.submit(greedy(vec![user("Hi")], 4)), Err(SubmitError::Engine(EngineError::LoadFailed(_)))));
    assert!(Engine::start(EngineConfig::default()).is_err(), "no model_path is a config error");
}

#[tokio::test]
async fn submit_before_ready_is_refused_as_not_ready() {
    let engine = Engine::start(smollm2()).unwrap();
    let result = engine.submit(greedy(vec![user("Hi")], 2));
    match (&result, engine.status()) {
        (Err(SubmitError::NotReady), _) => {}
        (Ok(_), EngineStatus::Ready) => {} // it loaded faster than we asked
        other => panic!("unexpected {other:?}"),
    }
    drop(result);
    engine.wait_ready().await.unwrap();
}

#[tokio::test]
async fn gemma_renders_the_fallback_template_and_generates() {
    let engine = start(EngineConfig {
        threads: Some(1),
        ctx_per_seq: 512,
        parallel: Some(2),
        ..EngineConfig::new(model_path(GEMMA))
    })
    .await;
    let info = engine.model_info().unwrap();
    assert_eq!(info.chat_template, TemplateSource::Fallback(FallbackTemplate::Gemma));
    assert_eq!(info.architecture, "gemma3");
    let prompt = Prompt::Chat {
        messages: vec![
            serde_json::json!({"role": "system", "content": "Be brief."}),
            user("What is the capital of France?"),
        ],
        tools: None,
    };
    let text = engine.render_prompt(&prompt).unwrap();
    assert_eq!(
        text,
        "<start_of_turn>user\nBe brief.\n\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    );
    let out = run(&engine, greedy(vec![user("What is the capital of France?")], 16)).await;
    assert!(!out.text.trim().is_empty());
    assert!(!out.text.contains("<end_of_turn>"));
    // BOS + the rendered turns, counted exactly.
    assert_eq!(
        out.prompt_tokens as usize,
        engine
            .prompt_tokens(&Prompt::Chat { messages: vec![user("What is the capital of France?")], tools: None })
            .unwrap()
    );
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn rss_stays_flat_over_300_requests() {
    let engine = start(EngineConfig { parallel: Some(8), ..smollm2() }).await;
    let batch = |from: usize, n: usize| {
        let engine = engine.clone();
        async move {
            let gens: Vec<_> = (from..from + n)
                .map(|i| {
                    let mut req = GenerateRequest::text(format!("Count: {i}, {}, ", i + 1));
                    req.max_tokens = Some(4);
                    engine.submit(req).unwrap()
                })
                .collect();
            for g in gens {
                collect(g).await;
            }
        }
    };
    for round in 0..5 {
        batch(round * 10, 10).await; // warm-up: allocator pools, slot caches, sampler buffers
    }
    let before = rss_bytes();
    for round in 0..25 {
        batch(100 + round * 10, 10).await;
    }
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    assert!(growth < 16 << 20, "RSS grew by {} KiB over 250 requests", growth / 1024);
    assert_eq!(engine.stats().requests_total, 300);
}
