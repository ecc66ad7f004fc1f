#!/usr/bin/env python3
"""Make Strata's GGUF test fixtures with PyPI `gguf` (the library llama.cpp's converter writes
with), `transformers`, `tokenizers` and `sentencepiece`.

Run by hand (CI never installs torch), from the repository root:

    python3 -m venv /tmp/strata-venv
    /tmp/strata-venv/bin/pip install "torch==2.13.0+cpu" transformers tokenizers safetensors gguf sentencepiece protobuf
    /tmp/strata-venv/bin/python scripts/make_gguf_fixtures.py

It writes Tests/Fixtures/gguf/:
  <name>.gguf        a tiny random model written the way convert_hf_to_gguf.py writes it:
                     llama.cpp's tensor names and metadata keys, Llama's Q/K rows permuted for
                     interleaved RoPE, Gemma's norms stored as 1 + w, 2-D weights quantized
  <name>.json        reference: token sequences, greedy continuation, tokenizer cases (ids from
                     the Hugging Face tokenizer of the same model)
  <name>.safetensors reference logits, f32 [T, vocab] per sequence, from `transformers` running
                     the HF model whose weights are gguf-py's dequantization of the file's blocks
  bad/*.gguf         hostile files (truncated, lying counts and lengths, offsets outside the
                     data, overlapping tensors, unknown type, dims whose product overflows)
Q8_0, Q4_0, Q4_1 and Q5_0 blocks come from gguf-py's quantize; gguf-py has no K-quant or IQ4
quantizer, so Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS blocks come from plain quantizers here (valid
blocks; the reference is what gguf-py's dequantize reads from them, whatever quantizer made them).
`python3 scripts/make_gguf_fixtures.py NAME...` writes only the named models (and the quant
reference), leaving the others as they are.
Everything is seeded; rerunning gives the same files for the same library versions.
"""
import json
import os
import struct
import sys
import shutil
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file

import gguf
from gguf import GGMLQuantizationType as Q

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CASES, CORPUS, train_byte_level  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "gguf")


# ---- K-quant blocks (ggml's layouts; simple min/max quantizer) ---------------------------------

def f16(x):
    return np.float16(x).tobytes()


def k_fit(blk, nmax):
    """Q4_K's and Q5_K's shared part of one block of 256: per sub-block of 32 a min/max scale and
    min, both 6-bit against f16 d and dmin; returns (d, dmin, the 12 packed scale bytes, codes)."""
    sub = blk.reshape(8, 32)
    mn = np.minimum(sub.min(axis=1), 0)
    mx = sub.max(axis=1)
    scale = (mx - mn) / nmax
    mins = -mn
    d = max(scale.max() / 63, 1e-8)
    dmin = max(mins.max() / 63, 1e-8)
    d16, dmin16 = np.float16(d), np.float16(dmin)
    sc = np.clip(np.round(scale / float(d16)), 0, 63).astype(np.int64)
    m = np.clip(np.round(mins / float(dmin16)), 0, 63).astype(np.int64)
    scales = [0] * 12
    for j in range(8):
        if j < 4:
            scales[j] |= int(sc[j]) & 63
            scales[j + 4] |= int(m[j]) & 63
        else:
            scales[j + 4] |= (int(sc[j]) & 0xF) | ((int(m[j]) & 0xF) << 4)
            scales[j - 4] |= (int(sc[j]) >> 4) << 6
            scales[j] |= (int(m[j]) >> 4) << 6
    q = np.zeros(256, dtype=np.int64)
    for j in range(8):
        dl = float(d16) * sc[j]
        ml = float(dmin16) * m[j]
        q[32 * j:32 * j + 32] = np.clip(np.round((sub[j] + ml) / dl), 0, nmax) if dl > 0 else 0
    return d16, dmin16, bytes(scales), q


def quant_q4_k(row):
    out = bytearray()
    for blk in row.reshape(-1, 256):
        d16, dmin16, scales, q = k_fit(blk, 15)
        qs = bytearray(128)
        for c in range(4):
            lo, hi = q[64 * c:64 * c + 32], q[64 * c + 32:64 * c + 64]
            for l in range(32):
                qs[32 * c + l] = int(lo[l]) | (int(hi[l]) << 4)
        out += f16(d16) + f16(dmin16) + scales + bytes(qs)
    return bytes(out)


def quant_q6_k(row):
    out = bytearray()
    for blk in row.reshape(-1, 256):
        sub = blk.reshape(16, 16)
        amax = np.abs(sub).max(axis=1)
        scale = amax / 31
        d = max(np.abs(scale).max() / 127, 1e-8)
        d16 = np.float16(d)
        sc = np.clip(np.round(scale / float(d16)), -128, 127).astype(np.int64)
        q = np.zeros(256, dtype=np.int64)
        for j in range(16):
            dl = float(d16) * sc[j]
            q[16 * j:16 * j + 16] = (np.clip(np.round(sub[j] / dl), -32, 31) if dl != 0 else 0) + 32
        ql = bytearray(128)
        qh = bytearray(64)
        for n in range(2):
            qq = q[128 * n:128 * n + 128]
            for l in range(32):
                q1, q2, q3, q4 = int(qq[l]), int(qq[l + 32]), int(qq[l + 64]), int(qq[l + 96])
                ql[64 * n + l] = (q1 & 0xF) | ((q3 & 0xF) << 4)
                ql[64 * n + l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4)
                qh[32 * n + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)
        out += bytes(ql) + bytes(qh) + bytes(np.array(sc, dtype=np.int8).tobytes()) + f16(d16)
    return bytes(out)


