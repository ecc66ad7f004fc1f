#!/usr/bin/env python3
"""Hostile flags and files against the strata CLI (issue 16's reproduced cases): each must end
with a non-zero exit and a message naming the flag, field or file -- never a signal, never a hang.

    python3 scripts/test_cli_hostile.py BIN
"""
import json
import os
import subprocess
import sys
import tempfile

BIN = sys.argv[1]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "models", "llama-gqa")
BIG = "9223372036854775807"
failures = []


def case(name, args, expect, stdin=None):
    try:
        r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, input=stdin)
    except subprocess.TimeoutExpired:
        failures.append(name)
        print(f"FAIL {name}: hung (60 s)")
        return
    out = r.stdout + r.stderr
    ok = r.returncode > 0 and expect in out
    print(("ok   " if ok else "FAIL ") + f"{name} (exit {r.returncode})" + ("" if ok else f": {out[-300:]!r}"))
    if not ok:
        failures.append(name)


def check(ok, name, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def interrupted_run(tmp):
    """SIGINT in the middle of a batch run with a KV disk file and a report: exit 130, the
    report written and marked interrupted, every request printed, the swap file gone."""
    import signal
    import time
    prompts = os.path.join(tmp, "many.jsonl")
    with open(prompts, "w") as f:
        for i in range(400):
            f.write(json.dumps({"ids": [1 + i % 50, 2, 3], "max_tokens": 100}) + "\n")
    kv, report = os.path.join(tmp, "kv.swap"), os.path.join(tmp, "report.json")
    p = subprocess.Popen([BIN, "generate", "--model", MODEL, "--prompts-file", prompts, "--ignore-eos", "--temperature", "0",
                          "--kv-disk", kv, "--kv-disk-size", "16MiB", "--report", report, "--max-batch", "8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not os.path.exists(kv) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        check(False, "SIGINT: generate stops", "hung")
        return
    check(p.returncode == 130, "SIGINT: generate exits 130", f"exit {p.returncode}: {err[-300:]}")
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    check(len(lines) == 400 and any(l["stop_reason"] == "cancelled" for l in lines),
          "SIGINT: every request printed, the unfinished ones cancelled", f"{len(lines)} lines")
    rep = json.load(open(report)) if os.path.exists(report) else {}
    check(rep.get("interrupted") is True, "SIGINT: the report is written and marked interrupted", str(rep)[:200])
    check(not os.path.exists(kv), "SIGINT: the KV swap file is removed")


def swap_file_cases(tmp):
    """--kv-disk never overwrites a file that is not Strata's."""
    victim = os.path.join(tmp, "precious.bin")
    with open(victim, "wb") as f:
        f.write(b"do not overwrite me")
    case("--kv-disk on an existing file", ["generate", "--model", MODEL, "--ids", "1", "--max-tokens", "2", "--kv-disk", victim], "not a Strata KV swap file")
    check(open(victim, "rb").read() == b"do not overwrite me", "the existing file is untouched")
    small = os.path.join(tmp, "small.swap")
    case("--kv-disk-size below one block", ["generate", "--model", MODEL, "--ids", "1", "--max-tokens", "2", "--kv-disk", small, "--kv-disk-size", "10"], "holds no block")
    check(not os.path.exists(small), "a refused swap file leaves nothing behind")


def stop_midway(args, sig, ready=lambda: True, delay=0.3):
    """Runs BIN args, sends `sig` once `ready()` (then `delay` s), returns (exit code, stderr)."""
    import time
    p = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not ready() and time.time() < deadline and p.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        return None, "hung"
    return p.returncode, err


def files_and_signals(tmp):
    """Hostile input II, class 7: an output is complete or absent, whatever signal ends the
    process; a write never replaces what is not a regular file; --kv-disk never follows a
    dangling link."""
    import signal
    import stat
    # a FIFO (and, as root, a character device) named as an output: refused, left as it was
    fifo = os.path.join(tmp, "out.fifo")
    os.mkfifo(fifo)
    case("plan --svg naming a FIFO", ["plan", "--model", MODEL, "--ram-budget", "1GiB", "--svg", fifo], "not a regular file")
    case("plan --out naming a FIFO", ["plan", "--model", MODEL, "--ram-budget", "1GiB", "--out", fifo], "not a regular file")
    case("logits --out naming a FIFO", ["logits", "--model", MODEL, "--ids", "1,2", "--out", fifo], "not a regular file")
    case("quantize --out naming a FIFO", ["quantize", "--model", MODEL, "--type", "q8_0", "--out", fifo], "not a regular file")
    check(stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO is still a FIFO")
    if os.geteuid() == 0:
        node = os.path.join(tmp, "null-node")
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        case("generate --report naming a device node", ["generate", "--model", MODEL, "--ids", "1", "--max-tokens", "1", "--report", node], "not a regular file")
        check(stat.S_ISCHR(os.lstat(node).st_mode), "the device node is still a device node")
    # --kv-disk on a dangling symbolic link: refused, its target not created
    target = os.path.join(tmp, "nowhere", "..", "swap-target")
    link = os.path.join(tmp, "dangling.swap")
    os.symlink(target, link)
    case("--kv-disk on a dangling link", ["generate", "--model", MODEL, "--ids", "1", "--max-tokens", "2", "--kv-disk", link], "dangling.swap")
    check(not os.path.exists(os.path.join(tmp, "swap-target")), "the dangling link's target is not created")
    # SIGTERM / SIGHUP in the middle of quantize and synth: the output complete, or absent
    src = os.path.join(tmp, "synth-src")
    code, err = stop_midway(["synth", "--preset", "tiny", "--out", src], signal.SIGTERM, delay=0.2)
    whole = all(os.path.exists(os.path.join(src, f)) for f in ("config.json", "model.safetensors", "tokenizer.json"))
    check((code == 130 and not os.path.exists(src)) or (code == 0 and whole), "SIGTERM during synth: the folder complete or absent",
          f"exit {code}, {os.listdir(src) if os.path.exists(src) else 'absent'}: {err[-200:]}")
    check(not os.path.exists(src + ".partial"), "SIGTERM during synth: no staging folder left")
    subprocess.run([BIN, "synth", "--preset", "tiny", "--out", src], check=True, capture_output=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        out = os.path.join(tmp, f"q-{int(sig)}.gguf")
        code, err = stop_midway(["quantize", "--model", src, "--type", "q4_k_m", "--out", out], sig, delay=0.2)
        ok = (code == 130 and not os.path.exists(out)) or (code == 0 and os.path.getsize(out) > 0)
        check(ok and not os.path.exists(out + ".partial"), f"signal {int(sig)} during quantize: the GGUF complete or absent, no .partial",
              f"exit {code}: {err[-200:]}")
    # SIGHUP during a run with a KV swap file: the swap file is removed
    kv = os.path.join(tmp, "hup.swap")
    prompts = os.path.join(tmp, "hup.jsonl")
    with open(prompts, "w") as f:
        for i in range(400):
            f.write(json.dumps({"ids": [1 + i % 50, 2, 3], "max_tokens": 100}) + "\n")
    code, err = stop_midway(["generate", "--model", MODEL, "--prompts-file", prompts, "--ignore-eos", "--temperature", "0",
                             "--kv-disk", kv, "--kv-disk-size", "16MiB", "--max-batch", "8"], signal.SIGHUP, ready=lambda: os.path.exists(kv))
    check(code is not None and code != 0 and not os.path.exists(kv), "SIGHUP during generate: it stops and removes its swap file",
          f"exit {code}: {err[-200:]}")
    # synth on a full disk (a 1 MiB tmpfs, when one can be mounted): nothing left behind
    mnt = os.path.join(tmp, "small-fs")
    os.makedirs(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], capture_output=True).returncode == 0:
        try:
            out = os.path.join(mnt, "model")
            case("synth on a full disk", ["synth", "--preset", "tiny", "--out", out], "disk full")
            check(os.listdir(mnt) == [], "synth on a full disk leaves nothing", str(os.listdir(mnt)))
        finally:
            subprocess.run(["umount", mnt], capture_output=True)
    else:
        print("skip synth on a full disk (no tmpfs mount here)")


def json_outputs_are_snake_case(tmp):
    """Every field name in the CLI's JSON outputs is snake_case (labels such as the ledger's lines,
    tensor names and dtypes are data, not fields: names with spaces, dots or digits after '_')."""
    import re
    moe = os.path.join(ROOT, "Tests", "Fixtures", "models", "qwen3-moe")
    plan_out = os.path.join(tmp, "plan.json")
    report = os.path.join(tmp, "report.json")
    runs = {"plan --format json": ["plan", "--model", moe, "--ram-budget", "1GiB", "--format", "json"],
            "inspect --json": ["inspect", "--model", moe, "--json"], "info": ["info"],
            "generate --json --report": ["generate", "--model", MODEL, "--prompt", "hi", "--max-tokens", "3", "--json", "--report", report],
            "bench-model --json": ["bench-model", "--model", MODEL, "-p", "8", "-n", "4", "-r", "1", "--json"]}
    docs = {}
    for name, args in runs.items():
        r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)
        try:
            docs[name] = json.loads(r.stdout) if r.stdout.strip().startswith(("{", "[")) else None
        except ValueError:
            docs[name] = None
    subprocess.run([BIN, "plan", "--model", moe, "--ram-budget", "1GiB", "--out", plan_out], capture_output=True, timeout=300)
    docs["plan file"] = json.load(open(plan_out)) if os.path.exists(plan_out) else None
    docs["run report"] = json.load(open(report)) if os.path.exists(report) else None

    def camel(v, path, out):
        if isinstance(v, dict):
            for k, x in v.items():
                if re.fullmatch(r"[a-z]+[A-Z][A-Za-z0-9]*", k):
                    out.append(path + "/" + k)
                camel(x, path + "/" + k, out)
        elif isinstance(v, list):
            for x in v[:4]:
                camel(x, path + "[]", out)
    for name, d in docs.items():
        bad = []
        camel(d, "", bad)
        check(d is not None and not bad, f"JSON of {name}: snake_case field names", f"{bad[:6]} (or no JSON)")
    plan = docs["plan file"] or {}
    check(plan.get("schema_version") == 1, "the plan JSON carries schema_version 1", str(plan.get("schema_version")))
    if plan:
        old = dict(plan)
        old.pop("schema_version")
        old_path = os.path.join(tmp, "old-plan.json")
        json.dump(old, open(old_path, "w"))
        case("a plan without schema_version", ["generate", "--model", moe, "--prompt", "hi", "--max-tokens", "2", "--plan", old_path], "schema_version")


def main():
    tmp = tempfile.mkdtemp(prefix="strata-hostile-")

    def write(name, text):
        p = os.path.join(tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    # strata plan --hosts: every field of the hosts file checked, named
    cfg = os.path.join(ROOT, "Tests/Fixtures/configs/llama-2-70b")
    for label, doc, expect in [
        ("not an object", "[1, 2]", "an object is needed, not an array"),
        ("unknown top field", json.dumps({"hosts": [{"ram_budget": "8GiB"}], "extra": 1}), "unknown field 'extra'"),
        ("a field twice", '{"hosts": [{"ram_budget": "8GiB", "ram_budget": "1KiB"}]}', "hosts[0]: field 'ram_budget' given twice"),
        ("a name not a string", json.dumps({"hosts": [{"ram_budget": "8GiB", "name": 3}]}), "hosts[0].name"),
        ("latency true", json.dumps({"hosts": [{"ram_budget": "8GiB", "network_latency_seconds": True}]}), "hosts[0].network_latency_seconds"),
        ("unknown host field", json.dumps({"hosts": [{"ram_budget": "8GiB", "cores": 4}]}), "hosts[0]: unknown field 'cores'"),
        ("missing budget", json.dumps({"hosts": [{"name": "a"}]}), "hosts[0].ram_budget"),
        ("bad budget", json.dumps({"hosts": [{"ram_budget": "lots"}]}), "hosts[0].ram_budget"),
        ("negative bandwidth", json.dumps({"hosts": [{"ram_budget": "8GiB", "network_bytes_per_second": -1}]}), "hosts[0].network_bytes_per_second"),
        ("missing profile file", json.dumps({"hosts": [{"ram_budget": "8GiB", "profile": "nowhere.json"}]}), "hosts[0].profile"),
        ("more hosts than layers", json.dumps({"hosts": [{"ram_budget": "8GiB"}] * 81}), "each host needs a layer"),
        ("a host too small", json.dumps({"hosts": [{"ram_budget": "64GiB"}, {"name": "tiny", "ram_budget": "1MiB"}]}), "host tiny"),
    ]:
        case(f"plan --hosts: {label}", ["plan", "--model", cfg, "--dtype", "q4_k", "--hosts", write("hosts.json", doc)], expect)
    case("plan --hosts with --ram-budget", ["plan", "--model", cfg, "--dtype", "q4_k", "--ram-budget", "1GiB", "--hosts", write("hosts.json", json.dumps({"hosts": [{"ram_budget": "8GiB"}]}))], "--ram-budget and --hosts")
    case("--mpi-experts other", ["generate", "--model", MODEL, "--ids", "1", "--mpi-experts", "half"], "--mpi-experts")
    # strata profile --routing: a mixture's routing histogram; its options refused by name
    MOE = os.path.join(ROOT, "Tests", "Fixtures", "models", "qwen3-moe")
    case("profile --routing on a dense model", ["profile", "--routing", MODEL], "has no experts")
    case("profile --calibration-file without --routing", ["profile", "--calibration-file", MODEL], "give --routing")
    case("profile --calibration-tokens 0", ["profile", "--routing", MOE, "--calibration-tokens", "0"], "--calibration-tokens")
    case("profile --calibration-file missing", ["profile", "--routing", MOE, "--calibration-file", os.path.join(tmp, "nowhere.txt")], "--calibration-file")
    case("profile --calibration-file empty", ["profile", "--routing", MOE, "--calibration-file", write("empty.txt", "")], "has no tokens")
    notutf8 = os.path.join(tmp, "latin1.txt")
    with open(notutf8, "wb") as f:
        f.write(b"caf\xe9 cr\xe8me")
    case("profile --calibration-file not UTF-8", ["profile", "--routing", MOE, "--calibration-file", notutf8], "not UTF-8")

    case("logits: token id wrapping to 5", ["logits", "--model", MODEL, "--ids", "4294967301"], "outside the vocabulary")
    case("generate: token id wrapping to 5", ["generate", "--model", MODEL, "--ids", "4294967301", "--max-tokens", "2"], "outside the vocabulary")
    case("generate: negative token id", ["generate", "--model", MODEL, "--ids", "1,-3", "--max-tokens", "2"], "outside the vocabulary")
    case("generate: --max-tokens Int.max under a budget", ["generate", "--model", MODEL, "--ids", "1", "--max-tokens", BIG, "--ram-budget", "200MiB"], "--max-tokens")
    case("generate: --kv-block-size Int.max", ["generate", "--model", MODEL, "--ids", "1", "--kv-block-size", BIG], "--kv-block-size")
    case("generate: --kv-type q4_k", ["generate", "--model", MODEL, "--ids", "1", "--kv-type", "q4_k"], "--kv-type")
    case("generate: --kv-type q8_0 on heads of 12", ["generate", "--model", MODEL, "--ids", "1", "--kv-type", "q8_0"], "head_dim")
    case("serve: --kv-type q8_0 on heads of 12", ["serve", "--model", MODEL, "--port", "0", "--kv-type", "q8_0"], "head_dim")
    case("plan: --kv-type q8_0 on heads of 12", ["plan", "--model", MODEL, "--ram-budget", "1GiB", "--kv-type", "q8_0"], "head_dim")
    case("generate: --prefetch Int.max", ["generate", "--model", MODEL, "--ids", "1", "--prefetch", BIG], "--prefetch")
    case("generate: --ram-budget 8388608TiB", ["generate", "--model", MODEL, "--ids", "1", "--ram-budget", "8388608TiB"], "--ram-budget")
    case("generate: --kv-disk-size 1e30GiB", ["generate", "--model", MODEL, "--ids", "1", "--kv-disk", os.path.join(tmp, "kv"), "--kv-disk-size", "1e30GiB"], "--kv-disk-size")
    p = write("maxtok.jsonl", json.dumps({"ids": [1], "max_tokens": int(BIG)}) + "\n")
    case("prompts file: max_tokens Int.max", ["generate", "--model", MODEL, "--prompts-file", p, "--ram-budget", "200MiB", "--no-plan"], "max_tokens")
    for n in (-5, 1000000):
        p = write(f"n{n}.jsonl", json.dumps({"ids": [1], "n": n}) + "\n")
        case(f"prompts file: n {n}", ["generate", "--model", MODEL, "--prompts-file", p, "--ram-budget", "200MiB", "--no-plan"], "n must be")
    p = write("ids.jsonl", json.dumps({"ids": [4294967301]}) + "\n")
    case("prompts file: token id wrapping", ["generate", "--model", MODEL, "--prompts-file", p], "outside the vocabulary")
    case("bench-linear: quantized dtype off its block", ["bench-linear", "--hidden", "100", "--dtypes", "q4_k"], "multiples of its block")
    r = subprocess.run([BIN, "bench-linear", "--dtypes", "q4_k", "--dtypes", "q8_0", "--rows", "1", "--rows", "3", "--layers", "1",
                        "--repeats", "1", "--no-blas", "--hidden", "256", "--kv-dim", "256", "--ffn", "512"],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0 and "| q4_k | 3 |" in r.stdout, "bench-linear: quantized dtypes run", (r.stdout + r.stderr)[-300:])
    case("bench-batch: --repeats 0", ["bench-batch", "--model", MODEL, "--batches", "1", "--repeats", "0"], "--repeats")
    case("bench-batch: --batches=-3", ["bench-batch", "--model", MODEL, "--batches=-3"], "batch sizes must be positive")
    r = subprocess.run([BIN, "bench-batch", "--model", MODEL, "--batches", "1", "--batches", "2", "--repeats", "2", "--prompt", "4",
                        "--gen", "4", "--json"], capture_output=True, text=True, timeout=120)
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    order = [l.split(":")[0] for l in r.stderr.splitlines() if l.startswith("batch ")]
    check(r.returncode == 0 and [x["batch"] for x in rows] == [1, 2] and abs(rows[0]["vs_batch_1"] - 1) < 1e-9
          and order == ["batch 1", "batch 2", "batch 2", "batch 1"],
          "bench-batch: one row per batch size, repeats interleaved in alternating order", (r.stdout + r.stderr)[-300:])
    msgs = write("msgs.json", json.dumps({"messages": [{"role": "user", "content": "hi"}]}))
    case("chat-template: --chat-template names no file", ["chat-template", "--model", MODEL, "--messages", msgs, "--chat-template", "/nonexistent/t.jinja"],
         "/nonexistent/t.jinja")
    tpl = write("t.jinja", "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    r = subprocess.run([BIN, "chat-template", "--model", MODEL, "--messages", msgs, "--chat-template", tpl, "--add-generation-prompt"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and json.loads(r.stdout)["text"] == "<user>hi", "chat-template: --chat-template FILE renders for a model without one",
          (r.stdout + r.stderr)[-300:])
    # list flags in either form, and llama.cpp's short flags
    r = subprocess.run([BIN, "bench-batch", "-m", MODEL, "--batches", "1,2", "--repeats", "1", "--prompt", "4", "--gen", "4", "--json", "-t", "1"],
                       capture_output=True, text=True, timeout=120)
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    check(r.returncode == 0 and [x["batch"] for x in rows] == [1, 2], "bench-batch: -m, -t and --batches 1,2 (the comma form)", (r.stdout + r.stderr)[-300:])
    case("bench-batch: --batches 1,x", ["bench-batch", "--model", MODEL, "--batches", "1,x"], "--batches")
    a = subprocess.run([BIN, "generate", "-m", MODEL, "--ids", "1,5,9", "-n", "3", "--temperature", "0", "--json"], capture_output=True, text=True, timeout=120)
    b = subprocess.run([BIN, "generate", "--model", MODEL, "--ids", "1,5,9", "--max-tokens", "3", "--temperature", "0", "--json"], capture_output=True, text=True, timeout=120)
    check(a.returncode == 0 and a.stdout == b.stdout and len(json.loads(a.stdout)["ids"]) == 3, "generate: -m and -n are --model and --max-tokens", (a.stdout + a.stderr)[-300:])
    case("plan: --batch Int.max", ["plan", "--model", MODEL, "--ram-budget", "1GiB", "--batch", BIG], "--batch")
    case("plan: --prompt-tokens -5", ["plan", "--model", MODEL, "--ram-budget", "1GiB", "--prompt-tokens", "-5"], "--prompt-tokens")
    good = {"weights": "tiered", "streamed_layers": [], "prefetch_depth": 1, "kv_block_size": 16, "kv_blocks_ram": 8, "kv_blocks_disk": 0, "batch_size": 1}
    for field, value in (("prefetch_depth", -1), ("kv_blocks_ram", -4), ("kv_block_size", 1000000000), ("streamed_layers", [99])):
        p = write(f"placement-{field}.json", json.dumps({**good, field: value}))
        case(f"placement file: {field} {value}", ["generate", "--model", MODEL, "--ids", "1", "--max-tokens", "2", "--placement", p], field)
    # shapes no machine holds, in config.json (config alone: inspect reads no weights)
    base = json.load(open(os.path.join(MODEL, "config.json")))
    for field, value in (("num_hidden_layers", 1000000000), ("vocab_size", 2 ** 62), ("intermediate_size", 2 ** 62),
                         ("head_dim", 2 ** 62), ("num_attention_heads", 2 ** 62), ("hidden_size", -48),
                         ("max_position_embeddings", 2 ** 62), ("num_key_value_heads", 0), ("rms_norm_eps", -1)):
        d = os.path.join(tmp, f"config-{field}")
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({**base, field: value}, f)
        case(f"config.json: {field} {value}", ["inspect", "--model", d], field)
    # a FIFO where a weights file should be: refused without blocking
    d = os.path.join(tmp, "fifo-model")
    os.makedirs(d)
    for f in ("config.json", "tokenizer.json"):
        os.symlink(os.path.join(MODEL, f), os.path.join(d, f))
    os.mkfifo(os.path.join(d, "model.safetensors"))
    case("a FIFO as the weights file", ["generate", "--model", d, "--ids", "1", "--max-tokens", "2"], "model.safetensors")
    d2 = os.path.join(tmp, "fifo-config")
    os.makedirs(d2)
    os.mkfifo(os.path.join(d2, "config.json"))
    case("a FIFO as config.json", ["inspect", "--model", d2], "config.json")
    d3 = os.path.join(tmp, "dev-config")
    os.makedirs(d3)
    os.symlink("/dev/zero", os.path.join(d3, "config.json"))
    case("/dev/zero as config.json", ["inspect", "--model", d3], "not a regular file")
    os.mkfifo(os.path.join(tmp, "fifo.gguf"))
    case("a FIFO as a GGUF file", ["generate", "--model", os.path.join(tmp, "fifo.gguf"), "--ids", "1"], "fifo.gguf")
    json_outputs_are_snake_case(tmp)
    interrupted_run(tmp)
    swap_file_cases(tmp)
    files_and_signals(tmp)
    if failures:
        print(f"{len(failures)} failed")
        sys.exit(1)
    print("all hostile CLI cases refused cleanly")


if __name__ == "__main__":
    main()
