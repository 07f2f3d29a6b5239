//! The `ferrogate` binary's CLI: version, a quiet start under a CPU mask, `config check` on the
//! shipped configs (they must stay valid), and a broken config listing every problem with exit
//! code 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn ferrogate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrogate"))
}

fn repo(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(file).display().to_string()
}

#[test]
fn prints_its_version() {
    let out = ferrogate().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("ferrogate {}", env!("CARGO_PKG_VERSION")));
}

/// Under a CPU mask (taskset, a container's cpuset) the binary starts as quietly as without one:
/// nothing on stderr that is not the log. jemalloc's `percpu_arena` option, for one, prints a
/// warning there when the mask is smaller than the machine (this test needs two CPUs to tell).
#[test]
fn starts_quietly_under_a_cpu_mask() {
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(env!("CARGO_BIN_EXE_ferrogate"))
        .arg("--version")
        .output()
        .expect("taskset (util-linux) runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn shipped_configs_are_valid() {
    for file in ["ferrogate.example.toml", "config/ferrogate.toml"] {
        let out = ferrogate().args(["config", "check", &repo(file)]).output().unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn broken_config_lists_every_problem_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("fg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"nowhere\"\n[backends.u]\nkind = \"openai\"\nbase_url = \"not a url\"\n\
         [deployments.a]\nbackends = [\"missing\", \"u\"]\n",
    )
    .unwrap();
    let out = ferrogate().args(["config", "check"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["server.listen", "base_url", "no backend named 'missing'", "3 problems"] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn serve_refuses_an_invalid_config() {
    let out = ferrogate().args(["serve", "--config", "/nonexistent/ferrogate.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// `hf://` sources are fetched at start; with the hub unreachable (no internet here, and in this
/// test a closed local port as HF_ENDPOINT) serve refuses to start and says what and why.
#[test]
fn serve_with_an_unreachable_hf_model_fails_clearly() {
    let dir = std::env::temp_dir().join(format!("fg-cli-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hf.toml");
    std::fs::write(
        &file,
        format!(
            "model_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[backends.hub]\nkind = \"embedded\"\n\
             model_path = \"hf://bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_0.gguf\"\n\
             [deployments.hub]\nbackends = [\"hub\"]\n",
            dir.join("models").display()
        ),
    )
    .unwrap();
    // config check accepts the source without fetching it.
    let out = ferrogate().args(["config", "check"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = ferrogate()
        .args(["serve", "--config"])
        .arg(&file)
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "cannot start",
        "backends.hub: cannot fetch hf://bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_0.gguf",
        &format!("127.0.0.1:{port}"),
        "set model_path",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

/// A key database that cannot be opened stops the start, naming the setting and the cause but
/// never the URL (it may hold a password).
#[test]
fn serve_with_an_unreachable_database_fails_clearly() {
    let dir = std::env::temp_dir().join(format!("fg-cli-db-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("db.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[tenancy]\nmaster_key = \"0123456789abcdef0123\"\n\
             database_url = \"postgres://admin:hunter2secret@127.0.0.1:{port}/fg\"\n\
             [backends.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[deployments.m]\nbackends = [\"up\"]\n"
        ),
    )
    .unwrap();
    let out = ferrogate().args(["config", "check"]).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("tenancy on: postgres, admin API on"), "{text}");
    assert!(!text.contains("hunter2secret"), "{text}");

    let out = ferrogate().args(["serve", "--config"]).arg(&file).env_remove("FERROGATE_MASTER_KEY").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot start") && err.contains("tenancy.database_url"), "{err}");
    assert!(!err.contains("hunter2secret"), "the database password leaked: {err}");
}

/// `FERROGATE_MODEL_DIR` alone moves the model cache for `config check` (and `serve`, which
/// loads the configuration the same way): the shipped config's relative model paths then point
/// into the directory the variable names.
#[test]
fn model_dir_variable_alone_moves_the_model_cache() {
    let out = ferrogate()
        .args(["config", "check", &repo("config/ferrogate.toml")])
        .env("FERROGATE_MODEL_DIR", "/nonexistent-fg-models")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent-fg-models/SmolLM2-135M-Instruct.Q4_1.gguf not found"), "{err}");
}

/// Structural problems (unknown key, unknown enum value, wrong type) are listed together with
/// the checks' problems: each with its line, the key path as written, and a "did you mean" for a
/// near miss; a bad URL is explained in plain words.
#[test]
fn config_check_lists_structural_problems_with_lines_and_suggestions() {
    let dir = std::env::temp_dir().join(format!("fg-cli-six-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("six.toml");
    std::fs::write(
        &file,
        "[server]\nlistn = \"127.0.0.1:8080\"\nbody_limit_bytes = \"big\"\n\n[log]\nformat = \"jsn\"\n\n\
         [backends.ol]\nkind = \"olama\"\nbase_url = \"http://127.0.0.1:11434\"\n\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"not a url\"\n\n[deployments.m]\nbackends = [\"upp\"]\n",
    )
    .unwrap();
    let out = ferrogate().args(["config", "check"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "6 problems",
        "line 2: server.listn: unknown key 'listn'; did you mean 'listen'?",
        "line 3: server.body_limit_bytes: must be a non-negative integer, not the string \"big\"",
        "line 6: log.format: 'jsn' is not one of",
        "did you mean 'json'?",
        "line 9: backends.ol.kind: 'olama' is not one of",
        "did you mean 'ollama'?",
        "line 14: backends.up: base_url 'not a url' is not a URL: it needs a scheme and a host",
        "line 17: deployments.m.backends: no backend named 'upp'; did you mean 'up'?",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    for rust in ["default.", "relative URL without a base", "expected `one of"] {
        assert!(!err.contains(rust), "{rust:?} in:\n{err}");
    }
}
