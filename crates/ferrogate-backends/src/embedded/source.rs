//! Where an embedded model comes from: a local GGUF path, or a file in a Hugging Face model
//! repository written `hf://owner/repo/path/file.gguf` (`hf://owner/repo@revision/file.gguf` for a
//! branch, tag or commit other than `main`).
//!
//! Hub files are fetched once through the `hf-hub` crate into `<model_dir>/hf` (the Hugging Face
//! cache layout) and loaded from there; a file already in that cache is used without any network
//! access, so an offline machine keeps working once the file is there. `HF_ENDPOINT` points at a
//! mirror, `HF_TOKEN` authenticates for gated repositories.
//!
//! Invariant: a failed fetch names the source, the endpoint and the cause, and says how to get
//! going without the hub (a local `model_path`) — it never surfaces as a bare HTTP error.

use std::fmt;
use std::path::{Path, PathBuf};

use hf_hub::api::tokio::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

/// The `model_path` prefix that selects the Hugging Face hub.
pub const HF_SCHEME: &str = "hf://";
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// One file in a Hugging Face model repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit; `main` unless given with `@`.
    pub revision: String,
    /// Path of the file inside the repository.
    pub file: String,
}

impl fmt::Display for HubFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.revision == "main" {
            write!(f, "{HF_SCHEME}{}/{}", self.repo, self.file)
        } else {
            write!(f, "{HF_SCHEME}{}@{}/{}", self.repo, self.revision, self.file)
        }
    }
}

/// A configured `model_path`: `None` for a local path, the hub file for `hf://…`, or why the
/// `hf://` form is malformed.
pub fn hub_file(model_path: &Path) -> Option<Result<HubFile, String>> {
    let s = model_path.to_str()?;
    let rest = s.strip_prefix(HF_SCHEME)?;
    Some(parse_hub(rest).ok_or_else(|| {
        format!("model_path '{s}' is not of the form hf://owner/repo/file.gguf (or hf://owner/repo@revision/file.gguf)")
    }))
}

fn parse_hub(rest: &str) -> Option<HubFile> {
    let mut parts = rest.splitn(3, '/');
    let owner = parts.next().filter(|p| !p.is_empty())?;
    let name_rev = parts.next().filter(|p| !p.is_empty())?;
    let file = parts.next().filter(|p| !p.is_empty() && !p.ends_with('/'))?;
    let (name, revision) = match name_rev.split_once('@') {
        Some((n, r)) if !n.is_empty() && !r.is_empty() => (n, r),
        Some(_) => return None,
        None => (name_rev, "main"),
    };
    let bad = |p: &str| p.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad(owner) || bad(name) || bad(file) {
        return None;
    }
    Some(HubFile { repo: format!("{owner}/{name}"), revision: revision.to_owned(), file: file.to_owned() })
}

/// The hub cache under `model_dir`.
pub fn hub_cache_dir(model_dir: &Path) -> PathBuf {
    model_dir.join("hf")
}

/// The local path of `hub` if it is already in the cache (no network access).
pub fn cached(hub: &HubFile, cache_dir: &Path) -> Option<PathBuf> {
    Cache::new(cache_dir.to_path_buf()).repo(repo_of(hub)).get(&hub.file)
}

/// The hub to download from: `$HF_ENDPOINT`, else huggingface.co.
pub fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
}

/// The local path of `hub`: from the cache, else downloaded from `endpoint` into it (with a
/// progress bar on stderr when `progress`).
pub async fn fetch(hub: &HubFile, cache_dir: &Path, endpoint: &str, progress: bool) -> Result<PathBuf, String> {
    if let Some(path) = cached(hub, cache_dir) {
        return Ok(path);
    }
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let fail = |cause: String| {
        format!(
            "cannot fetch {hub} from {endpoint}: {cause}. Without access to the hub, put the GGUF file on \
             disk and set model_path to it (or set HF_ENDPOINT to a reachable mirror)"
        )
    };
    std::fs::create_dir_all(cache_dir).map_err(|e| fail(format!("cannot create {}: {e}", cache_dir.display())))?;
    let api = ApiBuilder::from_cache(Cache::new(cache_dir.to_path_buf()))
        .with_endpoint(endpoint.to_owned())
        .with_token(token)
        .with_progress(progress)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    tracing::info!(source = %hub, endpoint = %endpoint, cache = %cache_dir.display(), "downloading model");
    api.repo(repo_of(hub)).download(&hub.file).await.map_err(|e| fail(error_chain(&e)))
}

fn repo_of(hub: &HubFile) -> Repo {
    Repo::with_revision(hub.repo.clone(), RepoType::Model, hub.revision.clone())
}

/// `e` and its sources, so "error sending request" is followed by "connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> Option<Result<HubFile, String>> {
        hub_file(Path::new(s))
    }

    #[test]
    fn local_paths_are_not_hub_files() {
        assert_eq!(parse("models/smollm2.gguf"), None);
        assert_eq!(parse("/abs/hf://x.gguf"), None);
    }

    #[test]
    fn parses_repo_revision_and_nested_file() {
        let h = parse("hf://bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_0.gguf").unwrap().unwrap();
        assert_eq!(h.repo, "bartowski/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(h.revision, "main");
        assert_eq!(h.file, "SmolLM2-135M-Instruct-Q4_0.gguf");
        let h = parse("hf://org/repo@v1.2/quants/q4/model.gguf").unwrap().unwrap();
        assert_eq!(
            (h.repo.as_str(), h.revision.as_str(), h.file.as_str()),
            ("org/repo", "v1.2", "quants/q4/model.gguf")
        );
        assert_eq!(h.to_string(), "hf://org/repo@v1.2/quants/q4/model.gguf");
    }

    #[test]
    fn malformed_hub_paths_say_the_expected_form() {
        for bad in [
            "hf://",
            "hf://owner",
            "hf://owner/repo",
            "hf://owner/repo/",
            "hf:///repo/f.gguf",
            "hf://o/r@/f.gguf",
            "hf://o/r/../x.gguf",
        ] {
            let err = parse(bad).unwrap().unwrap_err();
            assert!(err.contains("hf://owner/repo/file.gguf"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_cached_file_resolves_without_network() {
        let dir = tempfile::tempdir().unwrap();
        let hub = parse("hf://org/repo/model.gguf").unwrap().unwrap();
        assert_eq!(cached(&hub, dir.path()), None);
        // The Hugging Face cache layout: refs/<revision> holds the commit, snapshots/<commit>/<file>.
        let root = dir.path().join("models--org--repo");
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs/main"), "abc123").unwrap();
        std::fs::create_dir_all(root.join("snapshots/abc123")).unwrap();
        std::fs::write(root.join("snapshots/abc123/model.gguf"), b"GGUF").unwrap();
        let want = root.join("snapshots/abc123/model.gguf");
        assert_eq!(cached(&hub, dir.path()), Some(want.clone()));
        // fetch takes the cache first, even with an unreachable endpoint.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        assert_eq!(rt.block_on(fetch(&hub, dir.path(), "http://127.0.0.1:9", false)).unwrap(), want);
    }

    #[test]
    fn an_unreachable_hub_gives_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let hub = parse("hf://org/repo/model.gguf").unwrap().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let err = rt.block_on(fetch(&hub, dir.path(), &endpoint, false)).unwrap_err();
        for needle in ["cannot fetch hf://org/repo/model.gguf", &format!("127.0.0.1:{port}"), "set model_path"] {
            assert!(err.contains(needle), "missing {needle:?} in: {err}");
        }
    }
}
