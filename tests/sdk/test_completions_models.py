"""Legacy completions and the model list through the official openai SDK, and the seeds' simple
`/generate` and `/stream` endpoints over raw HTTP — against the real binary and the real model."""

from __future__ import annotations

import json

import httpx
import openai


def test_legacy_completion(client: openai.OpenAI, model: str) -> None:
    reply = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert reply.object == "text_completion"
    assert reply.id.startswith("cmpl-")
    assert reply.model == model
    choice = reply.choices[0]
    assert isinstance(choice.text, str) and choice.text
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_legacy_completion_streamed_equals_whole(client: openai.OpenAI, model: str) -> None:
    args = {"model": model, "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}
    whole = client.completions.create(**args).choices[0].text
    chunks = list(
        client.completions.create(**args, stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 12


def test_models_list_and_retrieve(client: openai.OpenAI, model: str) -> None:
    ids = [m.id for m in client.models.list()]
    assert model in ids
    m = client.models.retrieve(model)
    assert m.id == model
    assert m.object == "model"
    assert isinstance(m.created, int) and m.created > 0
    assert isinstance(m.owned_by, str)


def test_generate(http: httpx.Client, model: str) -> None:
    res = http.post("/generate", json={"prompt": "Say hello.", "max_tokens": 8, "temperature": 0})
    assert res.status_code == 200, res.text
    body = res.json()
    assert isinstance(body["text"], str) and body["text"]
    assert body["model"] == model, "the default deployment"
    assert body["finish_reason"] in ("stop", "length")
    assert 0 < body["usage"]["completion_tokens"] <= 8


def test_stream_endpoint_equals_generate(http: httpx.Client) -> None:
    req = {"prompt": "Say hello.", "max_tokens": 8, "temperature": 0}
    whole = http.post("/generate", json=req).json()["text"]
    with http.stream("POST", "/stream", json=req) as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: ") :] for line in res.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    frames = [json.loads(d) for d in data[:-1]]
    assert "".join(f["text"] for f in frames) == whole
    assert frames[-1]["finish_reason"] in ("stop", "length")


def test_generate_errors_are_openai_shaped(http: httpx.Client) -> None:
    res = http.post("/generate", json={"max_tokens": 8})
    assert res.status_code == 400
    err = res.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"
    assert "param" in err and "code" in err
