"""Errors as the official openai SDK sees them: each gateway error maps to the SDK exception type
a client catches, with `code`, `param` and `type` filled from the OpenAI-shaped body.

Two more gateways, without a model, start from this file: `keyed_gateway` requires an API key
(the 401 cases; a backend on a closed port is enough, the key check comes first), and
`faulty_gateway` sits in front of a tiny fake upstream that dies mid-stream, stalls or fails, so
the SDK's view of upstream failures is checked too (a mid-stream failure must raise, not end the
iteration as if the answer were complete).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest
from conftest import _binary, _free_port, _stop, _tail

KEY = "sk-ferrogate-sdk-test-0123456789"
USER = [{"role": "user", "content": "hi"}]


def _error_body(exc: openai.APIStatusError) -> dict:
    body = exc.body
    assert isinstance(body, dict), f"not an OpenAI error body: {exc.response.text}"
    assert body.get("message") and body.get("type"), body
    assert "param" in body and "code" in body, body
    return body


# === with the shared gateway ===


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=USER, max_tokens=4)
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"
    _error_body(info.value)


def test_unknown_model_when_streaming_fails_before_the_stream(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=USER, stream=True)
    assert info.value.code == "model_not_found"


def test_retrieve_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("override", "param"),
    [
        ({"temperature": 3.5}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_invalid_fields_are_bad_requests_naming_the_param(
    client: openai.OpenAI, model: str, override: dict, param: str
) -> None:
    args = {"model": model, "messages": USER, "max_tokens": 4, **override}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**args)
    assert info.value.status_code == 400
    assert info.value.param == param, _error_body(info.value)
    assert info.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("override", "param", "message"),
    [
        ({"max_tokens": -1}, "max_tokens", "max_tokens must be a non-negative integer"),
        ({"temperature": "hot"}, "temperature", "temperature must be a number"),
        ({"stream": "yes"}, "stream", "stream must be true or false"),
    ],
)
def test_type_errors_speak_the_api_not_rust(
    http: httpx.Client, model: str, override: dict, param: str, message: str
) -> None:
    body = {"model": model, "messages": USER, "max_tokens": 4, **override}
    res = http.post("/v1/chat/completions", json=body)
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error", err
    assert err["message"].startswith(message), err
    for rust in ("u32", "f32", "line 1 column", "invalid type", "invalid value"):
        assert rust not in err["message"], err


def test_prompt_over_the_context_is_a_bad_request(client: openai.OpenAI, model: str) -> None:
    long = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=long, max_tokens=4)
    assert info.value.code == "context_length_exceeded", _error_body(info.value)


def test_legacy_completion_errors(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt="x", temperature=9)
    assert info.value.param == "temperature"


def test_malformed_json_is_400_in_openai_shape(http: httpx.Client) -> None:
    res = http.post(
        "/v1/chat/completions",
        content=b'{"model": "smollm2", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert res.status_code == 400
    err = res.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]


# === more gateways, without a model ===


def _start_configured(tmp: Path, name: str, server: str, rest: str, attempts: int = 3) -> tuple:
    """Starts ferrogate with `[server]` lines `server` plus tables `rest` on a free port; waits
    for /health (there is no model to load). Returns (root url, process)."""
    log_path = tmp / f"{name}.log"
    for attempt in range(attempts):
        port = _free_port()
        config = tmp / f"{name}-{attempt}.toml"
        log_path = tmp / f"{name}-{attempt}.log"
        config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n{server}\n{rest}')
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(_binary()), "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                    return root, proc
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        _stop(proc)
        if "in use" not in _tail(log_path, 20).lower():
            break
    raise RuntimeError(f"ferrogate ({name}) did not start:\n{_tail(log_path, 40)}")


# === a gateway with static keys ===


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Root URL of a ferrogate that requires `KEY`."""
    rest = """
[backends.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 200

[deployments.keyed]
backends = ["up"]
"""
    root, proc = _start_configured(
        tmp_path_factory.mktemp("keyed"), "keyed", f'api_keys = ["{KEY}"]', rest
    )
    try:
        yield root
    finally:
        _stop(proc)


