"""The Ollama API through the official ollama Python client, against the real binary and the
real model (the embedded SmolLM2 engine behind the OpenAI-chat pivot).

What a client relies on: chat and generate, streamed (the default, NDJSON) and whole, with
Ollama's options and `keep_alive`; list, show, ps; errors raised as `ollama.ResponseError` with
the gateway's status and Ollama's `{"error": …}` message.
"""

from __future__ import annotations

import ollama
import pytest

MESSAGES = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
OPTIONS = {"num_predict": 16, "temperature": 0, "top_k": 1, "seed": 1, "num_ctx": 1024}


def test_chat_whole(ollama_client: ollama.Client, model: str) -> None:
    r = ollama_client.chat(model=model, messages=MESSAGES, options=OPTIONS, keep_alive="5m")
    assert r.model == model
    assert r.done is True
    assert r.done_reason in ("stop", "length")
    assert r.message.role == "assistant" and r.message.content
    assert r.prompt_eval_count and r.prompt_eval_count > 0
    assert r.eval_count and 0 < r.eval_count <= 16
    assert r.total_duration and r.total_duration > 0


def test_chat_stream_equals_whole(ollama_client: ollama.Client, model: str) -> None:
    whole = ollama_client.chat(model=model, messages=MESSAGES, options=OPTIONS)
    parts = list(ollama_client.chat(model=model, messages=MESSAGES, options=OPTIONS, stream=True))
    assert all(not p.done for p in parts[:-1])
    last = parts[-1]
    assert last.done is True
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert last.eval_count == whole.eval_count
    assert last.done_reason == whole.done_reason


def test_num_predict_is_exact(ollama_client: ollama.Client, model: str) -> None:
    r = ollama_client.chat(model=model, messages=MESSAGES, options={**OPTIONS, "num_predict": 4})
    assert r.done_reason == "length"
    assert r.eval_count == 4


def test_generate_whole_and_stream(ollama_client: ollama.Client, model: str) -> None:
    whole = ollama_client.generate(model=model, prompt="The capital of France is", options=OPTIONS)
    assert whole.done is True and whole.response
    parts = list(ollama_client.generate(model=model, prompt="The capital of France is", options=OPTIONS, stream=True))
    assert parts[-1].done is True
    assert "".join(p.response for p in parts) == whole.response


def test_list_show_ps(ollama_client: ollama.Client, model: str) -> None:
    names = [m.model for m in ollama_client.list().models]
    assert model in names
    shown = ollama_client.show(model)
    assert "completion" in (shown.capabilities or [])
    running = [m.model for m in ollama_client.ps().models]
    assert model in running


def test_errors_are_response_errors(ollama_client: ollama.Client, model: str) -> None:
    with pytest.raises(ollama.ResponseError) as nf:
        ollama_client.chat(model="no-such-model", messages=MESSAGES)
    assert nf.value.status_code == 404
    assert "no-such-model" in nf.value.error
    with pytest.raises(ollama.ResponseError) as nf_stream:
        list(ollama_client.chat(model="no-such-model", messages=MESSAGES, stream=True))
    assert nf_stream.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as emb:
        ollama_client.embed(model=model, input="hello")
    assert emb.value.status_code == 400, "a chat model does not embed"
    assert "does not serve embeddings" in emb.value.error
