"""Fixtures for the SDK conformance tests (openai, anthropic, ollama): one real ferrogate process per test session.

The gateway is the debug binary that `make test` builds (`make build`: the same cargo build as the
Rust tests, so both share one compile of llama.cpp), started with
`serve --config <tmp toml>` on a free port, serving the embedded SmolLM2 model as deployment
`smollm2` and the all-MiniLM-L6-v2 embedding model as `minilm`. Tests talk to it only over
HTTP, as any client would: through the official `openai` SDK (`client`), the official `anthropic` SDK (`anthropic_client`, Messages API), the official
`ollama` client (`ollama_client`, the Ollama API) or raw `httpx` (`http`) where they need status
codes and bodies the SDKs hide.

Environment:
  FERROGATE_BIN            binary to run (default: target/debug/ferrogate in this repo)
  FERROGATE_MODEL_DIR      model cache (default: ~/.cache/ferrogate/models; `make test` fills it)
  FERROGATE_READY_TIMEOUT  seconds to wait for GET /ready (default 120: model load + warm-up)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The embedding model, deployment `minilm` (tests/sdk/test_embeddings.py), beside MODEL_FILE.
EMBED_MODEL = "minilm"
EMBED_FILE = "all-MiniLM-L6-v2.gguf"
LOG_TAIL_LINES = 60

# Set once the gateway started: the terminal summary prints its log tail when a test failed.
_LOG_PATH: Path | None = None


@dataclasses.dataclass(frozen=True)
class Gateway:
    """A running ferrogate: where it listens and where its log goes."""

    root_url: str  # http://127.0.0.1:PORT  (/health, /ready, /generate, ...)
    base_url: str  # http://127.0.0.1:PORT/v1 (what the openai SDK wants)
    model: str  # the deployment name the config serves
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


# === helpers ===


def _binary() -> Path:
    path = Path(os.environ.get("FERROGATE_BIN") or REPO / "target" / "debug" / "ferrogate")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.exit(
            f"ferrogate binary not found at {path}: run `make build` "
            "(make test does) or set FERROGATE_BIN",
            returncode=2,
        )
    return path


def _model_path() -> Path:
    model_dir = Path(
        os.environ.get("FERROGATE_MODEL_DIR") or Path.home() / ".cache" / "ferrogate" / "models"
    )
    path = model_dir / MODEL_FILE
    for needed in (path, model_dir / EMBED_FILE):
        if not needed.is_file():
            pytest.exit(f"model not found at {needed}: run scripts/fetch-models.sh", returncode=2)
    return path


def _free_port() -> int:
    # The kernel picks a free port; the tiny window before the gateway binds it is acceptable here
    # (a clash shows up as an early exit, and the start is retried on a new port).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(path: Path, port: int, model_path: Path) -> None:
    path.write_text(
        f"""\
[server]
listen = "127.0.0.1:{port}"

[backends.{MODEL}]
kind = "embedded"
model_path = {json.dumps(str(model_path))}

[deployments.{MODEL}]
backends = ["{MODEL}"]

[backends.{EMBED_MODEL}]
kind = "embedded_embeddings"
model_path = {json.dumps(str(model_path.parent / EMBED_FILE))}
threads = 1

[deployments.{EMBED_MODEL}]
backends = ["{EMBED_MODEL}"]

# The Responses and Conversations APIs keep their state here (tests/sdk/test_responses.py).
[conversations]
database_url = {json.dumps("sqlite://" + str(path.parent / "conversations.db"))}
"""
    )


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"(no log: {err})"
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(proc: subprocess.Popen[bytes], root_url: str, timeout: float) -> str | None:
    """Poll GET /ready until 200. Returns None when ready, else why it is not."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                return f"exited with status {code} before it was ready"
            try:
                resp = http.get(f"{root_url}/ready")
                if resp.status_code == 200:
                    return None
                last = f"/ready answered {resp.status_code}: {resp.text[:300]}"
            except httpx.HTTPError as err:
                last = f"/ready: {type(err).__name__}"
            time.sleep(0.1)
    return f"not ready after {timeout:.0f} s (last: {last})"


def _stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM (graceful shutdown), then SIGKILL if it outlives the grace period."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start(tmp: Path, attempts: int = 3) -> Gateway:
    binary, model_path = _binary(), _model_path()
    timeout = float(os.environ.get("FERROGATE_READY_TIMEOUT", "120"))
    env = {k: v for k, v in os.environ.items() if k != "FERROGATE_BIN"}
    env.setdefault("RUST_LOG", "info")
    failure = ""
    for attempt in range(1, attempts + 1):
        port = _free_port()
        config = tmp / f"ferrogate-{attempt}.toml"
        log_path = tmp / f"ferrogate-{attempt}.log"
        _write_config(config, port, model_path)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(binary), "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
            )
        root_url = f"http://127.0.0.1:{port}"
        why = _wait_ready(proc, root_url, timeout)
        if why is None:
            return Gateway(root_url, f"{root_url}/v1", MODEL, log_path, proc)
        _stop(proc)
        failure = f"{binary} {why}\n--- last lines of {log_path} ---\n{_tail(log_path, LOG_TAIL_LINES)}"
        port_clash = "in use" in _tail(log_path, LOG_TAIL_LINES).lower()
        if not port_clash:
            break
    raise RuntimeError(f"ferrogate did not start: {failure}")


# === fixtures ===


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One ferrogate for the whole session, stopped (gracefully) at the end."""
    global _LOG_PATH
    gw = _start(tmp_path_factory.mktemp("ferrogate"))
    _LOG_PATH = gw.log_path
    try:
        yield gw
    finally:
        _stop(gw.process)


@pytest.fixture(scope="session")
def base_url(gateway: Gateway) -> str:
    """http://127.0.0.1:PORT/v1"""
    return gateway.base_url


@pytest.fixture(scope="session")
def model(gateway: Gateway) -> str:
    """The deployment name to send as `model`."""
    return gateway.model


@pytest.fixture(scope="session")
def embed_model() -> str:
    """The embedding deployment's name."""
    return EMBED_MODEL


@pytest.fixture(scope="session")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    """The official openai SDK pointed at the gateway (no retries: tests see every error)."""
    with openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def anthropic_client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    """The official anthropic SDK pointed at the gateway's root (it adds `/v1/messages`); no retries."""
    with anthropic.Anthropic(base_url=gateway.root_url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def ollama_client(gateway: Gateway) -> ollama.Client:
    """The official ollama client pointed at the gateway (it adds `/api/...`)."""
    return ollama.Client(host=gateway.root_url, timeout=60)


@pytest.fixture(scope="session")
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    """Raw HTTP at the gateway's root, for status codes, headers and error bodies."""
    with httpx.Client(base_url=gateway.root_url, timeout=60) as c:
        yield c


# === reporting ===


@pytest.fixture
def browser():
    """Headless Chromium through selenium (scripts/setup.sh --test installs both)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium / chromedriver not found: run scripts/setup.sh --test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        opts.add_argument(arg)
    b = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    try:
        yield b
    finally:
        b.quit()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    """When anything failed, show the end of the gateway's log next to the failures."""
    if _LOG_PATH is None or exitstatus == 0:
        return
    terminalreporter.section(f"ferrogate log (last {LOG_TAIL_LINES} lines of {_LOG_PATH})")
    terminalreporter.write_line(_tail(_LOG_PATH, LOG_TAIL_LINES))