def test_wrong_key_is_an_authentication_error(keyed_gateway: str) -> None:
    with openai.OpenAI(base_url=f"{keyed_gateway}/v1", api_key="sk-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as info:
            c.chat.completions.create(model="keyed", messages=USER)
        assert info.value.status_code == 401
        assert info.value.code == "invalid_api_key"
        assert KEY not in info.value.response.text
        with pytest.raises(openai.AuthenticationError):
            c.models.list()


def test_missing_key_is_401_but_probes_stay_open(keyed_gateway: str) -> None:
    res = httpx.get(f"{keyed_gateway}/v1/models")
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{keyed_gateway}/health").status_code == 200


def test_right_key_is_let_through(keyed_gateway: str) -> None:
    with openai.OpenAI(base_url=f"{keyed_gateway}/v1", api_key=KEY, max_retries=0) as c:
        assert [m.id for m in c.models.list()] == ["keyed"]
    res = httpx.get(f"{keyed_gateway}/v1/models", headers={"x-api-key": KEY})
    assert res.status_code == 200


# === a gateway in front of a failing upstream ===


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class _FakeUpstream(BaseHTTPRequestHandler):
    """OpenAI-shaped upstream whose behaviour is chosen by the request's `model` (the deployment's
    `upstream_model`): `dies` streams two tokens then drops the connection, `stalls` never
    answers, `busy` answers 429 with Retry-After."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b'{"object": "list", "data": []}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        mode = req["model"]
        if mode == "stalls":
            self.server.release.wait(30)  # type: ignore[attr-defined]
            self.close_connection = True
            return
        if mode == "busy":
            body = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
            self.send_response(429)
            self.send_header("retry-after", "2")
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        # "dies": a chunked SSE body cut off without its terminating chunk.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        frames = [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hello"}),
            _chunk({"content": " there"}),
        ]
        for frame in frames:
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def faulty_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Root URL of a ferrogate whose deployments `dies`, `stalls`, `busy` fail in those ways."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _FakeUpstream)
    upstream.daemon_threads = True
    upstream.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
    rest = f"""
[backends.up]
kind = "openai"
base_url = "{base}"
first_token_timeout_ms = 500
total_timeout_ms = 1000
"""
    for mode in ("dies", "stalls", "busy"):
        rest += f'\n[deployments.{mode}]\nbackends = ["up"]\nupstream_model = "{mode}"\n'
    root, proc = _start_configured(tmp_path_factory.mktemp("faulty"), "faulty", "", rest)
    try:
        yield root
    finally:
        _stop(proc)
        upstream.release.set()  # type: ignore[attr-defined]
        upstream.shutdown()
        upstream.server_close()


@pytest.fixture(scope="module")
def faulty_client(faulty_gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{faulty_gateway}/v1", api_key="unused", max_retries=0, timeout=10
    ) as c:
        yield c


def test_upstream_dying_mid_stream_raises_in_the_sdk(faulty_client: openai.OpenAI) -> None:
    stream = faulty_client.chat.completions.create(model="dies", messages=USER, stream=True)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello there", "the tokens before the failure were delivered"
    body = info.value.body
    assert isinstance(body, dict) and body.get("code") == "backend_error", body
    assert "127.0.0.1" not in str(body), "no upstream address in the error"


def test_upstream_stall_is_a_504_before_the_stream(faulty_client: openai.OpenAI) -> None:
    for stream in (True, False):
        with pytest.raises(openai.InternalServerError) as info:
            faulty_client.chat.completions.create(model="stalls", messages=USER, stream=stream)
        assert info.value.status_code == 504
        assert info.value.code == "upstream_timeout"


def test_upstream_rate_limit_is_a_503_with_retry_after(faulty_client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        faulty_client.chat.completions.create(model="busy", messages=USER)
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "backend_overloaded"
