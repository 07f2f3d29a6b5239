//! The semantic cache, black-box with real models: chat on the embedded SmolLM2, embeddings on the
//! embedded all-MiniLM-L6-v2. A paraphrase of an answered question is served from the cache
//! (`x-ferrogate-cache: semantic-hit`, the similarity in `x-ferrogate-cache-similarity`), whole
//! or streamed; another question on the same topic, another conversation prefix or
//! `Cache-Control: no-store` is not. Precision is measured on the paraphrase set in
//! tests/data/paraphrases.json (docs/STATE.md records the figures): every pair goes through the
//! gateway, and the false hits (a cached answer served to a different question) are counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::{TestGateway, model_path};
use futures::StreamExt;
use serde_json::{Value, json};

const THRESHOLD: f32 = 0.90;

async fn gateway() -> TestGateway {
    gateway_with("").await
}

async fn gateway_with(extra: &str) -> TestGateway {
    let toml = format!(
        "[backends.minilm]\nkind = \"embedded_embeddings\"\nmodel_path = \"{}\"\nthreads = 1\n\
         [backends.smollm2]\nkind = \"embedded\"\nmodel_path = \"{}\"\nparallel = 2\nctx_per_seq = 512\nthreads = 1\n\
         [deployments.minilm]\nbackends = [\"minilm\"]\n\
         [deployments.chat]\nbackends = [\"smollm2\"]\nupstream_model = \"smollm2\"\n\
         semantic_cache = {{ embedding = \"minilm\", threshold = {THRESHOLD} }}\n{extra}",
        model_path("all-MiniLM-L6-v2.gguf").display(),
        model_path("SmolLM2-135M-Instruct.Q4_1.gguf").display(),
    );
    let gw = TestGateway::start(&toml).await;
    gw.wait_ready(Duration::from_secs(90)).await;
    gw
}

fn ask(system: &str, question: &str, stream: bool) -> Value {
    json!({
        "model": "chat", "max_tokens": 6, "temperature": 0.7, "stream": stream,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
    })
}

/// (x-ferrogate-cache, similarity, answer text) of a whole answer.
async fn whole(gw: &TestGateway, body: &Value, headers: &[(&str, &str)]) -> (Option<String>, Option<f32>, String) {
    let mut rb = gw.http.post(gw.url("/v1/chat/completions")).json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let res = rb.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (cache, sim) = cache_headers(&res);
    let v: Value = res.json().await.unwrap();
    (cache, sim, v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned())
}

fn cache_headers(res: &reqwest::Response) -> (Option<String>, Option<f32>) {
    let h = |k: &str| res.headers().get(k).map(|v| v.to_str().unwrap().to_owned());
    (h("x-ferrogate-cache"), h("x-ferrogate-cache-similarity").map(|s| s.parse().unwrap()))
}

/// The index is filled off the request path: give the spawned insert a moment.
async fn filled() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn paraphrases_are_served_from_the_semantic_cache() {
    let gw = gateway().await;
    let sys = "You answer geography questions.";
    let (cache, sim, first) = whole(&gw, &ask(sys, "How tall is Mount Everest?", false), &[]).await;
    assert_eq!((cache.as_deref(), sim), (Some("miss"), None));
    filled().await;

    let (cache, sim, again) = whole(&gw, &ask(sys, "What is the height of Mount Everest?", false), &[]).await;
    assert_eq!(cache.as_deref(), Some("semantic-hit"));
    let sim = sim.unwrap();
    assert!((THRESHOLD..1.0).contains(&sim), "similarity {sim}");
    assert_eq!(again, first, "the cached answer (sampled at temperature 0.7: a new one would differ)");

    // Streamed: the same answer replayed as a stream.
    let (cache, text) = streamed(&gw, &ask(sys, "What's the height of Mount Everest?", true)).await;
    assert_eq!(cache.as_deref(), Some("semantic-hit"));
    assert_eq!(text, first);

    // Another question on the topic, another conversation prefix, no-store: not served.
    let (cache, ..) = whole(&gw, &ask(sys, "How old is Mount Everest?", false), &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    let (cache, ..) = whole(&gw, &ask("You are a poet.", "What is the height of Mount Everest?", false), &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    let no_store = [("cache-control", "no-store")];
    let (cache, ..) = whole(&gw, &ask(sys, "What is the height of Mount Everest?", false), &no_store).await;
    assert_eq!(cache, None);
    gw.shutdown().await;
}

/// (x-ferrogate-cache, the text) of a streamed answer.
async fn streamed(gw: &TestGateway, body: &Value) -> (Option<String>, String) {
    let res = gw.post_json("/v1/chat/completions", body).await;
    assert_eq!(res.status(), 200);
    let cache = cache_headers(&res).0;
    let mut dec = SseDecoder::new();
    let mut text = String::new();
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        for ev in dec.push(&chunk.unwrap()) {
            if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or_default());
            }
        }
    }
    (cache, text)
}

