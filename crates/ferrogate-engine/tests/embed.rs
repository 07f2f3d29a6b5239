//! The embedding model for real (all-MiniLM-L6-v2 from FERROGATE_MODEL_DIR, `make fetch-models`):
//! an STS-style quality check (paraphrases closer than related sentences, related closer than
//! unrelated), batching that does not change the vectors, token-id input, and refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferrogate_engine::{EmbedConfig, EmbedError, EmbedInput, Embedder};

fn model() -> std::path::PathBuf {
    let p = ferrogate_engine::model_dir().join("all-MiniLM-L6-v2.gguf");
    assert!(p.exists(), "{} is missing: run `make fetch-models`", p.display());
    p
}

async fn embedder() -> Embedder {
    let mut cfg = EmbedConfig::new(model());
    cfg.threads = Some(2);
    let e = Embedder::start(cfg).unwrap();
    let info = e.wait_ready().await.unwrap();
    assert_eq!((info.architecture.as_str(), info.dimensions), ("bert", 384));
    e
}

fn text(s: &str) -> EmbedInput {
    EmbedInput::Text(s.to_owned())
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// (anchor, paraphrase, related, unrelated): cos(anchor, ·) must fall in that order.
const STS: [[&str; 4]; 6] = [
    [
        "A man is playing a guitar.",
        "Someone is playing an acoustic guitar.",
        "A woman is playing the violin.",
        "The stock market fell sharply this morning.",
    ],
    [
        "How do I reset my password?",
        "What are the steps to change my forgotten password?",
        "How do I create a new account?",
        "Penguins live in the southern hemisphere.",
    ],
    [
        "The cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "The dog is running in the park.",
        "Interest rates were raised by the central bank.",
    ],
    [
        "It will rain heavily tomorrow.",
        "Tomorrow's forecast says there will be a lot of rain.",
        "Yesterday was sunny and warm.",
        "She bought a new laptop for programming.",
    ],
    [
        "The restaurant serves excellent pasta.",
        "This place makes really good spaghetti.",
        "The hotel has a nice swimming pool.",
        "The spacecraft entered orbit around Mars.",
    ],
    [
        "Children are playing football in the yard.",
        "Kids play soccer outside the house.",
        "Adults are watching a basketball game on TV.",
        "The chemical formula of water is H2O.",
    ],
];

#[tokio::test]
async fn sts_similarities_are_ordered() {
    let e = embedder().await;
    let inputs: Vec<EmbedInput> = STS.iter().flatten().map(|s| text(s)).collect();
    let out = e.embed(inputs).await.unwrap();
    assert_eq!(out.vectors.len(), STS.len() * 4);
    for (i, row) in STS.iter().enumerate() {
        let v = &out.vectors[i * 4..i * 4 + 4];
        let (para, rel, unrel) = (cos(&v[0], &v[1]), cos(&v[0], &v[2]), cos(&v[0], &v[3]));
        eprintln!("{}: paraphrase {para:.3} related {rel:.3} unrelated {unrel:.3}", row[0]);
        assert!(para > rel && rel > unrel, "{row:?}: {para} {rel} {unrel}");
        assert!(para > 0.5, "{row:?}: a paraphrase at {para}");
        assert!(unrel < 0.3, "{row:?}: an unrelated sentence at {unrel}");
    }
    // Unit vectors: the dot product is the cosine.
    for v in &out.vectors {
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4, "norm² {n}");
    }
    assert!(out.prompt_tokens > 24 * 3, "usage counts tokens: {}", out.prompt_tokens);
}

#[tokio::test]
async fn batching_does_not_change_vectors() {
    let e = embedder().await;
    let sentences: Vec<&str> = STS.iter().map(|r| r[1]).collect();
    let together = e.embed(sentences.iter().map(|s| text(s)).collect()).await.unwrap();
    // The same inputs as concurrent single jobs: the thread packs them into shared decodes.
    let singles = futures::future::join_all(sentences.iter().map(|s| e.embed(vec![text(s)]))).await;
    for (i, single) in singles.into_iter().enumerate() {
        let single = single.unwrap();
        let c = cos(&single.vectors[0], &together.vectors[i]);
        assert!(c > 0.9999, "input {i}: batched and alone differ (cos {c})");
    }
    assert_eq!(together.prompt_tokens, {
        let mut n = 0;
        for s in &sentences {
            n += e.embed(vec![text(s)]).await.unwrap().prompt_tokens;
        }
        n
    });
}

#[tokio::test]
async fn token_ids_and_refusals() {
    let e = embedder().await;
    // [CLS] hello world [SEP] in bert-base-uncased's vocabulary, which MiniLM shares.
    let ids = e.embed(vec![EmbedInput::Tokens(vec![101, 7592, 2088, 102])]).await.unwrap();
    let txt = e.embed(vec![text("hello world")]).await.unwrap();
    assert_eq!(ids.prompt_tokens, 4);
    assert_eq!(txt.prompt_tokens, 4, "the text tokenizes to the same four tokens");
    assert!(cos(&ids.vectors[0], &txt.vectors[0]) > 0.9999);

    let bad = e.embed(vec![text("ok"), EmbedInput::Tokens(vec![1, 99_999_999])]).await;
    assert!(matches!(bad, Err(EmbedError::Invalid(ref m)) if m.contains("input 1")), "{bad:?}");
    let long = "word ".repeat(600);
    let too_long = e.embed(vec![text(&long)]).await;
    assert!(matches!(too_long, Err(EmbedError::TooLong { index: 0, max: 512, .. })), "{too_long:?}");
    let empty = e.embed(vec![EmbedInput::Tokens(vec![])]).await;
    assert!(matches!(empty, Err(EmbedError::Invalid(_))), "{empty:?}");
    // The engine still serves after refusals.
    assert_eq!(e.embed(vec![text("still here")]).await.unwrap().vectors.len(), 1);
}

#[tokio::test]
async fn a_generation_model_is_not_an_embedding_model() {
    let dir = tempdir();
    let fake = dir.join("not-a-model.gguf");
    std::fs::write(&fake, b"GGUF but not really").unwrap();
    let e = Embedder::start(EmbedConfig::new(&fake)).unwrap();
    assert!(e.wait_ready().await.is_err());
    assert!(matches!(e.embed(vec![text("x")]).await, Err(EmbedError::Engine(_))));
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fg-embed-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