def quant_q5_k(row):
    """Q5_K blocks: Q4_K's min/max fit with 31 levels; the fifth bit of sub-block j in bit j of qh."""
    out = bytearray()
    for blk in row.reshape(-1, 256):
        d16, dmin16, scales, q = k_fit(blk, 31)
        qh = bytearray(32)
        qs = bytearray(128)
        for c in range(4):
            lo, hi = q[64 * c:64 * c + 32], q[64 * c + 32:64 * c + 64]
            for l in range(32):
                qs[32 * c + l] = (int(lo[l]) & 15) | ((int(hi[l]) & 15) << 4)
                qh[l] |= ((int(lo[l]) >> 4) << (2 * c)) | ((int(hi[l]) >> 4) << (2 * c + 1))
        out += f16(d16) + f16(dmin16) + scales + bytes(qh) + bytes(qs)
    return bytes(out)


IQ4_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)


def iq4_codes(x, dl):
    """The nearest of IQ4_NL's values times dl, as indices."""
    if dl == 0:
        return np.full(x.shape, 8, dtype=np.int64)
    return np.argmin(np.abs(x[:, None] - dl * IQ4_VALUES[None, :]), axis=1)


def pack_iq4(idx):
    """32 indices -> 16 bytes: index j low nibble, j + 16 high."""
    return bytes(int(idx[j]) | (int(idx[j + 16]) << 4) for j in range(16))


def quant_iq4_nl(row):
    """IQ4_NL blocks: d maps the value of largest magnitude to -127, codes the nearest values."""
    out = bytearray()
    for blk in row.reshape(-1, 32):
        mx = blk[np.argmax(np.abs(blk))]
        d16 = np.float16(mx / -127.0)
        out += f16(d16) + pack_iq4(iq4_codes(blk, float(d16)))
    return bytes(out)


