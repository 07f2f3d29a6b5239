"""Chat completions through the official openai SDK, against the real binary and the real model.

What a client relies on: the response and chunk shapes the SDK parses, usage in every
non-streaming answer and in the final chunk when asked, stop sequences honoured and never
emitted (also when streamed), max_tokens exact, seeded sampling reproducible.
"""

from __future__ import annotations

import openai
import pytest

PROMPT = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]


def greedy(client: openai.OpenAI, model: str, **kwargs):
    args = {"model": model, "messages": PROMPT, "max_tokens": 40, "temperature": 0}
    args.update(kwargs)
    return client.chat.completions.create(**args)


def collect(stream) -> tuple[list, str]:
    """All chunks of a stream and the text of their content deltas."""
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


@pytest.fixture(scope="module")
def full_text(client: openai.OpenAI, model: str) -> str:
    """The greedy answer to PROMPT without any stop sequence (the reference for stop tests)."""
    reply = greedy(client, model)
    text = reply.choices[0].message.content
    assert text and len(text.split()) >= 4, f"the reference answer is too short to test stops: {text!r}"
    return text


def test_non_streaming_shape_and_usage(client: openai.OpenAI, model: str) -> None:
    reply = greedy(client, model, max_tokens=16)
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == model
    assert len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage is not None
    assert usage.prompt_tokens > 5
    assert 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_with_usage(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=PROMPT,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, text = collect(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == model for c in chunks)
    assert len({c.id for c in chunks}) == 1, "one id per stream"
    assert chunks[0].choices[0].delta.role == "assistant", "role delta first"
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"]), finishes
    last = chunks[-1]
    assert last.choices == [], "the usage chunk has empty choices"
    assert last.usage is not None
    assert 0 < last.usage.completion_tokens <= 16
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1]), "usage only in the final chunk"


def test_stream_equals_non_stream(client: openai.OpenAI, model: str, full_text: str) -> None:
    _, text = collect(greedy(client, model, stream=True))
    assert text == full_text


def test_streaming_without_usage_sends_no_usage_chunk(client: openai.OpenAI, model: str) -> None:
    chunks, _ = collect(greedy(client, model, max_tokens=8, stream=True))
    assert all(c.choices for c in chunks), "no empty-choices usage chunk unless asked"
    assert all(c.usage is None for c in chunks)


def _stop_at(full_text: str, word: int) -> str:
    """A stop sequence taken from the reference answer at its `word`-th word: two words when they
    appear together (a stop spanning several tokens, so partial matches must be held back)."""
    words = full_text.split()
    assert len(words) > word + 1, full_text
    pair = f"{words[word]} {words[word + 1]}"
    return pair if pair in full_text else words[word]


def _before(full_text: str, *stops: str) -> str:
    return full_text[: min(full_text.index(s) for s in stops)]


def test_stop_string_is_honoured_and_not_emitted(
    client: openai.OpenAI, model: str, full_text: str
) -> None:
    stop = _stop_at(full_text, 2)
    reply = greedy(client, model, stop=stop)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == _before(full_text, stop)


def test_stop_list_the_earliest_match_wins(
    client: openai.OpenAI, model: str, full_text: str
) -> None:
    early, late = _stop_at(full_text, 2), _stop_at(full_text, 6)
    assert full_text.index(early) < full_text.index(late), (early, late, full_text)
    reply = greedy(client, model, stop=["@@never-there@@", late, early])
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == _before(full_text, early)


def test_stop_is_not_emitted_when_streamed(
    client: openai.OpenAI, model: str, full_text: str
) -> None:
    stop = _stop_at(full_text, 2)
    chunks, text = collect(greedy(client, model, stop=[stop], stream=True))
    assert text == _before(full_text, stop)
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_token_limit_is_exact(client: openai.OpenAI, model: str, field: str) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
        temperature=0,
        **{field: 6},
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 6


def test_seeded_sampling_is_reproducible(client: openai.OpenAI, model: str) -> None:
    def sample(seed: int) -> str:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Tell me a short story about a dragon."}],
            max_tokens=24,
            temperature=1.0,
            top_p=0.95,
            seed=seed,
        )
        return reply.choices[0].message.content

    assert sample(1234) == sample(1234), "same seed, same text"
    distinct = {sample(1234), sample(7), sample(99)}
    assert len(distinct) > 1, "different seeds sample differently (the seed is not ignored)"


def test_conversation_roles_and_accepted_options(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": "What is my name?"},
        ],
        max_tokens=12,
        temperature=0.3,
        top_p=0.9,
        n=1,
        user="sdk-test-user",
        seed=3,
    )
    assert reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 20, "every turn reached the prompt"


def test_tool_role_messages_are_accepted(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 degrees."},
        ],
        max_tokens=16,
        temperature=0,
    )
    assert reply.choices[0].message.content
