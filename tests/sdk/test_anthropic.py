"""Anthropic's Messages API through the official anthropic SDK, against the real binary and the
real model (the embedded SmolLM2 engine behind the OpenAI-chat pivot).

What a client relies on: the Message and stream-event shapes the SDK parses (its `messages.stream`
helper included), the exact event order, `stop_reason` mapping, usage, `count_tokens`, and errors
raised as the SDK's own exception classes from Anthropic-shaped bodies.
"""

from __future__ import annotations

import anthropic
import httpx
import pytest

PROMPT = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
# The current SDK has no sampling parameters in its signature (newer Claude models fix them);
# the Messages API still takes them, so greedy decoding goes in the body as any client may send it.
GREEDY = {"temperature": 0}


def greedy(client: anthropic.Anthropic, model: str, **kwargs):
    args = {"model": model, "messages": PROMPT, "max_tokens": 24, "extra_body": GREEDY}
    args.update(kwargs)
    return client.messages.create(**args)


def test_message_shape_usage_and_stop_reason(anthropic_client: anthropic.Anthropic, model: str) -> None:
    msg = greedy(anthropic_client, model, system="You count.", metadata={"user_id": "u-1"}, extra_body={**GREEDY, "top_k": 1})
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert msg.model == model
    assert len(msg.content) == 1 and msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0
    assert 0 < msg.usage.output_tokens <= 24


def test_max_tokens_maps_to_max_tokens_stop_reason(anthropic_client: anthropic.Anthropic, model: str) -> None:
    msg = greedy(anthropic_client, model, max_tokens=5)
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 5


def test_system_as_blocks_and_multi_turn(anthropic_client: anthropic.Anthropic, model: str) -> None:
    msg = anthropic_client.messages.create(
        model=model,
        max_tokens=8,
        extra_body=GREEDY,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"},
        ],
    )
    assert msg.content[0].text


def test_stream_event_order_and_text_equal_to_whole(anthropic_client: anthropic.Anthropic, model: str) -> None:
    whole = greedy(anthropic_client, model)
    events = list(greedy(anthropic_client, model, stream=True))
    kinds = [e.type for e in events]
    # The SDK drops `ping` events (test_raw_stream_has_ping checks the wire).
    assert kinds[:2] == ["message_start", "content_block_start"], kinds
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"], kinds
    assert set(kinds[2:-3]) == {"content_block_delta"}, kinds
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == whole.content[0].text
    delta = events[-2]
    assert delta.delta.stop_reason == whole.stop_reason
    assert delta.usage.output_tokens == whole.usage.output_tokens


def test_raw_stream_has_ping(http: httpx.Client, model: str) -> None:
    body = {"model": model, "messages": PROMPT, "max_tokens": 8, "stream": True, **GREEDY}
    headers = {"x-api-key": "unused", "anthropic-version": "2023-06-01"}
    with http.stream("POST", "/v1/messages", json=body, headers=headers) as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        names = [line.removeprefix("event: ") for line in res.iter_lines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"], names
    assert names[-1] == "message_stop"


def test_stream_helper_gives_the_final_message(anthropic_client: anthropic.Anthropic, model: str) -> None:
    whole = greedy(anthropic_client, model)
    with anthropic_client.messages.stream(
        model=model, messages=PROMPT, max_tokens=24, extra_body=GREEDY
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == whole.content[0].text
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_stop_sequence_is_honoured(anthropic_client: anthropic.Anthropic, model: str) -> None:
    full = greedy(anthropic_client, model).content[0].text
    stop = "4"
    assert stop in full, f"the reference answer does not reach 4: {full!r}"
    msg = greedy(anthropic_client, model, stop_sequences=[stop])
    assert stop not in msg.content[0].text
    assert full.startswith(msg.content[0].text)
    assert len(msg.content[0].text) < len(full)
    # The embedded engine does not report which sequence matched: end_turn, not stop_sequence.
    assert msg.stop_reason in ("end_turn", "stop_sequence")


def test_count_tokens(anthropic_client: anthropic.Anthropic, model: str) -> None:
    short = anthropic_client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hi"}])
    longer = anthropic_client.messages.count_tokens(model=model, messages=PROMPT, system="You count.")
    assert 0 < short.input_tokens < longer.input_tokens


def test_errors_are_the_sdks_exceptions(anthropic_client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        greedy(anthropic_client, "no-such-model")
    assert nf.value.status_code == 404
    assert nf.value.body["type"] == "not_found_error" or nf.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        greedy(anthropic_client, model, messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    # A tool schema keyword the embedded engine's grammar cannot enforce: a clear 400 naming it.
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    tools = [{"name": "count", "input_schema": schema}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        greedy(anthropic_client, model, tools=tools)
    assert "minimum" in refused.value.message
