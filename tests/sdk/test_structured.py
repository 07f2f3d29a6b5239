"""Structured output, tool calls and log probabilities on the embedded engine, through the official
openai SDK (issue 20 items 5 and 6): `chat.completions.parse` with a pydantic model (the SDK sends a
strict `json_schema` and validates the answer against the model), tools built with
`openai.pydantic_function_tool` in a full round trip (call -> tool result -> answer), streamed tool
call deltas accumulated by the SDK's stream helper, and `logprobs`/`top_logprobs`.
"""

from __future__ import annotations

import json
from enum import Enum

import openai
import pydantic


class Genre(str, Enum):
    drama = "drama"
    comedy = "comedy"
    horror = "horror"


class Film(pydantic.BaseModel):
    title: str = pydantic.Field(max_length=40)
    year: int
    genre: Genre


class GetWeather(pydantic.BaseModel):
    """Current weather in a city."""

    city: str = pydantic.Field(max_length=30)


def test_parse_with_a_pydantic_schema(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Name a film as JSON."}],
        response_format=Film,
        temperature=0,
        max_tokens=96,
    )
    film = reply.choices[0].message.parsed
    assert isinstance(film, Film), reply.choices[0].message.content
    assert isinstance(film.genre, Genre)


def test_json_object_mode(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": 'Reply with a JSON object whose only key is "name", the name of a cat.'}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_tool_call_round_trip(client: openai.OpenAI, model: str) -> None:
    tools = [openai.pydantic_function_tool(GetWeather)]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client.chat.completions.parse(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=120,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "GetWeather"
    # The SDK validated the arguments against the strict schema.
    assert isinstance(call.function.parsed_arguments, GetWeather)

    messages.append(
        {
            "role": "assistant",
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"})
    answer = client.chat.completions.create(
        model=model, messages=messages, tools=tools, tool_choice="none", temperature=0, max_tokens=40
    )
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content


def test_streamed_tool_call_deltas_accumulate(client: openai.OpenAI, model: str) -> None:
    tools = [openai.pydantic_function_tool(GetWeather)]
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "GetWeather"}},
        temperature=0,
        max_tokens=80,
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in events
    assert "tool_calls.function.arguments.done" in events
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert isinstance(call.function.parsed_arguments, GetWeather)


def test_logprobs(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name a fruit."}],
        temperature=0,
        max_tokens=8,
        logprobs=True,
        top_logprobs=3,
    )
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert t.top_logprobs[0].token == t.token

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name a fruit."}],
        temperature=0,
        max_tokens=8,
        logprobs=True,
        stream=True,
    )
    streamed = [t for chunk in stream if chunk.choices and chunk.choices[0].logprobs for t in chunk.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
