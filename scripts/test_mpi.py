#!/usr/bin/env python3
"""`make test`: pipeline stages across the ranks of an MPI job (Open MPI's mpirun, installed by
`make deps`). The oracle is the single-process run: greedy tokens of a batch of prompts (chunked
prefill, decode of several sequences, parallel samples that copy blocks on write) under
`mpirun -np 2` and `-np 3` equal them for dense models and mixtures of experts; a served request
through rank 0 equals the same request to a single-process server; a rank that fails (a budget
too small, killed) ends the job with a message naming it, never a hang; and, where this machine
lets a test make network namespaces, two "hosts" joined by a veth pair limited to 1 Gbit/s carry
the same run over TCP.

usage: scripts/test_mpi.py [path/to/strata]
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build/debug/strata"))
MODELS = os.path.join(ROOT, "Tests/Fixtures/models")
CHAT = os.path.join(ROOT, "Tests/Fixtures/chat/model")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(cmd, timeout=180):
    try:
        p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return "timeout", e.stdout or "", e.stderr or ""


PROMPTS = [
    {"ids": [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65, 69, 73, 77, 81, 85, 89, 93, 97, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14], "max_tokens": 12},
    {"ids": [1, 2, 3], "max_tokens": 20},
    {"ids": [7] * 20, "max_tokens": 9, "n": 2, "temperature": 0},  # two samples share blocks: copy-on-write
    {"ids": list(range(1, 38)), "max_tokens": 15},
]


def mpirun(np_, args, extra=()):
    return ["mpirun", "-np", str(np_), *extra, BIN, *args]


def outputs(stdout):
    rows = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
    return sorted((r["index"], r.get("sample", 0), r["ids"]) for r in rows)


def generation(prompts_file):
    print("== greedy tokens: single process vs pipeline stages", flush=True)
    # dense (Gemma-3: 7 layers; Llama, GPT-2: 2) and mixtures (Qwen3-MoE, gpt-oss: 3 layers; Mixtral: 2)
    # (gpt-oss's hub layout keeps its experts with their layer: no shards)
    # (a GGUF mixture's experts are stacked tensors: a rank holds its slices of them)
    for name, ranks in [("gemma3", [2, 3]), ("qwen3-moe", [2, 3]), ("gpt-oss", [2, 3]), ("llama-gqa", [2]), ("gpt2", [2]), ("mixtral", [2]),
                        ("qwen3moe-q4_k_m.gguf", [2, 3])]:
        path = os.path.join(ROOT, "Tests/Fixtures/gguf", name) if name.endswith(".gguf") else os.path.join(MODELS, name)
        args = ["generate", "-m", path, "--prompts-file", prompts_file, "--temperature", "0", "--ram-budget", "1GiB"]
        if name.endswith(".gguf"):
            # exact activations: in the fast mode a prompt pass of more than 16 rows takes bf16
            # products on AVX-512 BF16 hosts, and the pipeline's micro-batches (fewer rows each) the
            # 8-bit kernel: both right, not the same sums (docs/distributed.md)
            args += ["--activations", "f32"]
        rc, out, err = run([BIN, *args])
        want = outputs(out)
        check(rc == 0 and len(want) == 5 and all(len(w[2]) > 0 for w in want), f"{name}: single process ran ({rc}) {err[-300:] if rc else ''}")
        # a mixture's experts spread over every rank (the default), or with their layers' stage
        modes = ["shard", "stage"] if name in ("qwen3-moe", "mixtral", "qwen3moe-q4_k_m.gguf") else ["shard"]
        for n in ranks:
            for mode in modes:
                rc, out, err = run(mpirun(n, args + ["--mpi-experts", mode]))
                got = outputs(out)
                split = re.search(r"pipeline: (\d+) ranks, layers (.*); rank 0's", err)
                sharded = split is not None and "experts of every layer" in split.group(2)
                check(rc == 0 and got == want and split and split.group(1) == str(n) and sharded == (len(modes) == 2 and mode == "shard"),
                      f"{name}: mpirun -np {n} --mpi-experts {mode} gives the single process's tokens ({split.group(2) if split else 'no split line'}) {err[-400:] if rc or got != want else ''}")


def library_without_mpi():
    print("== the library builds without MPI", flush=True)
    # the targets the Strata library (and the server) need, as Package.swift declares them: none is CMPI
    try:
        d = json.loads(subprocess.run(["swift", "package", "describe", "--type", "json"], cwd=ROOT, capture_output=True, text=True,
                                      timeout=300).stdout)
    except (subprocess.TimeoutExpired, ValueError) as e:
        check(False, f"swift package describe: {e}")
        return
    targets = {t["name"]: t for t in d["targets"]}
    for product in ("Strata", "StrataServer"):
        seen, todo = set(), [product]
        while todo:
            t = todo.pop()
            if t in seen or t not in targets:
                continue
            seen.add(t)
            todo += targets[t].get("target_dependencies", [])
        check("CMPI" not in seen and "StrataMPI" not in seen, f"{product} and what it needs ({len(seen)} targets) do not include CMPI or StrataMPI")
    check("CMPI" in targets.get("StrataMPI", {}).get("target_dependencies", []), "StrataMPI is the target over CMPI")


def report():
    print("== the run report under mpirun", flush=True)
    path = os.path.join(tempfile.gettempdir(), f"strata-mpi-report-{os.getpid()}.json")
    rc, out, err = run(mpirun(3, ["generate", "-m", os.path.join(MODELS, "qwen3-moe"), "--ids", "1,2,3", "-n", "6", "--temperature", "0",
                                  "--ram-budget", "1GiB", "--report", path]))
    try:
        r = json.load(open(path))
        p = r["pipeline"]
        ok = (rc == 0 and p["ranks"] == 3 and p["layers"] == [[0, 1], [1, 2], [2, 3]] and p["experts"] == [[0, 3], [3, 5], [5, 8]]
              and len(p["link_bytes_per_second"]) == 3 and all(x > 0 for x in p["link_bytes_per_second"] + p["link_latency_seconds"])
              and r["predicted"]["decode_tokens_per_second"] == p["plan"]["decode_tokens_per_second"] and "decode_tokens_per_second" in r["error"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        ok, err = False, f"{err[-300:]} {e}"
    check(ok, f"--report under mpirun -np 3 carries the split, the links and the cluster plan's prediction ({rc}) {'' if ok else err}")
    if os.path.exists(path):
        os.unlink(path)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(proc, port, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def complete(port, body):
    return post(port, "/v1/completions", body)


def rank_pids(pattern, rank):
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"strata") and pattern.encode() in cmd and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            pids.append(int(pid))
    return pids


def serving():
    print("== a served request through rank 0", flush=True)
    bodies = [{"model": "model", "prompt": "Hello there", "max_tokens": 16, "temperature": 0},
              {"model": "model", "prompt": "A longer prompt goes through both ranks in micro-batches", "max_tokens": 8, "temperature": 0}]
    answers = []
    for launcher in ([], ["mpirun", "-np", "2"]):
        port = free_port()
        cmd = ([*launcher, BIN] if launcher else [BIN]) + ["serve", "-m", CHAT, "--port", str(port)]
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            up = wait_listening(proc, port)
            check(up, f"{'mpirun -np 2 ' if launcher else ''}strata serve listens")
            if up:
                got = [complete(port, b)["choices"][0]["text"] for b in bodies]
                # every prompt row's logits (echo) and the last hidden states (embeddings) come back through rank 0 too
                echo = complete(port, {"model": "model", "prompt": "Hello there", "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 2})
                got.append(json.dumps(echo["choices"][0]["logprobs"]["token_logprobs"]))
                got.append(json.dumps(post(port, "/v1/embeddings", {"model": "model", "input": ["Hello there", "a second input"]})["data"]))
                answers.append(got)
            else:
                answers.append(None)
            if launcher:
                # a signal to rank 0 stops the server; it tells the other rank, and the job ends cleanly
                for pid in rank_pids("serve", 0):
                    os.kill(pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                rc = "hang"
            err = proc.stderr.read()
            check(rc == 0, f"{'mpirun -np 2 ' if launcher else ''}strata serve stops on a signal to rank 0 ({rc}) {err[-300:] if rc else ''}")
            if launcher:
                check("pipeline: 2 ranks, layers 0..<1 on rank 0, 1..<2 on rank 1" in err, "serve logs the split of layers")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    check(answers[0] is not None and answers[0] == answers[1] and all(answers[0]),
          f"the served answers, echoed logprobs and embeddings through rank 0 equal the single process's ({[a[:2] if a else a for a in answers]})")


def failures_end_the_job(prompts_file):
    print("== a failed rank ends the job, named, never a hang", flush=True)
    gemma = os.path.join(MODELS, "gemma3")
    base = ["generate", "-m", gemma, "--prompts-file", prompts_file, "--temperature", "0"]
    # rank 1's budget cannot hold its layers: MPMD launch, a budget per rank
    rc, out, err = run(["mpirun", "-np", "1", BIN, *base, ":", "-np", "1", BIN, *base, "--ram-budget", "64KiB"], timeout=60)
    check(rc not in (0, "timeout") and "rank 1" in err and "RAM budget 64.0 KiB is too small" in err,
          f"a budget too small on rank 1 ends the job naming rank 1 ({rc}): {err[-300:]}")
    # more ranks than layers
    rc, out, err = run(mpirun(3, ["generate", "-m", os.path.join(MODELS, "llama-gqa"), "--ids", "1,2,3", "-n", "4"]), timeout=60)
    check(rc not in (0, "timeout") and "3 ranks for a model of 2 layers" in err, f"3 ranks for 2 layers refused ({rc}): {err[-200:]}")
    # KV swap to disk is one process's
    rc, out, err = run(mpirun(2, ["generate", "-m", gemma, "--ids", "1,2,3", "-n", "4", "--ram-budget", "1GiB", "--kv-disk",
                                   os.path.join(tempfile.gettempdir(), "strata-mpi-swap")]), timeout=60)
    check(rc not in (0, "timeout") and "--kv-disk" in err, f"--kv-disk under mpirun refused ({rc}): {err[-200:]}")
    # a rank killed while the job serves: mpirun ends the job and names it
    port = free_port()
    proc = subprocess.Popen(["mpirun", "-np", "2", BIN, "serve", "-m", CHAT, "--port", str(port)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        up = wait_listening(proc, port)
        pids = rank_pids("serve", 1)
        check(up and len(pids) == 1, "a served job is up with its rank 1")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = "hang"
        err = proc.stderr.read()
        check(rc not in (0, "hang") and "rank 1" in err, f"rank 1 killed: the job ends naming it ({rc}): {err[-300:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


NS = ("strata-test-a", "strata-test-b")
ADDR = ("10.79.0.1", "10.79.0.2")


def sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def two_hosts(prompts_file):
    print("== two network namespaces as two hosts (veth pair, 1 Gbit/s)", flush=True)
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        print("skip: needs root, ip and tc (iproute2)")
        return
    teardown()
    setup = [["ip", "netns", "add", NS[0]], ["ip", "netns", "add", NS[1]],
             ["ip", "link", "add", "veth-sta", "type", "veth", "peer", "name", "veth-stb"],
             ["ip", "link", "set", "veth-sta", "netns", NS[0]], ["ip", "link", "set", "veth-stb", "netns", NS[1]],
             ["ip", "-n", NS[0], "addr", "add", ADDR[0] + "/24", "dev", "veth-sta"], ["ip", "-n", NS[1], "addr", "add", ADDR[1] + "/24", "dev", "veth-stb"],
             ["ip", "-n", NS[0], "link", "set", "veth-sta", "up"], ["ip", "-n", NS[1], "link", "set", "veth-stb", "up"],
             ["ip", "-n", NS[0], "link", "set", "lo", "up"], ["ip", "-n", NS[1], "link", "set", "lo", "up"]]
    for c in setup:
        r = sh(*c)
        if r.returncode != 0:
            print(f"skip: this machine cannot make network namespaces ({' '.join(c)}: {r.stderr.strip()})")
            teardown()
            return
    try:
        # 1 Gbit/s each way; the 0.2 ms delay of netem where the kernel has it (this VM's kernel has no sch_netem)
        shaped = []
        for ns, dev in zip(NS, ("veth-sta", "veth-stb")):
            r = sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "0.2ms", "rate", "1gbit")
            if r.returncode == 0:
                shaped.append("netem 0.2 ms 1 Gbit/s")
            else:
                r = sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "1gbit", "burst", "32kbit", "latency", "50ms")
                shaped.append("tbf 1 Gbit/s (no netem in this kernel)" if r.returncode == 0 else "unshaped")
        print("links: " + ", ".join(shaped))
        agent = os.path.join(tempfile.mkdtemp(), "nsagent")
        with open(agent, "w") as f:
            f.write("#!/bin/sh\n# mpirun's rsh agent: a 'host' is a namespace's address; the command runs inside it\n"
                    f'host="$1"; shift\ncase "$host" in {ADDR[0]}) ns={NS[0]} ;; {ADDR[1]}) ns={NS[1]} ;; *) exit 1 ;; esac\n'
                    'exec ip netns exec "$ns" /bin/sh -c "$*"\n')
        os.chmod(agent, 0o755)
        net = ["--host", f"{ADDR[0]}:1,{ADDR[1]}:1", "--mca", "plm_rsh_agent", agent, "--mca", "oob_tcp_if_include", "10.79.0.0/24",
               "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "10.79.0.0/24", "-x", "PATH"]
        for name in ("gemma3", "qwen3-moe"):
            args = ["generate", "-m", os.path.join(MODELS, name), "--prompts-file", prompts_file, "--temperature", "0", "--ram-budget", "1GiB"]
            rc, out, err = run([BIN, *args])
            want = outputs(out)
            before = sh("ip", "-n", NS[1], "-s", "-j", "link", "show", "veth-stb").stdout
            rc, out, err = run(["ip", "netns", "exec", NS[0], "mpirun", "-np", "2", *net, BIN, *args])
            after = sh("ip", "-n", NS[1], "-s", "-j", "link", "show", "veth-stb").stdout
            moved = json.loads(after)[0]["stats64"]["rx"]["bytes"] - json.loads(before)[0]["stats64"]["rx"]["bytes"]
            check(rc == 0 and outputs(out) == want and moved > 10000,
                  f"{name}: two hosts over the veth pair give the single process's tokens ({moved} bytes into the second host) {err[-400:] if rc else ''}")
    finally:
        teardown()


def teardown():
    for ns in NS:
        sh("ip", "netns", "del", ns)


def main():
    if not shutil.which("mpirun"):
        print("mpirun not found: `make deps` installs Open MPI (openmpi-bin)")
        sys.exit(1)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for p in PROMPTS:
            f.write(json.dumps(p) + "\n")
        prompts_file = f.name
    try:
        library_without_mpi()
        generation(prompts_file)
        report()
        serving()
        failures_end_the_job(prompts_file)
        two_hosts(prompts_file)
    finally:
        os.unlink(prompts_file)
    if failures:
        print(f"{len(failures)} failed")
        sys.exit(1)
    print("all MPI cases passed")


if __name__ == "__main__":
    main()
