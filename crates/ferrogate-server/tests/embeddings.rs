//! Embeddings, black-box over real HTTP with the real all-MiniLM-L6-v2 model: `/v1/embeddings`
//! (every input shape, float and base64, `dimensions`, refusals in OpenAI's shape), Ollama's
//! `/api/embed` and `/api/embeddings`, the OpenAI-compatible and Ollama backends passing
//! through to a real upstream (a second gateway serving the model, which speaks both APIs), and
//! metering: one ledger row per request with the prompt tokens, budgets enforced (SQLite and
//! PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use ferrogate_testkit::{TestDatabase, TestGateway, model_path};
use serde_json::{Value, json};

const MASTER: &str = "fg-master-embeddings-test-0123456789";

fn minilm_toml(extra: &str) -> String {
    format!(
        "[backends.minilm]\nkind = \"embedded_embeddings\"\nmodel_path = \"{}\"\nthreads = 1\n\
         [deployments.minilm]\nbackends = [\"minilm\"]\n{extra}",
        model_path("all-MiniLM-L6-v2.gguf").display()
    )
}

async fn minilm(extra: &str) -> TestGateway {
    let gw = TestGateway::start(&minilm_toml(extra)).await;
    gw.wait_ready(Duration::from_secs(60)).await;
    gw
}

