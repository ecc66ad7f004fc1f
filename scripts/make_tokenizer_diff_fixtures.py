#!/usr/bin/env python3
"""The differential tokenizer corpus (issue 16): for each fixture tokenizer
(Tests/Fixtures/tokenizers/*/tokenizer.json: byte-level GPT-2, Llama-3 regex, Qwen2,
SentencePiece-style with byte fallback, legacy and Metaspace), strings drawn from every Unicode
category, combining marks, ligatures, CR/LF/CRLF, tabs and other controls, emoji sequences,
CJK, RTL, long runs of digits and spaces, encoded by `tokenizers` (with and without special
tokens) and decoded back. Writes Tests/Fixtures/tokenizers/differential.json, which
TokenizerDifferentialTests requires Strata to reproduce id for id.

    python scripts/make_tokenizer_diff_fixtures.py     # needs tokenizers
"""
import json
import os
import random
import unicodedata

from tokenizers import Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "tokenizers")
PER_TOKENIZER = 2000


def scalars_by_category():
    cats = {}
    for cp in range(0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        cats.setdefault(unicodedata.category(c), []).append(c)
    return cats


def strings(rng, cats):
    pieces = {
        "ascii": "the quick brown fox jumps over the lazy dog THE QUICK Hello, world! it's don't we'll I'M",
        "combining": "e\u0301 a\u0308 n\u0303 o\u0302\u0323 \u0915\u094d\u0937 \u1100\u1161\u11a8 Z\u0351\u0352\u0353",
        "ligatures": "\ufb01 \ufb02 \ufb00 \u0132 \u01c6 \u2126 \u212b \u00bd \u2460 \uff21\uff22",
        "newlines": "a\r\nb\rc\nd\r\n\r\ne\n\n\nf\t\tg\x0bh\x0ci\x1cj\x85k\u2028l\u2029m",
        "controls": "\x00\x01\x07\x1b[0m\x7f\u200b\u200c\u200d\ufeff\u00ad",
        "emoji": "\U0001F600 \U0001F468\u200D\U0001F469\u200D\U0001F467 \U0001F1EB\U0001F1F7 \u2764\ufe0f \U0001F44D\U0001F3FD \U0001F3F3\ufe0f\u200d\U0001F308",
        "cjk": "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587\u5b57 \ud55c\uad6d\uc5b4 \u3042\u3044\u3046",
        "rtl": "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u200f\u202e abc \u202c",
        "digits": "1234567890 3.14159 1,000,000 007 \u0661\u0662\u0663 \u00b2\u00b3",
        "spaces": "   \t  \u00a0\u3000\u2003 ",
    }
    out = []
    keys = list(pieces)
    cat_names = sorted(cats)
    for i in range(PER_TOKENIZER):
        kind = i % 4
        if kind == 0:      # a mix of the hand-picked pieces
            s = "".join(rng.choice(pieces[rng.choice(keys)].split(" ") or [""]) + rng.choice(["", " ", "  ", "\n", "\r\n", "\t"]) for _ in range(rng.randint(1, 8)))
        elif kind == 1:    # characters of random general categories
            s = "".join(rng.choice(cats[rng.choice(cat_names)]) for _ in range(rng.randint(1, 12)))
        elif kind == 2:    # words with runs of digits, spaces, punctuation
            s = "".join(rng.choice(["a", "B", "\u00e9", "1", "22", "333", " ", "   ", ".", "!?", "'s", "\u2019", "-", "_", "\n"]) for _ in range(rng.randint(1, 30)))
        else:              # long runs
            s = rng.choice(["9", " ", "ab", "\u00e9", "\n", "\U0001F600", "x "]) * rng.randint(10, 80)
        out.append(s)
    return out


def main():
    rng = random.Random(20261202)
    cats = scalars_by_category()
    corpus = strings(rng, cats)
    doc = {}
    for name in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, name, "tokenizer.json")
        if not os.path.exists(path):
            continue
        tok = Tokenizer.from_file(path)
        cases = []
        for s in corpus:
            ids = tok.encode(s, add_special_tokens=False).ids
            with_special = tok.encode(s).ids
            case = {"ids": ids}
            if with_special != ids:
                case["ids_special"] = with_special
            decoded = tok.decode(ids, skip_special_tokens=False)
            if decoded != s:
                case["decoded"] = decoded
            cases.append(case)
        doc[name] = cases
    with open(os.path.join(ROOT, "differential.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": corpus, "tokenizers": doc}, f, ensure_ascii=False, separators=(",", ":"))
    print(f"{len(corpus)} strings x {len(doc)} tokenizers")


if __name__ == "__main__":
    main()
