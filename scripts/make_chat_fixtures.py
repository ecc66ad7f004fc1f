#!/usr/bin/env python3
"""Renders the chat-template corpus with jinja2 configured exactly as transformers configures it
(its own `_compile_jinja_template`: ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, its tojson, raise_exception, strftime_now) and writes the expected texts that
StrataJinja must reproduce byte for byte.

    python scripts/make_chat_fixtures.py        # needs transformers (and jinja2 >= 3.1.6)

Inputs: Tests/Fixtures/chat/templates/*.jinja (published chat templates; see README there).
Output: Tests/Fixtures/chat/cases.json: the conversations, and per (template, conversation,
add_generation_prompt) the rendered text or the error the template raised.
strftime_now sees the fixed day STRATA_DATE (2026-07-26), as `strata chat-template` does when
STRATA_DATE is set.
"""
import datetime
import json
import os
import sys

from transformers.utils.chat_template_utils import _compile_jinja_template

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "chat")
DATE = "2026-07-26"

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Adds two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}},
]

CONVERSATIONS = {
    "single": {"messages": [{"role": "user", "content": "Hello!"}]},
    "system": {"messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is 2+2?"}]},
    "multi_turn": {"messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "  Hello! How can I help?  "},
        {"role": "user", "content": "Tell me a joke.\nMake it short."}]},
    "no_system_two_turns": {"messages": [
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "Two"},
        {"role": "user", "content": "Three"}]},
    "not_alternating": {"messages": [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"}]},
    "unicode": {"messages": [
        {"role": "user", "content": "Ünïcödé 日本語 🙂 \"quotes\" 'single' {{ not a tag }} <b>&amp;</b>\ttab"}]},
    "thinking": {"messages": [
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": "<think>\nRayleigh scattering.\n</think>\n\nBecause of Rayleigh scattering."},
        {"role": "user", "content": "And sunsets?"}]},
    "tools": {"tools": TOOLS, "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "What's the weather in Paris?"}]},
    "tool_calls": {"tools": TOOLS, "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21.5 °C and clear in Paris."},
        {"role": "user", "content": "Thanks!"}]},
}

# Special tokens as each model's tokenizer_config.json names them.
TOKENS = {
    "llama-2": ("<s>", "</s>"), "mistral-7b-v0.1": ("<s>", "</s>"), "mistral-nemo": ("<s>", "</s>"),
    "llama-3.1": ("<|begin_of_text|>", "<|eot_id|>"), "llama-3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "qwen2.5": ("", "<|im_end|>"), "qwen3": ("", "<|im_end|>"),
    "phi-3-mini": ("<s>", "<|endoftext|>"), "phi-3.5": ("<s>", "<|endoftext|>"),
    "gemma-2": ("<bos>", "<eos>"), "gemma-7b": ("<bos>", "<eos>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"), "smollm3": ("<|im_start|>", "<|im_end|>"),
    "deepseek-r1-distill-llama": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-r1-distill-qwen": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "granite-3.3": ("<|end_of_text|>", "<|end_of_text|>"),
    "hermes-3-tool-use": ("<|begin_of_text|>", "<|im_end|>"),
    "openhermes-2.5-chatml": ("<s>", "<|im_end|>"),
}