def quant_iq4_xs(row):
    """IQ4_XS blocks: per sub-block of 32 a scale as IQ4_NL's, stored as d * (ls - 32), ls 6 bits."""
    out = bytearray()
    for blk in row.reshape(-1, 256):
        sub = blk.reshape(8, 32)
        ds = np.array([s[np.argmax(np.abs(s))] / -127.0 for s in sub])
        d16 = np.float16(max(np.abs(ds).max() / 31, 1e-8))
        ls = np.clip(np.round(ds / float(d16)) + 32, 0, 63).astype(np.int64)
        sh = 0
        sl = bytearray(4)
        qs = bytearray()
        for j in range(8):
            sh |= ((int(ls[j]) >> 4) & 3) << (2 * j)
            sl[j // 2] |= (int(ls[j]) & 15) << (4 * (j % 2))
            qs += pack_iq4(iq4_codes(sub[j], float(d16) * (int(ls[j]) - 32)))
        out += f16(d16) + struct.pack("<H", sh) + bytes(sl) + bytes(qs)
    return bytes(out)


ROW_QUANTIZERS = {Q.Q4_K: quant_q4_k, Q.Q6_K: quant_q6_k, Q.Q5_K: quant_q5_k, Q.IQ4_NL: quant_iq4_nl, Q.IQ4_XS: quant_iq4_xs}


def quantize(w, qtype):
    """2-D float32 [rows, cols] -> (uint8 [rows, bytes_per_row], dequantized float32 [rows, cols])."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    if qtype == Q.F32:
        return w, w
    if qtype == Q.F16:
        h = w.astype(np.float16)
        return h, h.astype(np.float32)
    if qtype in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.MXFP4):
        raw = gguf.quants.quantize(w, qtype)
    elif qtype in ROW_QUANTIZERS:
        raw = np.frombuffer(b"".join(ROW_QUANTIZERS[qtype](r) for r in w), dtype=np.uint8).reshape(w.shape[0], -1)
    else:
        raise ValueError(qtype)
    return raw, gguf.quants.dequantize(raw, qtype).reshape(w.shape).astype(np.float32)


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: HF half-split rows -> interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---- tokenizers ----------------------------------------------------------------------------------

def sentencepiece_tokenizer(tmp):
    """A SentencePiece BPE model with byte fallback, as Llama 2 / TinyLlama ship it, and the
    Hugging Face tokenizer transformers converts from it."""
    import sentencepiece as spm
    from transformers import AutoTokenizer
    text = os.path.join(tmp, "corpus.txt")
    with open(text, "w") as f:
        f.write("\n".join(CORPUS))
    prefix = os.path.join(tmp, "tokenizer")
    spm.SentencePieceTrainer.train(input=text, model_prefix=prefix, model_type="bpe", vocab_size=400,
                                   byte_fallback=True, character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0,
                                   split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
                                   normalization_rule_name="identity", minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>"}, f)
    hf = AutoTokenizer.from_pretrained(tmp)
    # convert_hf_to_gguf.py's _set_vocab_sentencepiece
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        piece = sp.id_to_piece(i)
        t = gguf.TokenType.NORMAL
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            t = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        tokens.append(piece)
        scores.append(sp.get_score(i))
        types.append(int(t))
    meta = dict(model="llama", pre="default", tokens=tokens, scores=scores, types=types, merges=None,
                bos=1, eos=2, unk=0, add_bos=True)
    # the HF tokenizer is the oracle; SentencePiece's own ids are kept beside it (llama.cpp
    # tokenizes as SentencePiece does, and transformers' conversion differs from it on leading spaces)
    return meta, (lambda s: hf(s)["input_ids"]), sp.vocab_size(), (lambda s: [1] + sp.encode(s))


def byte_level_tokenizer(kind):
    """A trained byte-level BPE (make_fixtures.py's) and the GGUF vocab the converter's
    get_vocab_base writes for it."""
    tok = train_byte_level(kind)
    vocab = tok.get_vocab(with_added_tokens=True)
    added = {a.content: a for a in tok.get_added_tokens_decoder().values()}
    n = max(vocab.values()) + 1
    rev = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(n):
        t = rev[i]
        if t in added:
            types.append(int(gguf.TokenType.CONTROL if added[t].special else gguf.TokenType.USER_DEFINED))
        else:
            types.append(int(gguf.TokenType.NORMAL))
        tokens.append(t)
    model = json.loads(tok.to_str())["model"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    bos = tok.token_to_id("<|begin_of_text|>")
    eot = tok.token_to_id("<|endoftext|>")
    meta = dict(model="gpt2", pre={"llama3": "llama-bpe", "qwen2": "qwen2", "gpt2": "gpt-2"}[kind], tokens=tokens,
                scores=None, types=types, merges=merges, bos=bos if kind == "llama3" else eot, eos=eot, unk=None,
                add_bos=kind == "llama3")
    return meta, (lambda s: tok.encode(s).ids), n, (lambda s: tok.encode(s).ids)


# ---- models ----------------------------------------------------------------------------------

ONLY = set()


def padded_vocab(meta, ntok):
    """The model's vocab (the tokenizer's rounded up to 8) and the GGUF vocab padded to it, as the
    converter pads the token list with unused [PAD<i>] tokens."""
    vocab = (ntok + 7) // 8 * 8
    return vocab, dict(meta, tokens=meta["tokens"] + ["[PAD%d]" % i for i in range(ntok, vocab)],
                       types=meta["types"] + [int(gguf.TokenType.UNUSED)] * (vocab - ntok),
                       scores=None if meta.get("scores") is None else meta["scores"] + [-1000.0] * (vocab - ntok))


def add_tokenizer(w, meta, add_bos=None):
    """The converter's tokenizer.ggml.* keys from a tokenizer's GGUF vocab (`meta`)."""
    w.add_tokenizer_model(meta["model"])
    w.add_tokenizer_pre(meta["pre"])
    w.add_token_list(meta["tokens"])
    if meta.get("scores") is not None:
        w.add_token_scores(meta["scores"])
    w.add_token_types(meta["types"])
    if meta.get("merges") is not None:
        w.add_token_merges(meta["merges"])
    w.add_bos_token_id(meta["bos"])
    w.add_eos_token_id(meta["eos"])
    if meta.get("unk") is not None:
        w.add_unk_token_id(meta["unk"])
    w.add_add_bos_token(meta["add_bos"] if add_bos is None else add_bos)


def write_model(name, cls_name, arch, cfg_kwargs, tok, types, seed, chat_template=None):
    if ONLY and name not in ONLY:
        return
    import transformers
    meta, encode, ntok, encode_native = tok
    torch.manual_seed(seed)
    vocab, meta = padded_vocab(meta, ntok)
    cfg_name = "Gemma3TextConfig" if cls_name == "Gemma3ForCausalLM" else cls_name.replace("ForCausalLM", "Config")
    cfg_name = {"Qwen3MoeConfig": "Qwen3MoeConfig"}.get(cfg_name, cfg_name)
    cfg = getattr(transformers, cfg_name)(vocab_size=vocab, **cfg_kwargs)
    model = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    experts = getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts", None)
    if experts:
        # transformers 5 fuses a layer's experts in memory; the converter reads the checkpoint's
        # per-expert tensors (hub names): take those from save_pretrained
        tmp_moe = tempfile.mkdtemp()
        model.save_pretrained(tmp_moe)
        from safetensors.numpy import load_file
        sd = load_file(os.path.join(tmp_moe, "model.safetensors"))
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    w = gguf.GGUFWriter(os.path.join(ROOT, name + ".gguf"), arch)
    w.add_name(name)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    if arch in ("qwen3", "gemma2", "gemma3"):
        w.add_key_length(hd)
        w.add_value_length(hd)
    rope = cfg.rope_parameters.get("full_attention", cfg.rope_parameters) if getattr(cfg, "rope_parameters", None) else {}
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or rope["rope_theta"]))
    if rope.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(hd)
    if arch == "gemma2":
        w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
        w.add_sliding_window(cfg.sliding_window)
    if arch == "gemma3":
        w.add_sliding_window(cfg.sliding_window)
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        if arch == "qwen3moe":
            w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
    add_tokenizer(w, meta)
    if chat_template:
        w.add_chat_template(chat_template)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    if arch in ("gemma2", "gemma3"):
        layer.update({"post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
                      "post_feedforward_layernorm": "post_ffw_norm"})
    if arch == "phi3":
        layer.update({"self_attn.qkv_proj": "attn_qkv", "mlp.gate_up_proj": "ffn_up"})
    # a mixture, as convert_hf_to_gguf.py writes it: the router ffn_gate_inp, each layer's experts
    # stacked into one [experts, rows, cols] tensor per matrix (ffn_{gate,up,down}_exps)
    moe = {"mlp.gate": "ffn_gate_inp", "block_sparse_moe.gate": "ffn_gate_inp"}
    stacks = {"gate_proj": "ffn_gate_exps", "up_proj": "ffn_up_exps", "down_proj": "ffn_down_exps",
              "w1": "ffn_gate_exps", "w3": "ffn_up_exps", "w2": "ffn_down_exps"}
    layer.update(moe)
    stacked = {}
    for hf in list(sd):
        parts = hf.split(".")
        if "experts" in parts:
            k = parts.index("experts")
            key = (parts[2], stacks[parts[k + 2]], ".".join(parts[:k + 1]) + "." + parts[k + 2])
            stacked.setdefault(key, {})[int(parts[k + 1])] = sd.pop(hf)
    expert_names = {}
    order = list(sd)
    for (i, g, hf_stacked), by_e in stacked.items():
        sd[hf_stacked + ".weight"] = np.stack([by_e[e] for e in range(len(by_e))])
        # in its layer's place in the file, as the converter yields it (after the layer's router)
        at = max(j for j, n in enumerate(order) if n.startswith("model.layers.%s." % i))
        order.insert(at + 1, hf_stacked + ".weight")
        expert_names[hf_stacked + ".weight"] = ("blk.%s.%s.weight" % (i, g), [hf_stacked.replace("experts", "experts.%d" % e) + ".weight"
                                                                              for e in range(len(by_e))])
    sd = {n: sd[n] for n in order}
    new_sd = {}
    for hf, t in sd.items():
        if hf == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if hf in names:
            g = names[hf]
        elif hf in expert_names:
            g = expert_names[hf][0]
        else:
            parts = hf.split(".")
            i = parts[2]
            base, kind = ".".join(parts[3:-1]), parts[-1]
            g = "blk.%s.%s.%s" % (i, layer[base], kind)
        data = t
        if arch == "llama" and g.endswith("attn_q.weight"):
            data = permute(data, heads)
        if arch == "llama" and g.endswith("attn_k.weight"):
            data = permute(data, kv)
        if arch in ("gemma2", "gemma3") and "norm" in g:
            data = data + 1
        qtype = Q.F32 if data.ndim == 1 else types(g)
        if data.ndim == 3:  # stacked experts: rows of every expert quantized in turn
            raw, deq = quantize(data.reshape(-1, data.shape[2]), qtype)
            raw, deq = raw.reshape(data.shape[0], data.shape[1], -1), deq.reshape(data.shape)
        else:
            raw, deq = quantize(data, qtype) if data.ndim == 2 else (data.astype(np.float32), data.astype(np.float32))
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(g, raw)
        else:
            w.add_tensor(g, raw, raw_dtype=qtype)
        # the reference model holds what the file's blocks mean, back in HF order
        if arch == "llama" and g.endswith("attn_q.weight"):
            deq = permute_back(deq, heads)
        if arch == "llama" and g.endswith("attn_k.weight"):
            deq = permute_back(deq, kv)
        if arch in ("gemma2", "gemma3") and "norm" in g:
            deq = deq - 1
        if hf in expert_names:
            for e, name_e in enumerate(expert_names[hf][1]):
                new_sd[name_e] = torch.from_numpy(np.ascontiguousarray(deq[e]))
        else:
            new_sd[hf] = torch.from_numpy(np.ascontiguousarray(deq))
    if cfg.tie_word_embeddings:
        new_sd["lm_head.weight"] = new_sd["model.embed_tokens.weight"]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if experts:
        # the dequantized weights in the checkpoint's names, loaded back through transformers
        from safetensors.torch import save_file as save_torch
        save_torch({k: v.contiguous() for k, v in new_sd.items()}, os.path.join(tmp_moe, "model.safetensors"))
        model = getattr(transformers, cls_name).from_pretrained(tmp_moe).eval()
        shutil.rmtree(tmp_moe)
    else:
        model.load_state_dict(new_sd, strict=False)
    if cfg.tie_word_embeddings:
        model.tie_weights()

    g = torch.Generator().manual_seed(seed + 1)
    seqs = [torch.randint(0, ntok, (n,), generator=g).tolist() for n in (7, 19)]
    logits = {}
    with torch.no_grad():
        for i, s in enumerate(seqs):
            logits["seq%d" % i] = model(torch.tensor([s])).logits[0].float().contiguous()
        prompt = seqs[0]
        gen = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24, min_new_tokens=24,
                             eos_token_id=None, pad_token_id=0)[0].tolist()[len(prompt):]
    save_file(logits, os.path.join(ROOT, name + ".safetensors"))
    cases = [{"text": t, "ids": encode(t), "native_ids": encode_native(t)} for t in CASES]
    with open(os.path.join(ROOT, name + ".json"), "w") as f:
        json.dump({"name": name, "architecture": cls_name, "sequences": seqs, "greedy_prompt": prompt,
                   "greedy_continuation": gen, "tokenizer_cases": cases, "chat_template": chat_template,
                   "gguf_version": gguf.__version__ if hasattr(gguf, "__version__") else "", "transformers_version": transformers.__version__},
                  f, ensure_ascii=False, indent=1)
    # gguf-py's own reader reads the file back
    r = gguf.GGUFReader(os.path.join(ROOT, name + ".gguf"))
    stacked_extra = sum(len(v[1]) - 1 for v in expert_names.values())
    assert len(r.tensors) == len(new_sd) - stacked_extra - (1 if cfg.tie_word_embeddings else 0), (len(r.tensors), len(new_sd))
    print("wrote", name, os.path.getsize(os.path.join(ROOT, name + ".gguf")), "bytes")


def write_gpt_oss(name, tok, seed):
    """gpt-oss as convert_hf_to_gguf.py (conversion/gpt_oss.py) writes a checkpoint whose experts are
    not MXFP4 already: gate_up_proj [experts, hidden, 2 ff] transposed and split (gate the even
    columns, up the odd) into ffn_gate_exps / ffn_up_exps, down_proj transposed into ffn_down_exps,
    their biases likewise; sinks as attn_sinks.weight; the MLP's norm as post_attention_norm; YaRN's
    keys. Then quantized as llama-quantize's MXFP4_MOE: experts MXFP4, other matrices Q8_0. The
    reference: transformers (eager attention) on gguf-py's dequantization put back in the hub layout."""
    if ONLY and name not in ONLY:
        return
    import transformers
    meta, encode, ntok, encode_native = tok
    torch.manual_seed(seed)
    vocab, meta = padded_vocab(meta, ntok)
    cfg = transformers.GptOssConfig(vocab_size=vocab, hidden_size=64, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
                                    max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                    attn_implementation="eager")
    model = transformers.GptOssForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
        # GGUF has no swiglu_limit (llama.cpp's gpt-oss clamps at 7): experts' inputs large enough to reach it
        for l in model.model.layers:
            l.post_attention_layernorm.weight.mul_(25)
    rope = cfg.rope_parameters
    w = gguf.GGUFWriter(os.path.join(ROOT, name + ".gguf"), "gpt-oss")
    w.add_name(name)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(rope["factor"])
    w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    w.add_rope_scaling_yarn_beta_fast(rope["beta_fast"])
    w.add_rope_scaling_yarn_beta_slow(rope["beta_slow"])
    w.add_expert_count(cfg.num_local_experts)
    w.add_expert_used_count(cfg.num_experts_per_tok)
    w.add_sliding_window(cfg.sliding_window)
    w.add_expert_feed_forward_length(cfg.intermediate_size)
    add_tokenizer(w, meta)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    layer = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "post_attention_norm.weight",
             "self_attn.sinks": "attn_sinks.weight", "mlp.router.weight": "ffn_gate_inp.weight", "mlp.router.bias": "ffn_gate_inp.bias"}
    for p in ("q", "k", "v", "o"):
        for kind in ("weight", "bias"):
            layer["self_attn.%s_proj.%s" % (p, kind)] = "attn_%s.%s" % ({"o": "output"}.get(p, p), kind)
    new_sd = {}

    def put(g, data, qtype):
        if data.ndim == 3:  # stacked experts: rows of every expert quantized in turn
            raw, deq = quantize(data.reshape(-1, data.shape[2]), qtype)
            raw, deq = raw.reshape(data.shape[0], data.shape[1], -1), deq.reshape(data.shape)
        elif data.ndim == 2 and qtype != Q.F32:
            raw, deq = quantize(data, qtype)
        else:
            raw = deq = np.ascontiguousarray(data, dtype=np.float32)
        if qtype in (Q.F32, Q.F16) or data.ndim == 1:
            w.add_tensor(g, raw)
        else:
            w.add_tensor(g, raw, raw_dtype=qtype)
        return deq

    for hf, t in sd.items():
        if hf in names:
            new_sd[hf] = put(names[hf], t, Q.Q8_0)
            continue
        parts = hf.split(".")
        i, rest = parts[2], ".".join(parts[3:])
        if rest in layer:
            g = "blk.%s.%s" % (i, layer[rest])
            new_sd[hf] = put(g, t, Q.F32 if t.ndim == 1 or "ffn_gate_inp" in g else Q.Q8_0)
        elif rest == "mlp.experts.gate_up_proj":
            wt = np.ascontiguousarray(t.transpose(0, 2, 1))  # [experts, 2 ff, hidden]
            gate = put("blk.%s.ffn_gate_exps.weight" % i, np.ascontiguousarray(wt[:, ::2, :]), Q.MXFP4)
            up = put("blk.%s.ffn_up_exps.weight" % i, np.ascontiguousarray(wt[:, 1::2, :]), Q.MXFP4)
            both = np.empty_like(wt)
            both[:, ::2, :], both[:, 1::2, :] = gate, up
            new_sd[hf] = np.ascontiguousarray(both.transpose(0, 2, 1))
        elif rest == "mlp.experts.gate_up_proj_bias":
            gate = put("blk.%s.ffn_gate_exps.bias" % i, np.ascontiguousarray(t[:, ::2]), Q.F32)
            up = put("blk.%s.ffn_up_exps.bias" % i, np.ascontiguousarray(t[:, 1::2]), Q.F32)
            both = np.empty_like(t)
            both[:, ::2], both[:, 1::2] = gate, up
            new_sd[hf] = both
        elif rest == "mlp.experts.down_proj":
            deq = put("blk.%s.ffn_down_exps.weight" % i, np.ascontiguousarray(t.transpose(0, 2, 1)), Q.MXFP4)
            new_sd[hf] = np.ascontiguousarray(deq.transpose(0, 2, 1))
        elif rest == "mlp.experts.down_proj_bias":
            new_sd[hf] = put("blk.%s.ffn_down_exps.bias" % i, t, Q.F32)
        else:
            raise ValueError(hf)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in new_sd.items()}, strict=True)
    g = torch.Generator().manual_seed(seed + 1)
    seqs = [torch.randint(0, ntok, (n,), generator=g).tolist() for n in (7, 19)]
    logits = {}
    reached = []  # the largest gate pre-activation: the clamp must be exercised

    def watch(mod, args):
        reached.append(float((args[0] @ mod.gate_up_proj[:, :, ::2] + mod.gate_up_proj_bias[:, None, ::2]).max()))
    hooks = [l.mlp.experts.register_forward_pre_hook(watch) for l in model.model.layers]
    with torch.no_grad():
        for i, s in enumerate(seqs):
            logits["seq%d" % i] = model(torch.tensor([s])).logits[0].float().contiguous()
        for hk in hooks:
            hk.remove()
        assert max(reached) > cfg.swiglu_limit, reached
        prompt = seqs[0]
        gen = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24, min_new_tokens=24,
                             eos_token_id=None, pad_token_id=0)[0].tolist()[len(prompt):]
    save_file(logits, os.path.join(ROOT, name + ".safetensors"))
    cases = [{"text": t, "ids": encode(t), "native_ids": encode_native(t)} for t in CASES]
    with open(os.path.join(ROOT, name + ".json"), "w") as f:
        json.dump({"name": name, "architecture": "GptOssForCausalLM", "sequences": seqs, "greedy_prompt": prompt,
                   "greedy_continuation": gen, "tokenizer_cases": cases, "chat_template": None,
                   "gguf_version": gguf.__version__ if hasattr(gguf, "__version__") else "", "transformers_version": transformers.__version__},
                  f, ensure_ascii=False, indent=1)
    r = gguf.GGUFReader(os.path.join(ROOT, name + ".gguf"))
    assert len(r.tensors) == len(sd) + 2 * cfg.num_hidden_layers, (len(r.tensors), len(sd))  # gate_up and its bias split in two
    print("wrote", name, os.path.getsize(os.path.join(ROOT, name + ".gguf")), "bytes")


