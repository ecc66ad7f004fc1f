#!/usr/bin/env python3
"""Make Strata's test fixtures with Hugging Face `transformers` and `tokenizers`.

Run by hand (CI never installs torch), from the repository root:

    python3 -m venv /tmp/strata-venv
    /tmp/strata-venv/bin/pip install "torch==2.13.0+cpu" transformers tokenizers safetensors
    /tmp/strata-venv/bin/python scripts/make_fixtures.py [MODEL ...]

With model names (e.g. `qwen3`), only those model folders are written (the tokenizers are
trained in memory as always, but their fixture files are left as they are).

It writes Tests/Fixtures/:
  tokenizers/<name>/tokenizer.json + cases.json   trained tokenizers and encode/decode cases
  models/<name>/  config.json, model.safetensors, tokenizer.json, generation_config.json,
                  reference.json (token sequences, greedy continuation),
                  reference.safetensors (logits of each sequence, f32 [T, vocab])
Everything is seeded; rerunning gives the same files for the same library versions.
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs!",
    "Hello world, hello Strata. Transformers on the CPU when memory is the wall.",
    "It's 2026 and we're testing tokenizers: they'll split words, numbers like 12345 and 3.14159.",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e na\u00efve r\u00e9sum\u00e9 \u00fcber M\u00fcnchen Stra\u00dfe.",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002\u4f60\u597d\uff0c\u4e16\u754c\u3002",
    "def forward(x):\n    return x * W.T + b  # linear layer\n\n\tindented\ttabs",
    "Emoji time \U0001F600 \U0001F680 \u2764\ufe0f and more text for merges, merges, merges.",
    "   leading spaces and trailing spaces   ",
    "Paged attention keeps KV blocks; the planner splits weights between RAM and disk.",
] * 20

CASES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "multiple   spaces\tand\ttabs\n\nnewlines  \n",
    "Caf\u00e9 na\u00efve \u00fcber Stra\u00dfe",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059",
    "unseen \u0416\u0438\u0437\u043d\u044c and \u0939\u093f\u0928\u094d\u0926\u0940 and \u20ac\u00a5",
    "emoji \U0001F600\U0001F680 family \U0001F468\u200d\U0001F469\u200d\U0001F467 flag \U0001F1EB\U0001F1F7",
    "numbers 1234567890 and 3.14159, it's we're they'll I'd",
    "",
    " ",
    "a",
    "SPECIAL_A in the middle SPECIAL_B end",
    "trailing space ",
    "CamelCaseWords and snake_case_words and kebab-case",
]

BYTE_LEVEL_SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>"]

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def train_byte_level(kind):
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        pattern = LLAMA3_PATTERN if kind == "llama3" else QWEN2_PATTERN
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=BYTE_LEVEL_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    if kind == "llama3":
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
            special_tokens=[("<|begin_of_text|>", bos)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens(["SPECIAL_A"])  # a non-special added token
    tok.add_special_tokens(["SPECIAL_B"])
    return tok


def train_sentencepiece(kind):
    """SentencePiece-style BPE as Llama-2/TinyLlama/Mistral ship it: '\u2581' for spaces, byte fallback."""
    base = Tokenizer(models.BPE())
    base.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    base.pre_tokenizer = pre_tokenizers.Split(Regex(r"\u2581[^\u2581]*"), behavior="isolated")
    trainer = trainers.BpeTrainer(vocab_size=360, show_progress=False)
    base.train_from_iterator(CORPUS, trainer)
    trained = json.loads(base.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece in sorted(trained["vocab"], key=lambda p: trained["vocab"][p]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if kind == "sp-legacy":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:  # the Metaspace form newer conversions write
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.add_tokens(["SPECIAL_A"])
    tok.add_special_tokens(["SPECIAL_B"])
    return tok


ONLY = set(sys.argv[1:])


def write_tokenizer(name, tok):
    if ONLY:
        return tok
    d = os.path.join(ROOT, "tokenizers", name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    cases = []
    for text in CASES:
        ids = tok.encode(text).ids
        ids_plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({
            "text": text,
            "ids": ids,
            "ids_no_special": ids_plain,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    with open(os.path.join(d, "cases.json"), "w") as f:
        json.dump({"name": name, "tokenizers_version": __import__("tokenizers").__version__, "cases": cases},
                  f, ensure_ascii=False, indent=1)
    return tok


CONFIG_CLASS = {"Gemma3ForCausalLM": "Gemma3TextConfig", "Gemma3ForConditionalGeneration": "Gemma3Config"}


def make_model(name, cls_name, config_kwargs, tokenizer, dtype="f32", seed=0, seqs_len=(7, 19)):
    if ONLY and name not in ONLY:
        return
    import transformers
    torch.manual_seed(seed)
    cfg_cls = getattr(transformers, CONFIG_CLASS.get(cls_name) or cls_name.replace("ForCausalLM", "Config").replace("LMHeadModel", "Config"))
    cfg = cfg_cls(**config_kwargs)
    model = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than init's 0.02 so logits are not all ~0
            p.copy_(torch.randn_like(p) * 0.2)
        if dtype != "f32":  # round weights to the 16-bit type; the reference runs f32 on the rounded values
            tdt = torch.float16 if dtype == "f16" else torch.bfloat16
            for p in model.parameters():
                p.copy_(p.to(tdt).to(torch.float32))
    d = os.path.join(ROOT, "models", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    if dtype == "f32":
        model.save_pretrained(d)
    else:
        tdt = torch.float16 if dtype == "f16" else torch.bfloat16
        model.to(tdt).save_pretrained(d)
        model.to(torch.float32)
    tokenizer.save(os.path.join(d, "tokenizer.json"))
    vocab = cfg.get_text_config().vocab_size
    g = torch.Generator().manual_seed(seed + 1)
    seqs = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in seqs_len]
    logits = {}
    with torch.no_grad():
        for i, s in enumerate(seqs):
            out = model(torch.tensor([s])).logits[0].float().contiguous()
            logits["seq%d" % i] = out
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = 0
        prompt = seqs[0]
        gen = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=32, min_new_tokens=32,
                             eos_token_id=None, pad_token_id=0)[0].tolist()[len(prompt):]
    save_file(logits, os.path.join(d, "reference.safetensors"))
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"name": name, "architecture": cls_name, "dtype": dtype, "transformers_version": transformers.__version__,
                   "sequences": seqs, "greedy_prompt": prompt, "greedy_continuation": gen}, f, indent=1)
    print("wrote", d, sorted(os.listdir(d)))


def main():
    torch.set_num_threads(2)
    toks = {}
    for kind in ["gpt2", "llama3", "qwen2"]:
        toks[kind] = write_tokenizer("bytelevel-" + kind, train_byte_level(kind))
    for kind in ["sp-legacy", "sp-metaspace"]:
        toks[kind] = write_tokenizer(kind, train_sentencepiece(kind))

    def v(tok):  # model vocab: tokenizer size rounded up to a multiple of 8
        return (tok.get_vocab_size() + 7) // 8 * 8

    base = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=128, rms_norm_eps=1e-6)
    sp = toks["sp-legacy"]
    make_model("llama-gqa", "LlamaForCausalLM",
               dict(base, vocab_size=v(sp), num_key_value_heads=2, tie_word_embeddings=False,
                    bos_token_id=1, eos_token_id=2), sp, seed=1)
    make_model("llama-mha-tied", "LlamaForCausalLM",
               dict(base, vocab_size=v(toks["sp-metaspace"]), num_key_value_heads=4, tie_word_embeddings=True,
                    rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2), toks["sp-metaspace"], seed=2)
    l3 = toks["llama3"]
    bot = l3.token_to_id("<|begin_of_text|>")
    eot = l3.token_to_id("<|end_of_text|>")
    make_model("llama3-scaled", "LlamaForCausalLM",
               dict(base, vocab_size=v(l3), num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                    rope_theta=500000.0, bos_token_id=bot, eos_token_id=eot,
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16}), l3, seed=3)
    make_model("llama-linear-rope", "LlamaForCausalLM",
               dict(base, vocab_size=v(sp), num_key_value_heads=2, tie_word_embeddings=False,
                    rope_scaling={"rope_type": "linear", "factor": 2.0}, bos_token_id=1, eos_token_id=2), sp, seed=4)
    q = toks["qwen2"]
    make_model("qwen2", "Qwen2ForCausalLM",
               dict(base, vocab_size=v(q), num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1000000.0,
                    bos_token_id=q.token_to_id("<|endoftext|>"), eos_token_id=q.token_to_id("<|endoftext|>")), q, seed=5)
    # Qwen3: q_norm/k_norm per head, head_dim (16) independent of hidden / heads (12), tied embeddings
    make_model("qwen3", "Qwen3ForCausalLM",
               dict(base, vocab_size=v(q), num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                    rope_theta=1000000.0, bos_token_id=q.token_to_id("<|endoftext|>"),
                    eos_token_id=q.token_to_id("<|endoftext|>")), q, seed=10)
    # Phi-3: fused qkv_proj and gate_up_proj, partial rotary (half of each head), longrope with short
    # and long factors; sequence 1 (19 tokens) and the greedy continuation pass original_max (16)
    make_model("phi3", "Phi3ForCausalLM",
               dict(base, vocab_size=v(sp), num_key_value_heads=2, tie_word_embeddings=False, max_position_embeddings=64,
                    original_max_position_embeddings=16, partial_rotary_factor=0.5, sliding_window=None,
                    rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.5, 2.0],
                                  "long_factor": [2.0, 4.0, 9.0]},
                    bos_token_id=1, eos_token_id=2, pad_token_id=0), sp, seed=11)
    # Gemma-2: embeddings scaled by sqrt(hidden), (1 + w) RMSNorms before and after attention and
    # MLP, GeGLU (tanh GELU), attention and final-logit soft-capping, query_pre_attn_scalar,
    # a sliding window (8) on every other layer: sequence 1 (19 tokens) is longer than the window
    make_model("gemma2", "Gemma2ForCausalLM",
               dict(base, vocab_size=v(sp), num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                    query_pre_attn_scalar=24, sliding_window=8, attn_logit_softcapping=5.0,
                    final_logit_softcapping=3.0, hidden_activation="gelu_pytorch_tanh",
                    attn_implementation="eager", bos_token_id=1, eos_token_id=2, pad_token_id=0), sp, seed=12)
    # Gemma-3: Gemma-2's layout plus (1 + w) RMSNorms over each head of q and k, no soft-capping;
    # seven layers in transformers' default pattern (every sixth full: layer 5), full layers rotated
    # with rope_theta 1e6 scaled linearly by 8, sliding ones with the local base 1e4; window 8
    gemma3_text = dict(base, vocab_size=v(sp), num_hidden_layers=7, num_key_value_heads=2, head_dim=16,
                       tie_word_embeddings=True, query_pre_attn_scalar=24, sliding_window=8,
                       rope_scaling={"rope_type": "linear", "factor": 8.0}, hidden_activation="gelu_pytorch_tanh",
                       attn_implementation="eager", bos_token_id=1, eos_token_id=2, pad_token_id=0)
    make_model("gemma3", "Gemma3ForCausalLM", gemma3_text, sp, seed=13)
    # the multimodal class: the same text model nested under text_config (two layers, one of each
    # kind by layer_types, rope_parameters per layer type) beside a one-layer vision tower
    mm_text = dict(gemma3_text, num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"],
                   rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 100000.0},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}})
    del mm_text["rope_scaling"], mm_text["attn_implementation"]
    make_model("gemma3-mm", "Gemma3ForConditionalGeneration",
               dict(text_config=mm_text, vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                            num_attention_heads=2, image_size=28, patch_size=14),
                    mm_tokens_per_image=4, attn_implementation="eager", boi_token_index=3, eoi_token_index=4,
                    image_token_index=5, tie_word_embeddings=True), sp, seed=14)
    # Qwen3-MoE: 8 experts, top-3 with norm_topk_prob, experts of moe_intermediate_size 32; three
    # layers: layer 1 dense by mlp_only_layers, layers 0 and 2 sparse (decoder_sparse_step 1)
    make_model("qwen3-moe", "Qwen3MoeForCausalLM",
               dict(base, num_hidden_layers=3, vocab_size=v(q), num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
                    rope_theta=1000000.0, num_experts=8, num_experts_per_tok=3, moe_intermediate_size=32,
                    norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1],
                    bos_token_id=q.token_to_id("<|endoftext|>"), eos_token_id=q.token_to_id("<|endoftext|>")), q, seed=15)
    # Mixtral: 4 experts, top-2 (weights renormalized over the two), every layer sparse
    make_model("mixtral", "MixtralForCausalLM",
               dict(base, vocab_size=v(sp), num_key_value_heads=2, tie_word_embeddings=False, sliding_window=None,
                    num_local_experts=4, num_experts_per_tok=2, bos_token_id=1, eos_token_id=2), sp, seed=16)
    # gpt-oss: 4 experts, top-2 (softmax over the two logits), router and experts with biases, the
    # clamped SwiGLU with a limit (1.5) the fixture's activations reach, sinks, layers sliding
    # (window 4), full, sliding; YaRN as the released models set it (factor 32 over 4096, not
    # truncated). Eager attention: sdpa skips the sinks
    make_model("gpt-oss", "GptOssForCausalLM",
               dict(base, num_hidden_layers=3, vocab_size=v(q), num_key_value_heads=2, head_dim=16, intermediate_size=32,
                    num_local_experts=4, num_experts_per_tok=2, sliding_window=4, swiglu_limit=1.5, tie_word_embeddings=False,
                    attn_implementation="eager", bos_token_id=q.token_to_id("<|endoftext|>"),
                    eos_token_id=q.token_to_id("<|endoftext|>")), q, seed=17)
    make_model("mistral", "MistralForCausalLM",
               dict(base, vocab_size=v(sp), num_key_value_heads=2, tie_word_embeddings=False, sliding_window=None,
                    bos_token_id=1, eos_token_id=2), sp, seed=6)
    g2 = toks["gpt2"]
    eos = g2.token_to_id("<|endoftext|>")
    make_model("gpt2", "GPT2LMHeadModel",
               dict(vocab_size=v(g2), n_embd=48, n_layer=2, n_head=4, n_positions=128, bos_token_id=eos,
                    eos_token_id=eos), g2, seed=7)
    make_model("llama-gqa-f16", "LlamaForCausalLM",
               dict(base, vocab_size=v(sp), num_key_value_heads=2, tie_word_embeddings=False, bos_token_id=1,
                    eos_token_id=2), sp, dtype="f16", seed=8)
    make_model("llama-gqa-bf16", "LlamaForCausalLM",
               dict(base, vocab_size=v(sp), num_key_value_heads=2, tie_word_embeddings=False, bos_token_id=1,
                    eos_token_id=2), sp, dtype="bf16", seed=9)


if __name__ == "__main__":
    main()
