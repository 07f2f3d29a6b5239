"""Embeddings through the official clients, against the real binary and the real
all-MiniLM-L6-v2 model (deployment `minilm`, run in process by llama.cpp).

What a client relies on: `client.embeddings.create` with one text, several texts and token
ids; the SDK's default base64 encoding decoded to the same vectors as `encoding_format="float"`;
usage; `dimensions` refused clearly; ollama's `embed` and `embeddings`; and vectors that mean
something (a paraphrase is closer than an unrelated sentence).
"""

from __future__ import annotations

import math

import ollama
import openai
import pytest


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_create_one_and_many(client: openai.OpenAI, embed_model: str) -> None:
    one = client.embeddings.create(model=embed_model, input="A man is playing a guitar.")
    assert one.object == "list" and one.model == embed_model
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    assert one.usage.prompt_tokens == one.usage.total_tokens and one.usage.prompt_tokens > 2
    many = client.embeddings.create(
        model=embed_model,
        input=[
            "A man is playing a guitar.",
            "Someone is playing an acoustic guitar.",
            "The stock market fell sharply this morning.",
        ],
    )
    assert [d.index for d in many.data] == [0, 1, 2]
    v = [d.embedding for d in many.data]
    assert _cos(v[0], one.data[0].embedding) > 0.9999
    assert _cos(v[0], v[1]) > 0.6 > 0.3 > _cos(v[0], v[2])


def test_base64_default_equals_float(client: openai.OpenAI, embed_model: str) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    default = client.embeddings.create(model=embed_model, input="Hello there")
    floats = client.embeddings.create(model=embed_model, input="Hello there", encoding_format="float")
    assert len(default.data[0].embedding) == 384
    assert max(abs(a - b) for a, b in zip(default.data[0].embedding, floats.data[0].embedding)) < 1e-6


def test_token_ids(client: openai.OpenAI, embed_model: str) -> None:
    # [CLS] hello world [SEP] in the model's (bert-base-uncased) vocabulary.
    ids = client.embeddings.create(model=embed_model, input=[[101, 7592, 2088, 102]], encoding_format="float")
    text = client.embeddings.create(model=embed_model, input="hello world", encoding_format="float")
    assert ids.usage.prompt_tokens == text.usage.prompt_tokens == 4
    assert _cos(ids.data[0].embedding, text.data[0].embedding) > 0.9999


def test_refusals(client: openai.OpenAI, embed_model: str, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as dims:
        client.embeddings.create(model=embed_model, input="x", dimensions=64)
    assert "dimensions" in str(dims.value)
    with pytest.raises(openai.BadRequestError) as empty:
        client.embeddings.create(model=embed_model, input=[])
    assert "input" in str(empty.value)
    with pytest.raises(openai.BadRequestError) as chat_model:
        client.embeddings.create(model=model, input="x")
    assert "does not serve embeddings" in str(chat_model.value)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


def test_ollama_embed(ollama_client: ollama.Client, embed_model: str) -> None:
    r = ollama_client.embed(model=embed_model, input=["The cat sleeps on the sofa.", "A kitten naps on the couch."])
    assert r.model == embed_model
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 384
    assert r.prompt_eval_count and r.prompt_eval_count > 4
    assert _cos(r.embeddings[0], r.embeddings[1]) > 0.6
    legacy = ollama_client.embeddings(model=embed_model, prompt="The cat sleeps on the sofa.")
    assert _cos(list(legacy.embedding), r.embeddings[0]) > 0.9999
    with pytest.raises(ollama.ResponseError) as nf:
        ollama_client.embed(model="no-such-model", input="x")
    assert nf.value.status_code == 404
