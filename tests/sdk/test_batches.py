"""Files + Batches through the official openai SDK, unchanged: `files.create(purpose="batch")`,
`batches.create/retrieve/list/cancel`, `files.content`; and a `batch.completed` webhook verified by
`client.webhooks.unwrap()` (Standard Webhooks signatures).

The gateway has tenancy on (a SQLite file in a temp dir) and serves the embedded SmolLM2 model;
each batch line runs through it as the key that created the batch.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import openai
import pytest
from conftest import MODEL, _model_path, _stop
from test_errors import _start_configured

MASTER = "sdk-batch-master-key-0123456789"


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        _Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def batch_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("batches")
    rest = f"""
[tenancy]
master_key = "{MASTER}"
database_url = "sqlite://{tmp}/data/ferrogate.db"

[batches]
tick_interval_secs = 1

[webhooks]
allow_private_destinations = true

[backends.{MODEL}]
kind = "embedded"
model_path = {json.dumps(str(_model_path()))}

[deployments.{MODEL}]
backends = ["{MODEL}"]
"""
    root, proc = _start_configured(tmp, "batches", "", rest)
    try:
        res = httpx.post(f"{root}/admin/v1/tenants", json={"name": "acme"}, headers=_master())
        assert res.status_code == 201, res.text
        yield root
    finally:
        _stop(proc)


def _master() -> dict:
    return {"authorization": f"Bearer {MASTER}"}


def _client(root: str) -> openai.OpenAI:
    res = httpx.post(f"{root}/admin/v1/keys", json={"tenant": "acme", "name": "sdk"}, headers=_master())
    assert res.status_code == 201, res.text
    return openai.OpenAI(base_url=f"{root}/v1", api_key=res.json()["key"], max_retries=0, timeout=60)


def _lines(n: int) -> bytes:
    rows = [
        {
            "custom_id": f"line-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": f"Say {i}"}], "max_tokens": 4},
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode()


def _wait(client: openai.OpenAI, batch_id: str, timeout: float = 120) -> openai.types.Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.5)


def test_files_and_a_batch_through_the_sdk(batch_gateway: str, receiver: str) -> None:
    hook = httpx.post(
        f"{batch_gateway}/admin/v1/webhooks",
        json={"url": receiver, "events": ["batch.completed"]},
        headers=_master(),
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    with _client(batch_gateway) as client:
        f = client.files.create(file=("in.jsonl", io.BytesIO(_lines(3))), purpose="batch")
        assert (f.object, f.purpose, f.bytes) == ("file", "batch", len(_lines(3)))
        assert client.files.retrieve(f.id).filename == "in.jsonl"
        assert f.id in [x.id for x in client.files.list()]

        batch = client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.status in ("validating", "in_progress")
        assert batch.id in [b.id for b in client.batches.list()]
        done = _wait(client, batch.id)
        assert done.status == "completed", done
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed) == (3, 3)
        assert done.output_file_id
        out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        assert sorted(x["custom_id"] for x in out) == ["line-0", "line-1", "line-2"]
        for x in out:
            assert x["response"]["status_code"] == 200
            assert x["response"]["body"]["object"] == "chat.completion"

        # The webhook, verified and parsed by the SDK.
        deadline = time.monotonic() + 30
        while not any(json.loads(b)["data"]["id"] == batch.id for _, b in _Receiver.received):
            assert time.monotonic() < deadline, "no batch.completed webhook"
            time.sleep(0.2)
        headers, body = next((h, b) for h, b in _Receiver.received if json.loads(b)["data"]["id"] == batch.id)
        event = client.webhooks.unwrap(body.decode(), headers, secret=secret)
        assert event.type == "batch.completed" and event.data.id == batch.id
        with pytest.raises(Exception):
            client.webhooks.unwrap(body.decode(), headers, secret="whsec_" + "A" * 32)

        client.files.delete(f.id)
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(f.id)


def test_cancel_and_invalid_input(batch_gateway: str) -> None:
    with _client(batch_gateway) as client:
        bad = client.files.create(file=("bad.jsonl", io.BytesIO(b'{"custom_id": "a"}\nnot json')), purpose="batch")
        failed = client.batches.create(
            input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert failed.status == "failed"
        assert failed.errors is not None and failed.errors.data and failed.errors.data[0].line is not None

        f = client.files.create(file=("in.jsonl", io.BytesIO(_lines(20))), purpose="batch")
        batch = client.batches.create(input_file_id=f.id, endpoint="/v1/completions", completion_window="24h")
        # Every line names /v1/chat/completions: the endpoint does not match, so validation fails.
        assert batch.status == "failed"
        batch = client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        cancelled = client.batches.cancel(batch.id)
        assert cancelled.status in ("cancelling", "cancelled", "completed")
        done = _wait(client, batch.id)
        assert done.status in ("cancelled", "completed")
        assert done.request_counts is not None
        assert done.request_counts.completed + done.request_counts.failed == done.request_counts.total == 20
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_nope")