def write_gpt2(name, tok, qtype, seed):
    """GPT-2 as convert_hf_to_gguf.py writes it: Conv1D weights transposed to [out, in]."""
    if ONLY and name not in ONLY:
        return
    import transformers
    meta, encode, ntok, encode_native = tok
    torch.manual_seed(seed)
    vocab, meta = padded_vocab(meta, ntok)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_embd=256, n_layer=2, n_head=4, n_positions=128,
                                  bos_token_id=meta["bos"], eos_token_id=meta["eos"])
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    w = gguf.GGUFWriter(os.path.join(ROOT, name + ".gguf"), "gpt2")
    w.add_name(name)
    w.add_block_count(cfg.n_layer)
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(4 * cfg.n_embd)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    add_tokenizer(w, meta, add_bos=False)
    names = {"transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight",
             "transformer.ln_f.weight": "output_norm.weight", "transformer.ln_f.bias": "output_norm.bias"}
    layer = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    new_sd = {}
    for hf, t in model.state_dict().items():
        if hf == "lm_head.weight" or hf.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        t = t.detach().float().numpy()
        if hf in names:
            g = names[hf]
        elif hf in expert_names:
            g = expert_names[hf][0]
        else:
            parts = hf.split(".")
            g = "blk.%s.%s.%s" % (parts[2], layer[".".join(parts[3:-1])], parts[-1])
        conv = hf.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight"))
        data = np.ascontiguousarray(t.T) if conv else t
        qt = Q.F32 if data.ndim == 1 else (Q.F16 if "position_embd" in g else qtype)
        raw, deq = quantize(data, qt) if data.ndim == 2 else (data.astype(np.float32), data.astype(np.float32))
        if qt in (Q.F32, Q.F16):
            w.add_tensor(g, raw)
        else:
            w.add_tensor(g, raw, raw_dtype=qt)
        new_sd[hf] = torch.from_numpy(np.ascontiguousarray(deq.T if conv else deq))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    model.load_state_dict(new_sd, strict=False)
    model.tie_weights()
    g = torch.Generator().manual_seed(seed + 1)
    seqs = [torch.randint(0, ntok, (n,), generator=g).tolist() for n in (7, 19)]
    logits = {}
    with torch.no_grad():
        for i, sq in enumerate(seqs):
            logits["seq%d" % i] = model(torch.tensor([sq])).logits[0].float().contiguous()
        prompt = seqs[0]
        gen = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24, min_new_tokens=24,
                             eos_token_id=None, pad_token_id=0)[0].tolist()[len(prompt):]
    save_file(logits, os.path.join(ROOT, name + ".safetensors"))
    cases = [{"text": t, "ids": encode(t), "native_ids": encode_native(t)} for t in CASES]
    with open(os.path.join(ROOT, name + ".json"), "w") as f:
        json.dump({"name": name, "architecture": "GPT2LMHeadModel", "sequences": seqs, "greedy_prompt": prompt,
                   "greedy_continuation": gen, "tokenizer_cases": cases, "chat_template": None,
                   "transformers_version": transformers.__version__}, f, ensure_ascii=False, indent=1)
    print("wrote", name, os.path.getsize(os.path.join(ROOT, name + ".gguf")), "bytes")


