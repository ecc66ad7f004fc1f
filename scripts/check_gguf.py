#!/usr/bin/env python3
"""Read a GGUF written by `strata quantize` with llama.cpp's own reader (PyPI `gguf`) and compare
it with the safetensors folder it came from: every tensor present, each dequantized by gguf-py
within its type's error of the original (Llama's Q/K rows put back in HF order), and the
hyperparameters equal to config.json's.

    /tmp/strata-venv/bin/pip install gguf safetensors numpy
    /tmp/strata-venv/bin/python scripts/check_gguf.py MODEL_DIR FILE.gguf

Exits non-zero on the first mismatch.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

import gguf

HF = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
LAYER = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
         "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
# relative RMS error allowed per type (ggml's formats on Gaussian-like weights)
BOUND = {"F32": 0.0, "F16": 1e-3, "Q8_0": 0.006, "Q6_K": 0.02, "Q4_K": 0.08, "Q4_0": 0.12}


def hf_name(name):
    if name in HF:
        return HF[name]
    _, layer, base, kind = name.split(".")
    return "model.layers.%s.%s.%s" % (layer, LAYER[base], kind)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    folder, path = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(folder, "config.json")))
    src = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            src.update({k: v.astype(np.float32) for k, v in load_file(os.path.join(folder, f)).items()})
    r = gguf.GGUFReader(path)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()

    def field(k):
        f = r.fields[arch + "." + k]
        return f.parts[f.data[0]][0]

    checks = [("block_count", cfg["num_hidden_layers"]), ("embedding_length", cfg["hidden_size"]),
              ("feed_forward_length", cfg["intermediate_size"]), ("attention.head_count", cfg["num_attention_heads"]),
              ("attention.head_count_kv", cfg.get("num_key_value_heads", cfg["num_attention_heads"]))]
    for k, want in checks:
        got = int(field(k))
        if got != want:
            sys.exit("%s: %s = %d, config.json says %d" % (path, k, got, want))
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    seen = set()
    worst = {}
    for t in r.tensors:
        name = hf_name(t.name)
        seen.add(name)
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(src[name].shape)
        if arch == "llama" and t.name.endswith("attn_q.weight"):
            w = unpermute(w, heads)
        if arch == "llama" and t.name.endswith("attn_k.weight"):
            w = unpermute(w, kv)
        a = src[name]
        rms = float(np.sqrt(np.mean(a * a))) or 1.0
        err = float(np.sqrt(np.mean((a - w) ** 2))) / rms
        typ = t.tensor_type.name
        worst[typ] = max(worst.get(typ, 0.0), err)
        if err > BOUND[typ] + 1e-7:
            sys.exit("%s: %s (%s) relative RMS error %.4g above %.4g" % (path, t.name, typ, err, BOUND[typ]))
    missing = set(src) - seen - ({"lm_head.weight"} if cfg.get("tie_word_embeddings") else set())
    if missing:
        sys.exit("%s: tensors missing: %s" % (path, sorted(missing)))
    print("%s: %d tensors read by gguf-py %s, each within its type's error of %s; worst relative RMS error per type: %s"
          % (path, len(r.tensors), getattr(gguf, "__version__", ""), folder,
             ", ".join("%s %.4g" % kv_ for kv_ in sorted(worst.items()))))


if __name__ == "__main__":
    main()