#[tokio::test]
async fn a_streamed_answer_fills_the_index_when_it_ends() {
    let gw = gateway().await;
    let sys = "You answer questions about rivers.";
    let (cache, first) = streamed(&gw, &ask(sys, "How long is the river Nile?", true)).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    assert!(!first.is_empty());
    filled().await;
    // A paraphrase, whole and streamed: the streamed miss's text, sampled at temperature 0.7.
    let (cache, sim, again) = whole(&gw, &ask(sys, "What is the length of the river Nile?", false), &[]).await;
    assert_eq!(cache.as_deref(), Some("semantic-hit"), "the streamed answer was stored");
    assert!(sim.unwrap() >= THRESHOLD);
    assert_eq!(again, first);
    let (cache, again) = streamed(&gw, &ask(sys, "What's the length of the river Nile?", true)).await;
    assert_eq!((cache.as_deref(), again.as_str()), (Some("semantic-hit"), first.as_str()));
    gw.shutdown().await;
}

/// The cosine of each pair, straight from the embedding model.
async fn cosines(gw: &TestGateway, list: &[(String, String)]) -> Vec<f32> {
    let inputs: Vec<&str> = list.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
    let v: Value =
        gw.post_json("/v1/embeddings", &json!({"model": "minilm", "input": inputs})).await.json().await.unwrap();
    let vecs: Vec<Vec<f32>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    vecs.chunks(2).map(|p| p[0].iter().zip(&p[1]).map(|(x, y)| x * y).sum::<f32>()).collect()
}

#[tokio::test]
async fn replicas_share_the_index_through_postgresql() {
    let db = ferrogate_testkit::TestDatabase::open(ferrogate_testkit::db::DbKind::Postgres).await;
    let extra = format!("[cache]\nsemantic_database_url = \"{}\"\n", db.url);
    let (a, b) = (gateway_with(&extra).await, gateway_with(&extra).await);
    let sys = "You answer questions about mountains.";
    let (cache, _, first) = whole(&a, &ask(sys, "How tall is Mount Everest?", false), &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    filled().await;
    let (cache, sim, again) = whole(&b, &ask(sys, "What is the height of Mount Everest?", false), &[]).await;
    assert_eq!(cache.as_deref(), Some("semantic-hit"), "the other replica's answer, through PostgreSQL");
    assert!(sim.unwrap() >= THRESHOLD);
    assert_eq!(again, first);
    let (cache, ..) = whole(&b, &ask(sys, "How old is Mount Everest?", false), &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    a.shutdown().await;
    b.shutdown().await;
}

#[derive(Default, Debug)]
struct Tally {
    hits: usize,
    misses: usize,
}

#[tokio::test]
async fn precision_on_the_paraphrase_set() {
    let set: Value =
        serde_json::from_str(include_str!("data/paraphrases.json")).expect("tests/data/paraphrases.json parses");
    let pairs = |k: &str| -> Vec<(String, String)> {
        set[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
            .collect()
    };
    let (same, different) = (pairs("same"), pairs("different"));
    let gw = gateway().await;

    // Cosines straight from the embedding model: the precision/recall curve over thresholds.
    let (cs, cd) = (cosines(&gw, &same).await, cosines(&gw, &different).await);
    eprintln!("| threshold | paraphrases served (of {}) | false hits (of {}) |", cs.len(), cd.len());
    for t in [0.80f32, 0.85, 0.88, 0.90, 0.92, 0.95] {
        let tp = cs.iter().filter(|c| **c >= t).count();
        let fp = cd.iter().filter(|c| **c >= t).count();
        eprintln!("| {t:.2} | {tp} | {fp} |");
    }

    // End to end at the configured threshold: each pair in its own conversation prefix.
    let mut tallies = [Tally::default(), Tally::default()];
    let mut false_hits = Vec::new();
    for (kind, list) in [same, different].iter().enumerate() {
        for (i, (a, b)) in list.iter().enumerate() {
            let sys = format!("Support conversation {kind}-{i}.");
            let (cache, ..) = whole(&gw, &ask(&sys, a, false), &[]).await;
            assert_eq!(cache.as_deref(), Some("miss"), "{a}");
            filled().await;
            let (cache, sim, _) = whole(&gw, &ask(&sys, b, false), &[]).await;
            match cache.as_deref() {
                Some("semantic-hit") => {
                    tallies[kind].hits += 1;
                    if kind == 1 {
                        false_hits.push(format!("{a} / {b} ({:.3})", sim.unwrap()));
                    }
                }
                Some("miss") => tallies[kind].misses += 1,
                other => panic!("{b}: x-ferrogate-cache {other:?}"),
            }
        }
    }
    let (expect_tp, expect_fp) =
        (cs.iter().filter(|c| **c >= THRESHOLD).count(), cd.iter().filter(|c| **c >= THRESHOLD).count());
    eprintln!(
        "end to end at {THRESHOLD}: paraphrases served {:?}, different questions {:?}; false hits: {false_hits:?}",
        tallies[0], tallies[1]
    );
    // The gateway serves what the similarities say (one vector per request here, a batch of 60
    // above: float sums differ in the last digits, so a pair sitting at the threshold may flip) ...
    assert!(tallies[0].hits.abs_diff(expect_tp) <= 1, "{:?} vs {expect_tp}", tallies[0]);
    assert!(tallies[1].hits.abs_diff(expect_fp) <= 1, "{:?} vs {expect_fp}", tallies[1]);
    // ... and at the default threshold most paraphrases hit while few different questions do.
    assert!(tallies[0].hits * 10 >= cs.len() * 6, "recall below 60%: {:?}", tallies[0]);
    assert!(tallies[1].hits * 10 <= cd.len(), "false hits above 10%: {false_hits:?}");
    gw.shutdown().await;
}
