"""The Responses and Conversations APIs through the official openai SDK, against the real binary
and the embedded model (state in the SQLite file conftest configures).

What a client relies on: `client.responses.create(...)` and its `output_text`, multi-turn with
`previous_response_id` and with `conversation`, the typed stream events in order with increasing
`sequence_number`, `responses.retrieve/delete/input_items.list`, and
`client.conversations.create/retrieve/update/delete` with `conversations.items.create/list`;
`responses.create(background=True)` polled with `responses.retrieve` and `responses.cancel` (on a
gateway with tenancy on: background responses are jobs of its queue); function calling (`tools`,
`function_call` output items, `function_call_output` input, the argument stream events) over an
OpenAI-compatible upstream that calls tools.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


# === function calling (an OpenAI-compatible upstream that calls tools: the embedded engine refuses them) ===

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def _tool_chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1, "model": "fake",
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


class _ToolUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream that asks for `get_weather(city="Paris")` until the request
    carries a tool result, then answers `It is <result>.` (whole or streamed); keeps the last
    request body in `server.last`."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.last = req  # type: ignore[attr-defined]
        last = req["messages"][-1]
        usage = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
        if last["role"] == "tool":
            text = f"It is {last['content']}."
            whole = {"role": "assistant", "content": text}
            frames = [_tool_chunk({"role": "assistant", "content": ""}), _tool_chunk({"content": text}),
                      _tool_chunk({}, "stop")]
            finish = "stop"
        else:
            call = {"id": "call_sdk1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
            whole = {"role": "assistant", "content": None, "tool_calls": [call]}
            first = dict(call, index=0, function={"name": "get_weather", "arguments": ""})
            frames = [_tool_chunk({"role": "assistant", "content": ""}), _tool_chunk({"tool_calls": [first]})]
            frames += [_tool_chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})
                       for a in ('{"city":', '"Paris"}')]
            frames.append(_tool_chunk({}, "tool_calls"))
            finish = "tool_calls"
        if req.get("stream"):
            frames += [_tool_chunk({}, usage=usage), b"data: [DONE]\n\n"]
            body = b"".join(frames)
            ctype = "text/event-stream"
        else:
            body = json.dumps({"id": "chatcmpl-tools", "object": "chat.completion", "created": 1, "model": "fake",
                               "choices": [{"index": 0, "message": whole, "finish_reason": finish}],
                               "usage": usage}).encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def tool_gateway(tmp_path_factory: pytest.TempPathFactory):
    """(client, upstream): a gateway whose deployment `tools` is `_ToolUpstream`."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _ToolUpstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    tmp = tmp_path_factory.mktemp("tools")
    rest = f"""
[backends.up]
kind = "openai"
base_url = "http://127.0.0.1:{upstream.server_address[1]}/v1"

[deployments.tools]
backends = ["up"]

[conversations]
database_url = "sqlite://{tmp}/conversations.db"
"""
    root, proc = _start_configured(tmp, "tools", "", rest)
    try:
        with openai.OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0, timeout=30) as c:
            yield c, upstream
    finally:
        _stop(proc)
        upstream.shutdown()
        upstream.server_close()


def test_function_call_and_its_output(tool_gateway) -> None:
    client, upstream = tool_gateway
    r = client.responses.create(model="tools", input="Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required")
    assert upstream.last["tools"][0]["function"]["name"] == "get_weather"
    assert upstream.last["tool_choice"] == "required"
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id == "call_sdk1" and call.id.startswith("fc_")
    assert r.output_text == ""

    # The SDK's documented loop: send the call's result back with previous_response_id.
    done = client.responses.create(
        model="tools",
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
        tools=[WEATHER_TOOL],
    )
    assert done.output_text == "It is 18C."
    roles = [m["role"] for m in upstream.last["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assert upstream.last["messages"][1]["tool_calls"][0]["id"] == "call_sdk1"
    items = client.responses.input_items.list(done.id)
    assert [i.type for i in items.data] == ["function_call_output"]


def test_streamed_function_call_in_a_conversation(tool_gateway) -> None:
    client, upstream = tool_gateway
    conv = client.conversations.create()
    events = list(client.responses.create(model="tools", input="Weather in Paris?", tools=[WEATHER_TOOL],
                                          conversation=conv.id, stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds, kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert deltas == done.arguments == '{"city":"Paris"}'
    final = events[-1]
    assert final.type == "response.completed"
    call = final.response.output[0]
    assert call.type == "function_call" and call.call_id == "call_sdk1"

    # The conversation holds the call; the result continues it as the next turn's input.
    # (The SDK's input param type wants a list here, as for any item.)
    answer = client.responses.create(
        model="tools", conversation=conv.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "20C"}],
    )
    assert answer.output_text == "It is 20C."
    items = client.conversations.items.list(conv.id, order="asc")
    assert [i.type for i in items.data] == ["message", "function_call", "function_call_output", "message"]
    assert items.data[1].name == "get_weather" and items.data[2].output == "20C"


def test_the_embedded_engine_calls_a_required_tool(client: openai.OpenAI, model: str) -> None:
    # Grammar-constrained tool calling on the embedded engine (docs/ENGINE.md): a required call
    # comes back as a function_call item whose arguments parse and name the schema's field.
    r = ask(client, model, "Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required", max_output_tokens=64)
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls, r.output
    assert calls[0].name == "get_weather" and calls[0].call_id
    assert "city" in json.loads(calls[0].arguments)
