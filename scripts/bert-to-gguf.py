#!/usr/bin/env python3
"""Convert a Hugging Face BERT sentence-embedding model (safetensors + tokenizer.json, e.g.
sentence-transformers/all-MiniLM-L6-v2) into a GGUF file that llama.cpp's `bert` architecture
loads: mean pooling, WordPiece vocabulary, F32 weights (bit-exact copies of the source tensors).

Standard library only, on purpose: fetch-models.sh runs it on a bare machine (CI, a fresh
developer box) and llama.cpp's own convert_hf_to_gguf.py needs PyTorch. The format written is
GGUF v3 (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md); the key names and the tensor
mapping are those of llama.cpp's converter for BertModel.

Usage: bert-to-gguf.py MODEL_DIR OUT.gguf [--name NAME]
"""

import json
import struct
import sys
from pathlib import Path

ALIGN = 32
# GGUF value types.
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32 = 0
# llama.cpp's LLAMA_POOLING_TYPE_MEAN and token types.
POOLING_MEAN = 1
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3


def tensor_name(hf: str):
    """HF BERT tensor name -> llama.cpp name (None: not used by llama.cpp)."""
    fixed = {
        "embeddings.word_embeddings.weight": "token_embd.weight",
        "embeddings.token_type_embeddings.weight": "token_types.weight",
        "embeddings.position_embeddings.weight": "position_embd.weight",
        "embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "embeddings.LayerNorm.bias": "token_embd_norm.bias",
    }
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")
    if len(parts) < 5 or parts[:2] != ["encoder", "layer"]:
        return None  # embeddings.position_ids, pooler.*: not part of the sentence embedding
    block, rest, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
    mapped = {
        "attention.self.query": "attn_q",
        "attention.self.key": "attn_k",
        "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output",
        "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up",
        "output.dense": "ffn_down",
        "output.LayerNorm": "layer_output_norm",
    }.get(rest)
    return None if mapped is None else f"blk.{block}.{mapped}.{kind}"


def read_safetensors(path: Path):
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        yield name, info["dtype"], info["shape"], data[base + start : base + end]


def vocab(model_dir: Path):
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if tok["model"]["type"] != "WordPiece":
        sys.exit(f"tokenizer model {tok['model']['type']} is not WordPiece")
    by_id = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        sys.exit("tokenizer vocabulary ids are not 0..n-1")
    special = {a["id"] for a in tok.get("added_tokens", []) if a.get("special")}

    # llama.cpp's WPM tokenizer wants "phantom space" pieces: a word start carries U+2581,
    # a continuation ("##x") does not; [CLS]-style control tokens stay as they are.
    def phantom(t: str) -> str:
        if t.startswith("[") and t.endswith("]"):
            return t
        return t[2:] if t.startswith("##") else "\u2581" + t

    tokens = [phantom(t) for t, _ in by_id]
    types = [TOKEN_CONTROL if i in special else TOKEN_NORMAL for _, i in by_id]
    return tokens, types


class Writer:
    def __init__(self):
        self.kv = []

    @staticmethod
    def s(text: str) -> bytes:
        b = text.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def add(self, key, vtype, value):
        out = self.s(key) + struct.pack("<I", vtype)
        if vtype == T_STRING:
            out += self.s(value)
        elif vtype == T_UINT32:
            out += struct.pack("<I", value)
        elif vtype == T_FLOAT32:
            out += struct.pack("<f", value)
        elif vtype == T_BOOL:
            out += struct.pack("<?", value)
        else:
            raise ValueError(vtype)
        self.kv.append(out)

    def add_array(self, key, etype, values):
        out = self.s(key) + struct.pack("<IIQ", T_ARRAY, etype, len(values))
        if etype == T_STRING:
            out += b"".join(self.s(v) for v in values)
        elif etype == T_INT32:
            out += struct.pack(f"<{len(values)}i", *values)
        else:
            raise ValueError(etype)
        self.kv.append(out)


def pad(n: int) -> int:
    return (ALIGN - n % ALIGN) % ALIGN


def convert(model_dir: Path, out: Path, name: str):
    cfg = json.loads((model_dir / "config.json").read_text())
    if cfg.get("model_type") != "bert":
        sys.exit(f"model_type {cfg.get('model_type')} is not bert")
    w = Writer()
    w.add("general.architecture", T_STRING, "bert")
    w.add("general.name", T_STRING, name)
    w.add("bert.context_length", T_UINT32, cfg["max_position_embeddings"])
    w.add("bert.embedding_length", T_UINT32, cfg["hidden_size"])
    w.add("bert.feed_forward_length", T_UINT32, cfg["intermediate_size"])
    w.add("bert.block_count", T_UINT32, cfg["num_hidden_layers"])
    w.add("bert.attention.head_count", T_UINT32, cfg["num_attention_heads"])
    w.add("bert.attention.layer_norm_epsilon", T_FLOAT32, cfg["layer_norm_eps"])
    w.add("bert.attention.causal", T_BOOL, False)
    w.add("bert.pooling_type", T_UINT32, POOLING_MEAN)
    tokens, types = vocab(model_dir)
    w.add("tokenizer.ggml.model", T_STRING, "bert")
    w.add("tokenizer.ggml.pre", T_STRING, "default")
    w.add_array("tokenizer.ggml.tokens", T_STRING, tokens)
    w.add_array("tokenizer.ggml.token_type", T_INT32, types)
    w.add("tokenizer.ggml.token_type_count", T_UINT32, cfg.get("type_vocab_size", 2))

    tensors = []
    for hf, dtype, shape, raw in read_safetensors(model_dir / "model.safetensors"):
        gname = tensor_name(hf)
        if gname is None:
            continue
        if dtype != "F32":
            sys.exit(f"{hf}: dtype {dtype} not supported (F32 only)")
        tensors.append((gname, shape, raw))
    tensors.sort(key=lambda t: t[0])

    infos, offset = [], 0
    for gname, shape, raw in tensors:
        dims = list(reversed(shape))  # GGUF lists the innermost dimension first
        infos.append(w.s(gname) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", GGML_F32, offset))
        offset += len(raw) + pad(len(raw))

    tmp = out.with_suffix(out.suffix + ".part")
    with tmp.open("wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(w.kv)))
        for kv in w.kv:
            f.write(kv)
        for info in infos:
            f.write(info)
        f.write(b"\0" * pad(f.tell()))
        for _, _, raw in tensors:
            f.write(raw)
            f.write(b"\0" * pad(len(raw)))
    tmp.replace(out)
    print(f"wrote {out} ({len(tensors)} tensors, {len(tokens)} tokens)", file=sys.stderr)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    name = argv[argv.index("--name") + 1] if "--name" in argv else Path(argv[1]).name
    convert(Path(argv[1]), Path(argv[2]), name)


if __name__ == "__main__":
    main(sys.argv)