async fn ok_json(res: reqwest::Response) -> Value {
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

async fn error_of(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    res.json().await.unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn openai_embeddings_every_input_shape_and_encoding() {
    let gw = minilm("").await;
    let v = ok_json(gw.post_json("/v1/embeddings", &json!({"model": "minilm", "input": "A cat sat."})).await).await;
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("list"), Some("minilm")));
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["index"], 0);
    let one = floats(&v["data"][0]["embedding"]);
    assert_eq!(one.len(), 384);
    assert!((cos(&one, &one) - 1.0).abs() < 1e-4, "unit vectors");
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(prompt, 6, "[CLS] a cat sat . [SEP]");
    assert_eq!(v["usage"]["total_tokens"].as_u64(), Some(prompt));

    let body = json!({"model": "minilm", "input": ["A cat sat.", "Dogs bark loudly.", "A kitten was sitting."]});
    let v = ok_json(gw.post_json("/v1/embeddings", &body).await).await;
    let many: Vec<Vec<f32>> = v["data"].as_array().unwrap().iter().map(|d| floats(&d["embedding"])).collect();
    assert_eq!(v["data"][2]["index"], 2);
    assert!(cos(&many[0], &one) > 0.9999, "the same text in a batch gives the same vector");
    assert!(cos(&many[0], &many[2]) > cos(&many[0], &many[1]), "a paraphrase is closer than another topic");

    // Token ids (the model's own vocabulary): [CLS] a cat sat . [SEP]
    let ids = json!([101, 1037, 4937, 2938, 1012, 102]);
    let v = ok_json(gw.post_json("/v1/embeddings", &json!({"model": "minilm", "input": ids})).await).await;
    assert!(cos(&floats(&v["data"][0]["embedding"]), &one) > 0.9999);
    let v =
        ok_json(gw.post_json("/v1/embeddings", &json!({"model": "minilm", "input": [ids, [101, 102]]})).await).await;
    assert_eq!((v["data"].as_array().unwrap().len(), v["usage"]["prompt_tokens"].as_u64()), (2, Some(8)));

    let b64 = json!({"model": "minilm", "input": "A cat sat.", "encoding_format": "base64"});
    let v = ok_json(gw.post_json("/v1/embeddings", &b64).await).await;
    let bytes = base64::engine::general_purpose::STANDARD.decode(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(decoded, one);
    let native = json!({"model": "minilm", "input": "x", "dimensions": 384});
    assert_eq!(gw.post_json("/v1/embeddings", &native).await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_embedding_requests_get_clear_openai_errors() {
    let gw = minilm("").await;
    let cases = [
        (json!({"model": "minilm", "input": "x", "dimensions": 128}), 400, "dimensions"),
        (json!({"model": "minilm", "input": []}), 400, "input"),
        (json!({"model": "minilm", "input": ["a", ""]}), 400, "input[1]"),
        (json!({"model": "minilm", "input": "x", "encoding_format": "hex"}), 400, "encoding_format"),
        (json!({"model": "minilm", "input": "x", "bogus": true}), 400, "bogus"),
        (json!({"model": "minilm", "input": [[101, 999_999_999]]}), 400, "input"),
        (json!({"model": "minilm", "input": "word ".repeat(600)}), 400, ""),
        (json!({"model": "minilm"}), 400, "input"),
        (json!({"model": "nope", "input": "x"}), 404, ""),
    ];
    for (body, status, param) in cases {
        let v = error_of(gw.post_json("/v1/embeddings", &body).await, status).await;
        let err = &v["error"];
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}: {v}");
        if !param.is_empty() {
            assert_eq!(err["param"].as_str(), Some(param), "{body}: {v}");
        }
    }
    let long = json!({"model": "minilm", "input": "word ".repeat(600)});
    let v = error_of(gw.post_json("/v1/embeddings", &long).await, 400).await;
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    // An embedding model does not chat.
    let chat = json!({"model": "minilm", "messages": [{"role": "user", "content": "hi"}]});
    let v = error_of(gw.post_json("/v1/chat/completions", &chat).await, 400).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("/v1/embeddings"), "{v}");
    // Not JSON at all.
    let res = gw.http.post(gw.url("/v1/embeddings")).body("{").send().await.unwrap();
    assert_eq!(res.status(), 400);
    // Still serving.
    assert_eq!(gw.post_json("/v1/embeddings", &json!({"model": "minilm", "input": "ok"})).await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn ollama_embed_routes() {
    let gw = minilm("").await;
    let v = ok_json(gw.post_json("/api/embed", &json!({"model": "minilm", "input": ["A cat sat.", "Hi"]})).await).await;
    assert_eq!(v["model"], "minilm");
    let e = v["embeddings"].as_array().unwrap();
    assert_eq!((e.len(), e[0].as_array().unwrap().len()), (2, 384));
    assert_eq!(v["prompt_eval_count"].as_u64(), Some(6 + 3));
    assert!(v["total_duration"].as_u64().unwrap() > 0);
    let v = ok_json(gw.post_json("/api/embeddings", &json!({"model": "minilm", "prompt": "A cat sat."})).await).await;
    assert!(cos(&floats(&v["embedding"]), &floats(&e[0])) > 0.9999);
    // Errors in Ollama's shape.
    let v = error_of(gw.post_json("/api/embed", &json!({"model": "nope", "input": "x"})).await, 404).await;
    assert!(v["error"].as_str().is_some(), "{v}");
    let v = error_of(gw.post_json("/api/embed", &json!({"model": "minilm", "input": ""})).await, 400).await;
    assert!(v["error"].as_str().is_some(), "{v}");
    gw.shutdown().await;
}

#[tokio::test]
async fn openai_and_ollama_backends_pass_embeddings_through() {
    let upstream = minilm("").await;
    let toml = format!(
        "[backends.oai]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"minilm\"]\n\
         [backends.oll]\nkind = \"ollama\"\nbase_url = \"{}\"\nmodels = [\"minilm\"]\n\
         [deployments.via-openai]\nbackends = [\"oai\"]\nupstream_model = \"minilm\"\n\
         [deployments.via-ollama]\nbackends = [\"oll\"]\nupstream_model = \"minilm\"\n",
        upstream.url("/v1"),
        upstream.url("")
    );
    let gw = TestGateway::start(&toml).await;
    let texts = json!(["The weather is lovely today.", "Stocks fell sharply."]);
    let direct = ok_json(upstream.post_json("/v1/embeddings", &json!({"model": "minilm", "input": texts})).await).await;
    for model in ["via-openai", "via-ollama"] {
        for format in ["float", "base64"] {
            let body = json!({"model": model, "input": texts, "encoding_format": format});
            let res = gw.post_json("/v1/embeddings", &body).await;
            let backend = res.headers()["x-ferrogate-backend"].to_str().unwrap().to_owned();
            let v = ok_json(res).await;
            assert_eq!(v["model"], model);
            assert_eq!(backend, if model == "via-openai" { "oai" } else { "oll" });
            assert_eq!(v["usage"]["prompt_tokens"], direct["usage"]["prompt_tokens"], "{model}: upstream's count");
            for i in 0..2 {
                let got = match format {
                    "float" => floats(&v["data"][i]["embedding"]),
                    _ => {
                        let b = v["data"][i]["embedding"].as_str().unwrap();
                        let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
                        bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
                    }
                };
                assert!(cos(&got, &floats(&direct["data"][i]["embedding"])) > 0.9999, "{model} {format} {i}");
            }
        }
    }
    // The upstream's refusal comes back as the caller's error, not a 5xx.
    let bad = json!({"model": "via-openai", "input": "x", "dimensions": 7});
    assert_eq!(gw.post_json("/v1/embeddings", &bad).await.status(), 400);
    let tokens = json!({"model": "via-ollama", "input": [[101, 102]]});
    let v = error_of(gw.post_json("/v1/embeddings", &tokens).await, 400).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("text only"), "{v}");
    gw.shutdown().await;
    upstream.shutdown().await;
}

async fn metered_and_budgeted(db: &TestDatabase) {
    let extra = format!(
        "[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\nledger_flush_interval_ms = 100\n",
        db.url
    );
    let gw = minilm(&extra).await;
    let admin = |path: &str, body: Value| gw.http.post(gw.url(path)).bearer_auth(MASTER).json(&body).send();
    assert_eq!(admin("/admin/v1/tenants", json!({"name": "acme"})).await.unwrap().status(), 201);
    let key: Value = admin("/admin/v1/keys", json!({"tenant": "acme", "limits": {"tokens_per_day": 20}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap();
    let post = |id: &str, path: &str, body: Value| {
        gw.http.post(gw.url(path)).bearer_auth(key).header("x-request-id", id).json(&body).send()
    };
    let v =
        ok_json(post("e1", "/v1/embeddings", json!({"model": "minilm", "input": ["A cat sat.", "Hi"]})).await.unwrap())
            .await;
    assert_eq!(v["usage"]["prompt_tokens"], 9);
    let v = ok_json(post("e2", "/api/embed", json!({"model": "minilm", "input": "A cat sat."})).await.unwrap()).await;
    assert_eq!(v["prompt_eval_count"], 6);
    let v =
        ok_json(post("e3", "/api/embeddings", json!({"model": "minilm", "prompt": "A cat sat."})).await.unwrap()).await;
    assert_eq!(v["embedding"].as_array().unwrap().len(), 384);
    // 21 of 20 tokens spent: the next request is refused before the model runs.
    let res = post("e4", "/v1/embeddings", json!({"model": "minilm", "input": "x"})).await.unwrap();
    let v = error_of(res, 429).await;
    assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
    let no_auth = gw.post_json("/v1/embeddings", &json!({"model": "minilm", "input": "x"})).await;
    assert_eq!(no_auth.status(), 401);

    let rows = db.ledger_with(4, Duration::from_secs(15)).await;
    let row = |id: &str| rows.iter().find(|r| r.request_id == id).unwrap_or_else(|| panic!("{id}: {rows:#?}"));
    let (e1, e2, e3, e4) = (row("e1"), row("e2"), row("e3"), row("e4"));
    assert_eq!((e1.endpoint.as_str(), e1.prompt_tokens, e1.completion_tokens), ("embeddings", 9, 0), "{e1:?}");
    assert_eq!((e1.http_status, e1.model_served.as_deref()), (200, Some("minilm")), "{e1:?}");
    assert_eq!((e2.endpoint.as_str(), e2.prompt_tokens), ("api.embed", 6), "{e2:?}");
    assert_eq!((e3.endpoint.as_str(), e3.prompt_tokens), ("api.embeddings", 6), "{e3:?}");
    assert_eq!((e4.http_status, e4.prompt_tokens), (429, 0), "{e4:?}");
    gw.shutdown().await;
}

mod sqlite {
    #[tokio::test]
    async fn embeddings_are_metered_and_budgeted() {
        let db = ferrogate_testkit::TestDatabase::open(ferrogate_testkit::db::DbKind::Sqlite).await;
        super::metered_and_budgeted(&db).await;
    }
}

mod postgres {
    #[tokio::test]
    async fn embeddings_are_metered_and_budgeted() {
        let db = ferrogate_testkit::TestDatabase::open(ferrogate_testkit::db::DbKind::Postgres).await;
        super::metered_and_budgeted(&db).await;
    }
}