# Language features one at a time: (name, template, variables).
LANGUAGE = [
    ("whitespace control", "a  {%- if true %} b {% endif -%}  c\n  {% for x in [1,2] %}\n  {{ x }}\n  {% endfor %}\nd {#- c -#} e {%+ if true %}f{% endif +%}\ng", {}),
    ("lstrip only at line start", "x {% if true %}y{% endif %}\n\t {% if true %}z{% endif %}\n{{ 1 }}  {% if true %}w{% endif %}", {}),
    ("trailing newline dropped", "a\n", {}),
    ("raw", "{% raw %}{{ not }} {% if %}{% endraw %}!", {}),
    ("numbers", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 * 2 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 3.0 }}", {}),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'a' ~ 1 + 2 }} {{ not 1 == 2 }} {{ -2 ** 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}", {}),
    ("logic values", "{{ 0 or 'x' }} {{ '' and 'y' }} {{ none or [] }} {{ 1 and 2 }}", {}),
    ("conditional", "{{ 'a' if x else 'b' }}{{ 'c' if not x }}|{{ 'd' if y is defined else 'e' }}", {"x": 0}),
    ("repr in output", "{{ ['a', \"b'c\", 1, 2.5, none, true, {'k': [1]}] }} {{ {'x': 'y'} }} {{ ('t', 1)[0] }}", {}),
    ("loop object", "{% for x in 'abc' %}{{ loop.index }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('o', 'e') }};{% endfor %}", {}),
    ("loop filter and else", "{% for x in xs if x > 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% else %}none{% endfor %}|{% for x in xs if x > 9 %}{{ x }}{% else %}none{% endfor %}", {"xs": [1, 2, 3]}),
    ("nested loops and scope", "{% set n = 0 %}{% for a in [1, 2] %}{% set n = n + a %}{% for b in [3] %}{{ loop.index0 }}{{ a }}{{ b }}{% endfor %}{% endfor %}{{ n }}", {}),
    ("namespace", "{% set ns = namespace(c=0, items=[]) %}{% for x in [1, 2, 3] %}{% set ns.c = ns.c + x %}{% set ns.items = ns.items + [x] %}{% endfor %}{{ ns.c }} {{ ns.items }}", {}),
    ("set tuple and block", "{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set t %}  inner {{ a }}  {% endset %}[{{ t }}]{% set u | trim | upper %}  x y  {% endset %}[{{ u }}]", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }}", {}),
    ("macro recursion", "{% macro r(n) %}{{ n }}{% if n > 0 %}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}", {}),
    ("filters text", "{{ '  x y  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'hello world-wide (x)' | title }}|{{ 'aBC' | capitalize }}|{{ 'a<b>&\\'\\\"' | e }}|{{ 'abc' | replace('b', 'B') }}|{{ 'one two  three' | wordcount }}", {}),
    ("filters lists", "{{ xs | length }} {{ xs | first }} {{ xs | last }} {{ xs | join(', ') }} {{ xs | reverse | list }} {{ xs | sort }} {{ xs | sort(reverse=true) }} {{ xs | unique | list }} {{ xs | sum }} {{ xs | min }} {{ xs | max }}", {"xs": [3, 1, 2, 3]}),
    ("filters dicts", "{% for k, v in d | items %}{{ k }}={{ v }} {% endfor %}{{ d | length }} {% for k, v in d | dictsort %}{{ k }}{{ v }}{% endfor %} {{ d | list }}", {"d": {"b": 1, "a": 2}}),
    ("default", "{{ missing | default('d') }} {{ '' | default('e') }} {{ '' | default('f', true) }} {{ none | default('g') }} {{ missing | d('h') }}", {}),
    ("selectattr map", "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }} {{ ms | rejectattr('role', 'eq', 'user') | list | length }} {{ ms | map(attribute='x', default='-') | list }} {{ ms | selectattr('flag') | list | length }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ ['a', 'B'] | map('upper') | list }}", {"ms": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1", "flag": True}, {"role": "user", "content": "u2"}]}),
    ("numbers filters", "{{ '12' | int }} {{ 'x' | int }} {{ '3.7' | int }} {{ 2.5 | int }} {{ '1.5' | float }} {{ 2.567 | round(1) }} {{ -3 | abs }} {{ 2.5 | round }} {{ 3 | string ~ '!' }}", {}),
    ("indent", "[{{ 'a\nb\n\nc' | indent(2) }}][{{ 'a\nb' | indent(2, true) }}][{{ 'a\n\nb' | indent('> ', blank=true) }}]", {}),
    ("tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ d | tojson(sort_keys=true) }}|{{ 'é\"\\\n\u0001' | tojson }}|{{ [] | tojson(indent=2) }}|{{ 1.0 | tojson }}", {"d": {"z": [1, 2.5, None, True], "a": {"n": "x"}, "e": {}}}),
    ("string methods", "{{ 'a,b,,c'.split(',') }} {{ 'a b  c'.split() }} {{ 'a,b,c'.split(',', 1) }} {{ ' x '.strip() }}{{ 'xyx'.strip('x') }} {{ 'ab'.startswith(('x', 'a')) }} {{ 'ab'.endswith('b') }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'Hi'.upper() }}{{ 'Hi'.lower() }} {{ 'abcb'.find('b') }} {{ 'abcb'.rfind('b') }} {{ 'abcb'.count('b') }} {{ '-'.join(['x', 'y']) }} {{ 'hello world'.title() }}", {}),
    ("dict methods", "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 5) }} {{ d.keys() | list }} {{ d.values() | list }} {% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}", {"d": {"a": 1, "b": 2}}),
    ("tests", "{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ true is boolean }}{{ 'x' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ x is none }}{{ y is undefined }}{{ 'ab' is lower }}{{ 2 is eq 2 }}{{ 'a' is in 'abc' }}{{ none is sameas none }}{{ true is true }}{{ 0 is false }}", {"x": None}),
    ("subscripts", "{{ xs[0] }}{{ xs[-1] }}{{ xs[5] is defined }}{{ xs[1:] }}{{ xs[:-1] }}{{ xs[::2] }}{{ xs[::-1] }}{{ 'abcdef'[1:4] }}{{ 'abc'[-1] }}{{ d['k'] }}{{ d.k }}{{ d.missing is defined }}{{ xs.0 }}", {"xs": [1, 2, 3], "d": {"k": "v"}}),
    ("in operator", "{{ 'a' in 'cat' }}{{ 2 in [1, 2] }}{{ 'k' in d }}{{ 'z' not in d }}{{ [1] in [[1], 2] }}", {"d": {"k": 1}}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true ~ missing ~ [1] }}", {}),
    ("break continue", "{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("range", "{{ range(3) | list }} {{ range(2, 5) | list }} {{ range(10, 0, -3) | list }}", {}),
    ("unicode length and slicing", "{{ s | length }} {{ s[1:3] }} {{ s | upper }} {{ s[::-1] }}", {"s": "é日🙂x"}),
    ("strftime", "{{ strftime_now('%Y-%m-%d %d %b %Y %B %A %a %j') }}", {}),
    ("raise", "{{ raise_exception('custom failure: ' ~ 42) }}", {}),
    ("generation block", "a{% generation %}b{{ 1 }}{% endgeneration %}c", {}),
    ("with and filter blocks", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{% filter upper %}shout {{ 'x' }}{% endfilter %}", {}),
    ("dict literal and dict()", "{{ {'a': 1, 'b': [2]}.b[0] }} {{ dict(x=1, y='z') }} {{ namespace(a=1).a }}", {}),
]

SYNTAX_ERRORS = [
    ("unclosed if", "line one\n{% if x %}\nbody\n"),
    ("unknown tag", "ok\n\n  {% frobnicate %}"),
    ("unclosed variable", "{{ x }}\n{{ y "),
    ("bad expression", "a\nb\n{{ 1 + }}"),
    ("unexpected end tag", "{% for x in xs %}{% endif %}"),
    ("unbalanced bracket", "{{ [1, 2 }}"),
    ("unterminated string", "x\n{{ 'abc }}"),
    ("unclosed comment", "a\n{# never closed"),
]


def render_language(source, variables):
    template = _compile_jinja_template(source)
    fixed = datetime.datetime.strptime(DATE, "%Y-%m-%d")
    template.globals["strftime_now"] = lambda fmt: fixed.strftime(fmt)
    try:
        return {"text": template.render(**variables)}
    except Exception as e:
        return {"error": str(e), "error_type": type(e).__name__}


def syntax_error_line(source):
    import jinja2
    try:
        _compile_jinja_template(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        return e.lineno
    raise SystemExit(f"expected a syntax error: {source!r}")


def render(source, conv, add_generation_prompt, bos, eos):
    template = _compile_jinja_template(source)
    fixed = datetime.datetime.strptime(DATE, "%Y-%m-%d")
    template.globals["strftime_now"] = lambda fmt: fixed.strftime(fmt)
    try:
        text = template.render(messages=conv["messages"], tools=conv.get("tools"), documents=None,
                               add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
        return {"text": text}
    except Exception as e:  # a template that raises: its message
        return {"error": str(e), "error_type": type(e).__name__}


MODEL_CONVERSATION = [
    {"role": "system", "content": "You are a test model."},
    {"role": "user", "content": "hello world"},
    {"role": "assistant", "content": "the quick brown fox"},
    {"role": "user", "content": "jumps over the lazy dog"},
]


def make_model():
    """Tests/Fixtures/chat/model: the llama-gqa fixture (links to its weights, config and
    tokenizer) with a tokenizer_config.json holding Llama 2's chat template and a
    generation_config.json with sampling defaults; the chat's ids as transformers encodes them,
    and greedy tokens with a repetition penalty as transformers generates them."""
    import shutil
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    src = os.path.join(ROOT, "..", "models", "llama-gqa")
    d = os.path.join(ROOT, "model")
    os.makedirs(d, exist_ok=True)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        link = os.path.join(d, f)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.join("..", "..", "models", "llama-gqa", f), link)
    template = open(os.path.join(ROOT, "templates", "llama-2.jinja"), encoding="utf-8").read()
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True},
                   "chat_template": template, "tokenizer_class": "PreTrainedTokenizerFast",
                   "model_max_length": 128}, f, indent=2)
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": True, "temperature": 0.7, "top_p": 0.9,
                   "top_k": 40, "repetition_penalty": 1.15}, f, indent=2)
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok.apply_chat_template(MODEL_CONVERSATION, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    text = tok.apply_chat_template(MODEL_CONVERSATION, add_generation_prompt=True, tokenize=False)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.eval()
    runs = {}
    for penalty in (1.0, 1.3, 0.8):
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=24, repetition_penalty=penalty,
                             eos_token_id=None, pad_token_id=0, temperature=None, top_p=None, top_k=None)
        runs[str(penalty)] = out[0][len(ids):].tolist()
    return {"messages": MODEL_CONVERSATION, "text": text, "ids": list(ids), "greedy_repetition_penalty": runs}


