#!/usr/bin/env python3
"""Hostile input II, class 3, as a benchmark (timings are benchmarks, not tests):

1. `strata tokenize --text-file` on 1 MB and 10 MB of text ("hello there " repeated, and one
   long word), median of REPEATS runs each: linear scaling shows as a 10 MB / 1 MB ratio near 10.
2. `strata serve`: while one client posts a 1 MB prompt (parsed, templated and tokenized off the
   event loop), another polls /health: the slowest and median answer times.

    python3 scripts/bench_tokenize_health.py BIN MODEL_DIR [REPEATS]

Figures go to docs/robustness.md with the command that made them.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN, MODEL = sys.argv[1], sys.argv[2]
REPEATS = int(sys.argv[3]) if len(sys.argv) > 3 else 3


def tokenize_seconds(path):
    times = []
    for _ in range(REPEATS):
        t0 = time.monotonic()
        subprocess.run([BIN, "tokenize", "--model", MODEL, "--text-file", path, "--no-special"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def main():
    tmp = tempfile.mkdtemp()
    print(f"tokenize ({MODEL}), median of {REPEATS}:")
    for name, unit in [("'hello there ' repeated", "hello there "), ("one long word", "abcdefghij")]:
        row = []
        for mb in (1, 10):
            path = os.path.join(tmp, f"{mb}.txt")
            n = mb * 1_000_000
            with open(path, "w") as f:
                f.write((unit * (n // len(unit) + 1))[:n])
            row.append(tokenize_seconds(path))
        print(f"  {name}: 1 MB {row[0]:.2f} s, 10 MB {row[1]:.2f} s, ratio {row[1] / row[0]:.1f}")

    proc = subprocess.Popen([BIN, "serve", "--model", MODEL, "--port", "0"], stderr=subprocess.PIPE, text=True)
    port = None
    while port is None:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("server did not start")
        if "listening on http://" in line:
            port = int(line.strip().rsplit(":", 1)[1])
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        model_id = json.loads(urllib.request.urlopen(base + "/v1/models", timeout=60).read())["data"][0]["id"]
        body = json.dumps({"model": model_id, "prompt": "hello there " * 87_382, "max_tokens": 1}).encode()  # ~1 MB
        status = {}

        def post():
            req = urllib.request.Request(base + "/v1/completions", data=body, headers={"content-type": "application/json"})
            t0 = time.monotonic()
            try:
                urllib.request.urlopen(req, timeout=600).read()
                status["code"] = 200
            except urllib.error.HTTPError as e:
                status["code"] = e.code
            status["seconds"] = time.monotonic() - t0

        poster = threading.Thread(target=post)
        poster.start()
        waits = []
        while poster.is_alive():
            t0 = time.monotonic()
            urllib.request.urlopen(base + "/health", timeout=60).read()
            waits.append(time.monotonic() - t0)
            time.sleep(0.01)
        poster.join()
        print(f"serve: a 1 MB prompt answered {status.get('code')} after {status.get('seconds', 0):.2f} s; "
              f"/health polled {len(waits)} times meanwhile: median {1000 * statistics.median(waits):.1f} ms, "
              f"slowest {1000 * max(waits):.1f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
