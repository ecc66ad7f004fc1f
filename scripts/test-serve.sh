#!/usr/bin/env bash
# `make test` part 3: strata serve against the official openai client, in a venv made here
# (.build/venv-serve, reused when present). Needs PyPI once.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.build/venv-serve
if ! "$VENV/bin/python" -c "import openai, tokenizers, jsonschema" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "openai>=1.40,<3" "tokenizers>=0.19,<1" "jsonschema>=4.18,<5"
fi
BIN=${BIN:-.build/debug/strata}
[ -x "$BIN" ] || swift build --product strata
"$VENV/bin/python" scripts/test_serve.py "$BIN" Tests/Fixtures/chat/model
