"""The Responses and Conversations APIs through the official openai SDK, against the real binary
and the embedded model (state in the SQLite file conftest configures).

What a client relies on: `client.responses.create(...)` and its `output_text`, multi-turn with
`previous_response_id` and with `conversation`, the typed stream events in order with increasing
`sequence_number`, `responses.retrieve/delete/input_items.list`, and
`client.conversations.create/retrieve/update/delete` with `conversations.items.create/list`;
`responses.create(background=True)` polled with `responses.retrieve` and `responses.cancel` (on a
gateway with tenancy on: background responses are jobs of its queue).
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from conftest import MODEL, _model_path, _stop
from test_errors import _start_configured


def ask(client: openai.OpenAI, model: str, text: str, **kwargs):
    args = {"model": model, "input": text, "max_output_tokens": 16, "temperature": 0}
    args.update(kwargs)
    return client.responses.create(**args)


def test_create_and_output_text(client: openai.OpenAI, model: str) -> None:
    r = ask(client, model, "Say hello.", instructions="You are a helpful assistant.")
    assert r.id.startswith("resp_")
    assert r.object == "response"
    assert r.status in ("completed", "incomplete")
    assert r.model == model
    assert isinstance(r.output_text, str) and r.output_text
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.output[0].content[0].type == "output_text"
    assert r.usage is not None and r.usage.input_tokens > 0
    assert 0 < r.usage.output_tokens <= 16
    assert r.usage.input_tokens_details.cached_tokens >= 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_previous_response_retrieve_input_items_delete(client: openai.OpenAI, model: str) -> None:
    first = ask(client, model, "My name is Ada. Remember it.")
    second = ask(client, model, "What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    # The chain was sent: the prompt of turn 2 holds turn 1's input and output too.
    assert second.usage.input_tokens > first.usage.input_tokens

    got = client.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == second.output_text

    items = client.responses.input_items.list(second.id)
    texts = [c.text for item in items.data for c in item.content]
    assert texts == ["What is my name?"]

    deleted = client.responses.delete(first.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_streaming_events(client: openai.OpenAI, model: str) -> None:
    events = list(ask(client, model, "Count to five.", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert "response.output_text.delta" in kinds
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        kinds[-1],
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert final.output_text == deltas and deltas
    # Stored before the terminal event: retrievable at once.
    assert client.responses.retrieve(final.id).output_text == deltas


def test_conversations_and_items(client: openai.OpenAI, model: str) -> None:
    conv = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Hello!"}], metadata={"topic": "demo"}
    )
    assert conv.id.startswith("conv_") and conv.metadata == {"topic": "demo"}
    assert client.conversations.retrieve(conv.id).id == conv.id

    r1 = ask(client, model, "What is 2 + 2?", conversation=conv.id)
    r2 = ask(client, model, "And 3 + 3?", conversation=conv.id)
    assert r2.usage.input_tokens > r1.usage.input_tokens, "turn 2 carries turn 1"

    items = client.conversations.items.list(conv.id, order="asc")
    roles = [i.role for i in items.data]
    assert roles == ["user", "user", "assistant", "user", "assistant"]
    assert items.data[2].content[0].text == r1.output_text
    assert items.data[4].content[0].text == r2.output_text

    added = client.conversations.items.create(
        conv.id, items=[{"type": "message", "role": "user", "content": "one more"}]
    )
    assert added.data[0].content[0].text == "one more"

    updated = client.conversations.update(conv.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}
    deleted = client.conversations.delete(conv.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)


def test_errors_are_openai_shaped(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError):
        ask(client, model, "hi", previous_response_id="resp_0123456789abcdef0123456789abcdef")
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, model, "hi " * 20000, truncation="disabled")
    assert e.value.code == "context_length_exceeded"


# === background responses (tenancy on: they run as jobs of the durable queue) ===

BG_MASTER = "sdk-background-master-key-0123456789"


@pytest.fixture(scope="module")
def background_client(tmp_path_factory: pytest.TempPathFactory):
    """A gateway with tenancy on (SQLite in a temp dir), one background worker, the embedded model;
    a client with a tenant's key."""
    tmp = tmp_path_factory.mktemp("background")
    rest = f"""
[tenancy]
master_key = "{BG_MASTER}"
database_url = "sqlite://{tmp}/data/ferrogate.db"

[batches]
concurrency = 1

[backends.{MODEL}]
kind = "embedded"
model_path = {json.dumps(str(_model_path()))}

[deployments.{MODEL}]
backends = ["{MODEL}"]
"""
    root, proc = _start_configured(tmp, "background", "", rest)
    master = {"authorization": f"Bearer {BG_MASTER}"}
    try:
        res = httpx.post(f"{root}/admin/v1/tenants", json={"name": "acme"}, headers=master)
        assert res.status_code == 201, res.text
        res = httpx.post(f"{root}/admin/v1/keys", json={"tenant": "acme", "name": "sdk"}, headers=master)
        assert res.status_code == 201, res.text
        with openai.OpenAI(base_url=f"{root}/v1", api_key=res.json()["key"], max_retries=0, timeout=60) as c:
            yield c
    finally:
        _stop(proc)


def _settled(client: openai.OpenAI, rid: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        r = client.responses.retrieve(rid)
        if not seen or seen[-1] != r.status:
            seen.append(r.status)
        if r.status not in ("queued", "in_progress"):
            return r, seen
        assert time.monotonic() < deadline, f"still {r.status}"
        time.sleep(0.2)


def test_background_create_poll_and_cancel(background_client: openai.OpenAI) -> None:
    first = ask(background_client, MODEL, "Say hello.", background=True, max_output_tokens=48)
    assert first.id.startswith("resp_") and first.background is True
    assert first.status == "queued" and first.output == []
    # The only worker is busy with (or about to take) the first: the second waits in the queue.
    second = ask(background_client, MODEL, "Say goodbye.", background=True)
    cancelled = background_client.responses.cancel(second.id)
    assert cancelled.id == second.id and cancelled.status == "cancelled"

    done, seen = _settled(background_client, first.id)
    assert done.status in ("completed", "incomplete"), seen
    assert set(seen) <= {"queued", "in_progress", "completed", "incomplete"}, seen
    assert isinstance(done.output_text, str) and done.output_text
    assert done.usage is not None and done.usage.output_tokens > 0

    gone, _ = _settled(background_client, second.id)
    assert gone.status == "cancelled" and gone.output == []


def test_background_without_tenancy_is_refused(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, model, "Say hello.", background=True)
    assert "tenancy" in str(e.value) and e.value.body.get("param") == "background"