def permute_back(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def q4_k_m(name):
    """llama.cpp's Q4_K_M mix in miniature: Q6_K for the output, the values and ffn_down; Q4_K elsewhere."""
    if name.endswith("ffn_gate_inp.weight"):  # the router: llama.cpp keeps it in f32 (a 1-row tensor per expert)
        return Q.F32
    if name == "output.weight" or name.endswith("attn_v.weight") or name.endswith("ffn_down.weight") or name.endswith("ffn_down_exps.weight"):
        return Q.Q6_K
    return Q.Q4_K


# ---- hostile files ----------------------------------------------------------------------------

def write_bad():
    d = os.path.join(ROOT, "bad")
    os.makedirs(d, exist_ok=True)
    # a small valid file: metadata like a model's, two Q8_0 matrices and a vector
    base_path = os.path.join(d, "base.gguf")
    w = gguf.GGUFWriter(base_path, "llama")
    w.add_block_count(1)
    w.add_token_list(["a", "b", "c"])
    rng = np.random.default_rng(0)
    for name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight"):
        w.add_tensor(name, gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), Q.Q8_0), raw_dtype=Q.Q8_0)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = open(base_path, "rb").read()
    r = gguf.GGUFReader(base_path)
    first = r.tensors[0]

    def put(name, b):
        with open(os.path.join(d, name + ".gguf"), "wb") as f:
            f.write(b)

    put("truncated-header", data[:100])
    put("truncated-data", data[:len(data) - 100])
    put("bad-magic", b"GGUX" + data[4:])
    put("version-1", data[:4] + struct.pack("<I", 1) + data[8:])
    put("huge-tensor-count", data[:8] + struct.pack("<Q", 1 << 60) + data[16:])
    put("huge-kv-count", data[:16] + struct.pack("<Q", 1 << 60) + data[24:])
    # the first key's string length made huge
    put("huge-string-length", data[:24] + struct.pack("<Q", 1 << 62) + data[32:])

    # tensor info fields: find the first tensor's name in the header, then its dims/type/offset
    name_bytes = first.name.encode()
    at = data.index(struct.pack("<Q", len(name_bytes)) + name_bytes)
    p = at + 8 + len(name_bytes)
    nd = struct.unpack_from("<I", data, p)[0]
    dims_at, type_at = p + 4, p + 4 + 8 * nd
    off_at = type_at + 4

    def patch(b, pos, fmt, v):
        b = bytearray(b)
        struct.pack_into(fmt, b, pos, v)
        return bytes(b)

    put("unknown-type", patch(data, type_at, "<I", 99))
    put("offset-outside", patch(data, off_at, "<Q", 1 << 40))
    put("dims-overflow", patch(patch(data, dims_at, "<Q", 1 << 40), dims_at + 8, "<Q", 1 << 40) if nd >= 2 else data)
    second = r.tensors[1]
    put("overlap", patch(data, off_at, "<Q", int(second.data_offset - r.data_offset)))
    # a duplicate tensor name: the second tensor renamed to the first (same length names only)
    s_name = second.name.encode()
    if len(s_name) == len(name_bytes):
        put("duplicate-tensor", data.replace(struct.pack("<Q", len(s_name)) + s_name, struct.pack("<Q", len(name_bytes)) + name_bytes))
    put("misaligned-offset", patch(data, off_at, "<Q", 3))