def main():
    tdir = os.path.join(ROOT, "templates")
    names = sorted(f[:-6] for f in os.listdir(tdir) if f.endswith(".jinja"))
    cases = []
    for name in names:
        source = open(os.path.join(tdir, name + ".jinja"), encoding="utf-8").read()
        bos, eos = TOKENS[name]
        for cname in CONVERSATIONS:
            for agp in (True, False):
                case = {"template": name, "conversation": cname, "add_generation_prompt": agp, "bos_token": bos, "eos_token": eos}
                case.update(render(source, CONVERSATIONS[cname], agp, bos, eos))
                cases.append(case)
    language = [{"name": n, "template": t, "variables": v, **render_language(t, v)} for n, t, v in LANGUAGE]
    syntax = [{"name": n, "template": t, "line": syntax_error_line(t)} for n, t in SYNTAX_ERRORS]
    out = {"date": DATE, "conversations": CONVERSATIONS, "cases": cases, "language": language, "syntax_errors": syntax,
           "model": make_model()}
    with open(os.path.join(ROOT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    ok = sum(1 for c in cases if "text" in c)
    print(f"{len(cases)} cases over {len(names)} templates ({ok} rendered, {len(cases) - ok} raised)", file=sys.stderr)


if __name__ == "__main__":
    main()
