//! Ollama's `/api/ps`: the models loaded now. Ollama reports no queue or KV numbers, so the
//! reading says only whether the asked-for model is resident: a backend that would first have
//! to load it scores as a full cache (`kv_usage = 1`), one that holds it as unknown pressure.

use ferrogate_core::affinity::EngineLoad;
use ferrogate_protocol::ollama::wire::TagsResponse;

/// The load of an Ollama server whose `/api/ps` answered `body`, for `model`.
pub fn parse(body: &str, model: &str) -> Result<EngineLoad, String> {
    let ps: TagsResponse = serde_json::from_str(body).map_err(|e| format!("/api/ps: {e}"))?;
    let same = |name: &str| name == model || name.strip_suffix(":latest") == Some(model);
    let loaded = ps.models.iter().any(|m| same(&m.name) || same(&m.model));
    Ok(EngineLoad { running: 0, waiting: 0, kv_usage: (!loaded).then_some(1.0) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_loaded_model_is_unknown_pressure_and_a_cold_one_a_full_cache() {
        let body = r#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":3619,
            "digest":"a80c4f","expires_at":"2026-12-06T14:00:00Z","size_vram":3619}]}"#;
        assert_eq!(parse(body, "llama3.2").unwrap().kv_usage, None);
        assert_eq!(parse(body, "llama3.2:latest").unwrap().kv_usage, None);
        assert_eq!(parse(body, "qwen3").unwrap().kv_usage, Some(1.0));
        assert_eq!(parse(r#"{"models":[]}"#, "qwen3").unwrap().kv_usage, Some(1.0));
        assert!(parse("not json", "x").is_err());
    }
}