def write_quant_reference():
    """gguf-py's Q8_0, Q4_0, Q4_1, Q5_0 and MXFP4 blocks of a matrix Strata can rebuild exactly (float32 of a
    formula), and for every quantized type Strata reads, blocks of a seeded random matrix with
    gguf-py's dequantization of them ("dequant": {type: [blocks hex, float32 hex]})."""
    i = np.arange(4 * 256, dtype=np.float64)
    x = (np.sin(i * 0.731) * (1 + (i % 7)) * 0.1).astype(np.float32).reshape(4, 256)
    x[1, 32:64] = 0  # an all-zero block
    out = {"formula": "float32(sin(i * 0.731) * (1 + i % 7) * 0.1), i = 0..1023, rows of 256; row 1 [32, 64) zero",
           "x": x.tobytes().hex()}
    for name, t in (("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1), ("q5_0", Q.Q5_0), ("mxfp4", Q.MXFP4)):
        out[name] = gguf.quants.quantize(x, t).tobytes().hex()
    rng = np.random.default_rng(5)
    m = (rng.standard_normal((3, 512)) * np.array([[0.02], [1.0], [30.0]])).astype(np.float32)
    m[0, :32] += 0.5  # a block away from zero (Q4_1's minimum, Q4_K's mins)
    out["dequant"] = {}
    for t in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS, Q.MXFP4):
        raw, deq = quantize(m, t)
        out["dequant"][t.name.lower()] = [np.ascontiguousarray(raw).tobytes().hex(), deq.astype(np.float32).tobytes().hex()]
    with open(os.path.join(ROOT, "quant_reference.json"), "w") as f:
        json.dump(out, f, indent=1)


def q5_k_m(name):
    """llama.cpp's Q5_K_M mix in miniature: Q6_K for the output, the values and ffn_down; Q5_K elsewhere."""
    return Q.Q6_K if q4_k_m(name) == Q.Q6_K else Q.Q5_K


def legacy_mix(name):
    """Q4_1 for attention, Q5_0 for the MLP and the embeddings."""
    return Q.Q4_1 if ".attn_" in name else Q.Q5_0


def iq4_mix(name):
    """IQ4_NL for attention and the output, IQ4_XS for the MLP and the embeddings."""
    return Q.IQ4_NL if ".attn_" in name or name == "output.weight" else Q.IQ4_XS


def main():
    torch.set_num_threads(2)
    os.makedirs(ROOT, exist_ok=True)
    ONLY.update(sys.argv[1:])
    write_quant_reference()
    with tempfile.TemporaryDirectory() as tmp:
        sp = sentencepiece_tokenizer(tmp)
    q2 = byte_level_tokenizer("qwen2")
    l3 = byte_level_tokenizer("llama3")
    base = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=128, rms_norm_eps=1e-5)
    template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    write_model("llama-q8_0", "LlamaForCausalLM", "llama", dict(base, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
                sp, lambda g: Q.Q8_0, seed=21, chat_template=template)
    write_model("llama-q4_0", "LlamaForCausalLM", "llama", dict(base, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
                sp, lambda g: Q.Q4_0, seed=22)
    write_model("llama-q4_k_m", "LlamaForCausalLM", "llama", dict(base, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
                sp, q4_k_m, seed=23)
    write_model("llama3-q6_k", "LlamaForCausalLM", "llama", dict(base, tie_word_embeddings=True, rope_theta=500000.0),
                l3, lambda g: Q.Q6_K, seed=24)
    write_model("qwen2-q4_k_m", "Qwen2ForCausalLM", "qwen2", dict(base, tie_word_embeddings=True, rope_theta=1000000.0),
                q2, q4_k_m, seed=25)
    write_model("qwen3-q8_0", "Qwen3ForCausalLM", "qwen3", dict(base, head_dim=64, tie_word_embeddings=True, rope_theta=1000000.0),
                q2, lambda g: Q.Q8_0, seed=26)
    write_model("gemma2-q8_0", "Gemma2ForCausalLM", "gemma2",
                dict(base, head_dim=64, tie_word_embeddings=True, query_pre_attn_scalar=64, sliding_window=8,
                     attn_logit_softcapping=5.0, final_logit_softcapping=3.0, hidden_activation="gelu_pytorch_tanh",
                     attn_implementation="eager", bos_token_id=1, eos_token_id=2, pad_token_id=0),
                sp, lambda g: Q.Q8_0, seed=27)
    write_model("phi3-q8_0", "Phi3ForCausalLM", "phi3",
                dict(base, tie_word_embeddings=False, sliding_window=None, bos_token_id=1, eos_token_id=2, pad_token_id=0),
                sp, lambda g: Q.Q8_0, seed=29)
    write_gpt2("gpt2-q8_0", byte_level_tokenizer("gpt2"), Q.Q8_0, seed=28)
    # Gemma-3 as llama.cpp reads it: every sixth layer full (seven layers), the local rotary base
    # 1e4, queries scaled by head_dim^-1/2, norms (q/k norms too) stored as 1 + w; linear scaling 8
    write_model("gemma3-q8_0", "Gemma3ForCausalLM", "gemma3",
                dict(base, hidden_size=128, intermediate_size=256, num_hidden_layers=7, head_dim=64, tie_word_embeddings=True,
                     query_pre_attn_scalar=64, sliding_window=8,
                     rope_scaling={"rope_type": "linear", "factor": 8.0}, hidden_activation="gelu_pytorch_tanh",
                     attn_implementation="eager", bos_token_id=1, eos_token_id=2, pad_token_id=0),
                sp, lambda g: Q.Q8_0, seed=33)
    write_model("llama-q5_k_m", "LlamaForCausalLM", "llama", dict(base, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
                sp, q5_k_m, seed=30)
    write_model("llama-q4_1-q5_0", "LlamaForCausalLM", "llama", dict(base, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
                sp, legacy_mix, seed=31)
    write_model("qwen2-iq4", "Qwen2ForCausalLM", "qwen2", dict(base, tie_word_embeddings=False, rope_theta=1000000.0),
                q2, iq4_mix, seed=32)
    # mixtures of experts: Qwen3-MoE (8 experts, top 3, renormalized; layer 1 dense) and Mixtral
    # (written as llama, Q/K permuted; 4 experts, top 2), Q4_K_M with the experts stacked
    q3moe = dict(base, num_hidden_layers=3, head_dim=64, tie_word_embeddings=False, rope_theta=1000000.0,
                 num_experts=8, num_experts_per_tok=3, moe_intermediate_size=256, norm_topk_prob=True, mlp_only_layers=[1])
    write_model("qwen3moe-q4_k_m", "Qwen3MoeForCausalLM", "qwen3moe", q3moe, q2, q4_k_m, seed=34)
    write_model("mixtral-q4_k_m", "MixtralForCausalLM", "llama",
                dict(base, tie_word_embeddings=False, sliding_window=None, num_local_experts=4, num_experts_per_tok=2,
                     bos_token_id=1, eos_token_id=2), sp, q4_k_m, seed=35)
    # gpt-oss: 4 experts (MXFP4), top 2, biases, sinks, layers sliding (window 4), full, sliding; YaRN
    write_gpt_oss("gpt-oss-mxfp4", q2, seed=36)
    if not ONLY:
        write_bad()


if __name__ == "__main__":
    main()
