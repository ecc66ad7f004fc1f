#!/usr/bin/env python3
"""End-to-end tests of `strata serve` with the official `openai` Python client (run by
scripts/test-serve.sh from `make test`). The oracle for every completion is a solo
`strata generate` of the same prompt ids (from `strata chat-template --ids`), greedy.

    python scripts/test_serve.py BIN MODEL_DIR
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import openai
from openai import OpenAI

BIN, MODEL = sys.argv[1], sys.argv[2]
NAME = "tiny"
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


class Server:
    def __init__(self, *extra, model=None):
        self.proc = subprocess.Popen([BIN, "serve", "--model", model or MODEL, "--port", "0", "--served-model-name", NAME, *extra],
                                     stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if "listening on http://" in line:
                self.port = int(line.strip().rsplit(":", 1)[1])
                break
        if self.port is None:
            raise SystemExit("server did not start:\n" + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"
        self.client = OpenAI(base_url=self.base + "/v1", api_key="unused", max_retries=0, timeout=60)

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def metrics(self):
        text = urllib.request.urlopen(self.base + "/metrics", timeout=10).read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = int(v)
        return out

    def healthy(self):
        try:
            return json.loads(urllib.request.urlopen(self.base + "/health", timeout=10).read()) == {"status": "ok"}
        except Exception:
            return False

    def raw(self, path, body, content_type="application/json"):
        req = urllib.request.Request(self.base + path, data=body, headers={"content-type": content_type}, method="POST")
        try:
            r = urllib.request.urlopen(req, timeout=30)
            return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)


def solo(messages, max_tokens):
    """The greedy completion of a conversation by `strata generate` alone."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"messages": messages}, f)
    r = json.loads(subprocess.check_output([BIN, "chat-template", "--model", MODEL, "--messages", f.name, "--add-generation-prompt", "--ids"]))
    os.unlink(f.name)
    ids = ",".join(map(str, r["ids"]))
    g = json.loads(subprocess.check_output([BIN, "generate", "--model", MODEL, "--ids", ids, "--temperature", "0",
                                            "--max-tokens", str(max_tokens), "--json"], stderr=subprocess.DEVNULL))
    return r["ids"], g["text"], len(g["ids"])


def conversation(i):
    words = ["hello world", "the quick brown fox", "jumps over", "the lazy dog", "a tiny model", "serves many",
             "clients at once", "with one engine"]
    return [{"role": "system", "content": "Test number %d." % i},
            {"role": "user", "content": words[i % len(words)] + " " + words[(i * 3 + 1) % len(words)]}]


def main():
    s = Server("--max-running", "16", "--max-queued", "16")
    c = s.client
    try:
        models = c.models.list()
        check([m.id for m in models.data] == [NAME], "GET /v1/models lists the served model")

        # 1. chat completion, whole and streamed, equals the solo greedy completion
        msgs = conversation(0)
        ids, want, n = solo(msgs, 12)
        r = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=12, temperature=0)
        check(r.choices[0].message.content == want, "chat completion equals solo strata generate")
        check(r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == n, "usage counts the prompt and completion tokens")
        check(r.choices[0].finish_reason in ("length", "stop"), "finish_reason is set")
        chunks = list(c.chat.completions.create(model=NAME, messages=msgs, max_tokens=12, temperature=0, stream=True,
                                                stream_options={"include_usage": True}))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        check(text == want, "streamed chat completion equals solo strata generate")
        check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == n and not chunks[-1].choices,
              "stream_options.include_usage ends with a usage chunk")
        check(any(ch.choices and ch.choices[0].finish_reason for ch in chunks), "the stream carries a finish_reason")

        # 2. logprobs: greedy picks the most likely token
        r = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
        lp = r.choices[0].logprobs.content
        check(len(lp) == r.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in lp), "logprobs: one entry per token, 3 alternatives")
        check(all(abs(t.logprob - t.top_logprobs[0].logprob) < 1e-6 and t.logprob <= 0 for t in lp), "greedy tokens are the most likely ones")

        # 3. completions endpoint
        g = json.loads(subprocess.check_output([BIN, "generate", "--model", MODEL, "--prompt", "the quick brown", "--temperature", "0",
                                                "--max-tokens", "10", "--json"], stderr=subprocess.DEVNULL))
        r = c.completions.create(model=NAME, prompt="the quick brown", max_tokens=10, temperature=0)
        check(r.choices[0].text == g["text"], "text completion equals solo strata generate")

        # 3b. stop strings spanning 2-4 tokens end the text right before them, whole and streamed, n = 2
        pieces = [ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model=NAME, messages=msgs, max_tokens=12, temperature=0, stream=True) if ch.choices]
        pieces = [p for p in pieces if p]
        full = "".join(pieces)
        for span in (2, 3, 4):
            i = next((i for i in range(1, len(pieces) - span) if pieces[i] and pieces[i + span - 1]), None)
            if i is None:
                check(False, f"greedy answer long enough for a stop string over {span} tokens: {pieces}")
                continue
            stop = pieces[i][-1:] + "".join(pieces[i + 1:i + span - 1]) + pieces[i + span - 1][:1]
            want_text = full[:full.find(stop)]
            r = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=12, temperature=0, stop=[stop], n=2)
            ok = all(ch.message.content == want_text and ch.finish_reason == "stop" for ch in r.choices)
            streamed = {}
            for ch in c.chat.completions.create(model=NAME, messages=msgs, max_tokens=12, temperature=0, stop=stop, n=2, stream=True):
                for choice in ch.choices:
                    streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
            check(ok and streamed == {0: want_text, 1: want_text},
                  f"a stop string over {span} tokens ends the text before it, whole and streamed, n=2 ({stop!r})")

        # 4. 16 concurrent streaming clients, each exactly its solo greedy tokens
        wants = [solo(conversation(i), 24) for i in range(16)]
        steps_before = s.metrics()["strata_engine_steps_total"]
        got = [None] * 16
        def client(i):
            try:
                st = c.chat.completions.create(model=NAME, messages=conversation(i), max_tokens=24, temperature=0, stream=True)
                got[i] = "".join(ch.choices[0].delta.content or "" for ch in st if ch.choices)
            except Exception as e:
                got[i] = "error: %r" % e
        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        same = sum(1 for i in range(16) if got[i] == wants[i][1])
        check(same == 16, f"16 concurrent streams each equal their solo completion ({same}/16)")
        m = s.metrics()
        tokens = sum(w[2] for w in wants)
        check(m["strata_engine_steps_total"] - steps_before < tokens, f"they shared engine steps ({m['strata_engine_steps_total'] - steps_before} steps for {tokens} tokens)")

        # 5. a client that disconnects mid-stream: its request is cancelled, its blocks freed
        before = s.metrics()
        sock = socket.create_connection(("127.0.0.1", s.port))
        body = json.dumps({"model": NAME, "messages": conversation(3), "max_tokens": 60, "temperature": 0, "stream": True,
                           "ignore_eos": True}).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        got_bytes = b""
        while got_bytes.count(b"data:") < 3:
            part = sock.recv(4096)
            if not part:
                break
            got_bytes += part
        mid = s.metrics()
        sock.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            m = s.metrics()
            if m["strata_requests_cancelled_total"] == before["strata_requests_cancelled_total"] + 1 and m["strata_requests_running"] == 0:
                break
            time.sleep(0.05)
        check(mid["strata_kv_blocks_used"] > 0, f"mid-stream the request holds KV blocks ({mid['strata_kv_blocks_used']})")
        check(m["strata_requests_cancelled_total"] == before["strata_requests_cancelled_total"] + 1, "the disconnected request is cancelled")
        check(m["strata_kv_blocks_used"] == 0 and m["strata_requests_running"] == 0, "its KV blocks are back in /metrics")

        # 6. bad requests: the documented status, and the server still serves
        code, err = s.raw("/v1/chat/completions", b'{"model": "tiny", "messages": [')
        check(code == 400 and "error" in err and "JSON" in err["error"]["message"], "malformed JSON: 400")
        try:
            c.chat.completions.create(model=NAME, messages=msgs, temperature="hot")
            check(False, "wrong type: 400")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and e.body["param"] == "temperature", "wrong type: 400 naming the field")
        try:
            c.chat.completions.create(model=NAME, messages="hello")
            check(False, "messages not an array: 400")
        except openai.BadRequestError as e:
            check(e.body["param"] == "messages", "messages not an array: 400 naming the field")
        try:
            c.chat.completions.create(model="gpt-4o", messages=msgs)
            check(False, "unknown model: 404")
        except openai.NotFoundError as e:
            check(e.status_code == 404 and e.body["code"] == "model_not_found", "unknown model: 404 model_not_found")
        try:
            c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hello world " * 200}])
            check(False, "prompt over the context: 400")
        except openai.BadRequestError as e:
            check(e.body["code"] == "context_length_exceeded", "prompt over the context: 400 context_length_exceeded")
        try:
            c.chat.completions.create(model=NAME, messages=msgs, max_tokens=1000)
            check(False, "max_tokens over the context: 400")
        except openai.BadRequestError as e:
            check(e.body["code"] == "context_length_exceeded", "prompt + max_tokens over the context: 400")
        try:
            c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
            check(False, "template refusal: 400")
        except openai.BadRequestError as e:
            check("alternate" in e.body["message"], "a conversation the chat template refuses: 400 with its message")
        code, _ = s.raw("/v1/nothing", b"{}")
        check(code == 404, "unknown route: 404")
        check(s.healthy(), "still healthy after the bad requests")
        r = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=12, temperature=0)
        check(r.choices[0].message.content == want, "still serving after the bad requests")
    finally:
        rc = s.stop()
    check(rc == 0, "Ctrl-C: exits 0")

    # 6b. a hostile chat template (model data): each request it breaks is a 400, the server keeps serving
    hostile_dir = tempfile.mkdtemp()
    for f in os.listdir(MODEL):
        os.symlink(os.path.abspath(os.path.join(MODEL, f)), os.path.join(hostile_dir, f))
    os.unlink(os.path.join(hostile_dir, "tokenizer_config.json"))
    cfg = json.load(open(os.path.join(MODEL, "tokenizer_config.json")))
    cfg["chat_template"] = (
        "{% set c = messages[0]['content'] %}"
        "{% if c == 'overflow' %}{{ 'ab' * 9223372036854775807 }}{{ (-9223372036854775807 - 1) // -1 }}"
        "{% elif c == 'deep' %}{% set ns = namespace(v=[]) %}{% for i in range(100000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v }}"
        "{% elif c == 'spin' %}{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
        "{% elif c == 'wide' %}{{ 'x' | center(9223372036854775807) }}"
        "{% else %}{{ bos_token }}[INST] {{ c }} [/INST]{% endif %}")
    json.dump(cfg, open(os.path.join(hostile_dir, "tokenizer_config.json"), "w"))
    s = Server(model=hostile_dir)
    try:
        for attack in ("overflow", "deep", "spin", "wide"):
            try:
                s.client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": attack}], max_tokens=2)
                check(False, f"hostile template ({attack}): 400")
            except openai.BadRequestError as e:
                check(e.status_code == 400 and "template" in e.body["message"], f"hostile template ({attack}): 400 naming the template")
            check(s.healthy() and s.proc.poll() is None, f"still healthy after the {attack} template")
        r = s.client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hello"}], max_tokens=3, temperature=0)
        check(r.choices[0].finish_reason in ("length", "stop"), "the hostile template's server still answers ordinary requests")
    finally:
        rc = s.stop()
    check(rc == 0, "hostile template server: Ctrl-C exits 0")

    # 7. strata chat: each answer is the solo completion of the conversation so far
    sysmsg = "You are a test model."
    chat = subprocess.run([BIN, "chat", "--model", MODEL, "--temperature", "0", "--max-tokens", "8", "--system", sysmsg],
                          input="hello world\njumps over the lazy dog\n", capture_output=True, text=True, timeout=120)
    first = [{"role": "system", "content": sysmsg}, {"role": "user", "content": "hello world"}]
    _, a1, _ = solo(first, 8)
    _, a2, _ = solo(first + [{"role": "assistant", "content": a1}, {"role": "user", "content": "jumps over the lazy dog"}], 8)
    check(chat.returncode == 0 and chat.stdout == a1 + "\n" + a2 + "\n", "strata chat keeps the conversation: each answer equals the solo completion")
    # commands are not sent to the model; a """ block is one message of several lines; /bye ends the session
    chat = subprocess.run([BIN, "chat", "-m", MODEL, "--temperature", "0", "-n", "8", "--system", sysmsg],
                          input='/help\n/frob\n"""\nline one\nline two\n"""\n/bye\nnever sent\n', capture_output=True, text=True, timeout=120)
    _, b1, _ = solo([{"role": "system", "content": sysmsg}, {"role": "user", "content": "line one\nline two"}], 8)
    check(chat.returncode == 0 and chat.stdout == b1 + "\n" and "/reset" in chat.stderr and "unknown command /frob" in chat.stderr
          and "tokens/s" in chat.stderr, "strata chat: /help and unknown commands stay local, a \"\"\" block is one message, /bye quits")

    # 8. over-limit concurrency (1 running, none queued): 429, then serving again
    s = Server("--max-running", "1", "--max-queued", "0", "--ram-budget", "200MiB", "--no-plan")
    c = s.client
    try:
        long = {"model": NAME, "messages": conversation(1), "max_tokens": 60, "temperature": 0, "stream": True, "ignore_eos": True}
        sock = socket.create_connection(("127.0.0.1", s.port))
        body = json.dumps(long).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        first = b""
        while b"data:" not in first:
            part = sock.recv(4096)
            if not part:
                break
            first += part
        try:
            c.chat.completions.create(model=NAME, messages=msgs, max_tokens=4, temperature=0)
            check(False, "over the limit: 429")
        except openai.RateLimitError as e:
            check(e.status_code == 429 and "error" in (e.response.json()), "over the running + queued limit: 429 with an OpenAI error")
        check(s.healthy(), "still healthy after the 429")
        m = s.metrics()
        check(m.get("strata_ram_budget_bytes") == 200 << 20 and 0 < m["strata_ledger_bytes"] <= 200 << 20,
              "under --ram-budget the ledger stays within the budget (/metrics)")
        # Ctrl-C while a stream runs: it finishes, then the server exits
        s.proc.send_signal(signal.SIGINT)
        rest = first
        sock.settimeout(30)
        while b"data: [DONE]" not in rest:
            part = sock.recv(65536)
            if not part:
                break
            rest += part
        sock.close()
        check(b"data: [DONE]" in rest and rest.count(b'"finish_reason":"length"') == 1, "Ctrl-C lets the running stream finish")
        check(s.proc.wait(timeout=60) == 0, "then exits 0")
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    # 9. keys, CORS, the model by id, /tokenize and /detokenize (oracle: the tokenizers package on the
    #    model's tokenizer.json), a taken port, --version
    from tokenizers import Tokenizer
    hf = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    origin = "https://app.example"
    s = Server("--api-key", "sekret-1", "--cors-origin", origin)
    try:
        good = OpenAI(base_url=s.base + "/v1", api_key="sekret-1", max_retries=0, timeout=60)
        check(good.models.retrieve(NAME).id == NAME, "GET /v1/models/{id} with the key: the model")
        try:
            good.models.retrieve("no-such-model")
            check(False, "GET /v1/models/{other}: 404")
        except openai.NotFoundError as e:
            check(e.status_code == 404 and e.body["code"] == "model_not_found", "GET /v1/models/{other}: 404 model_not_found")
        for key, what in (("wrong-key", "a wrong key"), ("sekret-", "a prefix of the key"), ("sekret-12", "the key and more")):
            try:
                OpenAI(base_url=s.base + "/v1", api_key=key, max_retries=0, timeout=60).chat.completions.create(
                    model=NAME, messages=conversation(0), max_tokens=2)
                check(False, f"{what}: 401")
            except openai.AuthenticationError as e:
                check(e.status_code == 401 and e.body["code"] == "invalid_api_key", f"{what}: 401 invalid_api_key")
        req = urllib.request.Request(s.base + "/v1/models")
        try:
            urllib.request.urlopen(req, timeout=10)
            check(False, "no Authorization header: 401")
        except urllib.error.HTTPError as e:
            check(e.code == 401 and e.headers.get("www-authenticate") == "Bearer", "no Authorization header: 401 with WWW-Authenticate")
        check(s.healthy(), "/health needs no key")
        r = good.chat.completions.with_raw_response.create(model=NAME, messages=conversation(0), max_tokens=3, temperature=0)
        check(r.headers.get("access-control-allow-origin") == origin, "a response carries Access-Control-Allow-Origin")
        pre = urllib.request.Request(s.base + "/v1/chat/completions", method="OPTIONS",
                                     headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "authorization, content-type"})
        pr = urllib.request.urlopen(pre, timeout=10)
        check(pr.status == 204 and pr.headers.get("access-control-allow-origin") == origin
              and "POST" in pr.headers.get("access-control-allow-methods", "")
              and "authorization" in pr.headers.get("access-control-allow-headers", ""), "a CORS preflight: 204 with the allowed origin, methods, headers")

        def post(path, body, key="sekret-1"):
            q = urllib.request.Request(s.base + path, data=json.dumps(body).encode(), method="POST",
                                       headers={"content-type": "application/json", "authorization": "Bearer " + key})
            try:
                x = urllib.request.urlopen(q, timeout=30)
                return x.status, json.loads(x.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())
        for text in ("Hello world", "the quick brown fox jumps over the lazy dog", "  spaces\tand\nnewlines ü 日本"):
            code, body = post("/tokenize", {"content": text})
            want = hf.encode(text, add_special_tokens=False).ids
            check(code == 200 and body["tokens"] == want, f"/tokenize {text!r} equals tokenizers' ids")
            code, body2 = post("/detokenize", {"tokens": want})
            check(code == 200 and body2["content"] == hf.decode(want, skip_special_tokens=False), f"/detokenize gives tokenizers' text for {text!r}")
        code, body = post("/tokenize", {"content": "Hello", "add_special": True})
        check(code == 200 and body["tokens"] == hf.encode("Hello", add_special_tokens=True).ids, "/tokenize add_special adds the special tokens as tokenizers does")
        code, body = post("/tokenize", {"content": "Hello", "with_pieces": True})
        check(code == 200 and [t["id"] for t in body["tokens"]] == hf.encode("Hello", add_special_tokens=False).ids
              and all(isinstance(t["piece"], str) for t in body["tokens"]), "/tokenize with_pieces: ids and their text")
        code, body = post("/tokenize", {"content": "x", "add_bos": True})
        check(code == 400 and body["error"]["param"] == "add_bos", "/tokenize: an unknown field is a 400 naming it")
        code, body = post("/detokenize", {"tokens": [1, 10 ** 9]})
        check(code == 400 and body["error"]["param"] == "tokens", "/detokenize: an id outside the vocabulary is a 400 naming the field")
        code, body = post("/tokenize", {"content": "x"}, key="nope")
        check(code == 401, "/tokenize needs the key too")
        # logit_bias -100 bans a token: greedy, the first token banned, the answer's first token differs
        msgs = conversation(2)
        base_r = good.completions.create(model=NAME, prompt="the quick brown", max_tokens=1, temperature=0, logprobs=0)
        first = base_r.choices[0].logprobs.tokens[0]
        g = json.loads(subprocess.check_output([BIN, "generate", "--model", MODEL, "--prompt", "the quick brown", "--temperature", "0",
                                                "--max-tokens", "1", "--json"], stderr=subprocess.DEVNULL))
        first_id = g["ids"][0] if g["ids"] else None
        if first_id is not None:
            banned = good.completions.create(model=NAME, prompt="the quick brown", max_tokens=1, temperature=0, logprobs=0,
                                             logit_bias={str(first_id): -100})
            check(banned.choices[0].logprobs.tokens[0] != first, "logit_bias -100 bans the greedy token")
            again = good.completions.create(model=NAME, prompt="the quick brown", max_tokens=1, temperature=0, logprobs=0,
                                            logit_bias={str(first_id): 5})
            check(again.choices[0].logprobs.tokens[0] == first, "a positive logit_bias keeps it")
        else:
            check(False, f"the greedy token {first!r} maps back to an id")
        for bad, field in (({"logit_bias": {"abc": 1}}, "logit_bias"), ({"logit_bias": {"1": 101}}, "logit_bias"),
                           ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "a+"}}}},
                            "response_format.json_schema.schema"), ({"response_format": {"type": "yaml"}}, "response_format.type"),
                           ({"grammar": "root ::= undefined-rule"}, "grammar"), ({"echo": True}, "echo"),
                           ({"best_of": 3}, "best_of"), ({"tool_choice": "required"}, "tool_choice"), ({"frobnicate": 1}, "frobnicate")):
            code, body = post("/v1/chat/completions", {"model": NAME, "messages": msgs, "max_tokens": 2, **bad})
            check(code == 400 and body["error"]["param"] == field, f"{bad}: 400 naming '{field}'")
        r = good.chat.completions.create(model=NAME, messages=msgs, max_tokens=2, user="someone", response_format={"type": "text"},
                                         tool_choice="none", tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
        check(r.choices[0].finish_reason in ("length", "stop"), "harmless fields (user, response_format text, tool_choice none) are accepted")
        import math
        # echo with logprobs (lm-eval's scoring): the prompt's log-probabilities equal the
        # log-softmax of `strata logits` at the positions before each token
        import math
        text = "the quick brown fox jumps over"
        ids = hf.encode(text).ids
        lg = json.loads(subprocess.check_output([BIN, "logits", "--model", MODEL, "--ids", ",".join(map(str, ids))], stderr=subprocess.DEVNULL))["logits"]
        want = []
        for i in range(1, len(ids)):
            row = lg[i - 1]
            m = max(row)
            want.append(row[ids[i]] - (m + math.log(sum(math.exp(x - m) for x in row))))
        r = good.completions.create(model=NAME, prompt=text, max_tokens=0, echo=True, logprobs=2)
        lp = r.choices[0].logprobs
        check(r.choices[0].text == text and lp.token_logprobs[0] is None and len(lp.token_logprobs) == len(ids)
              and all(abs(a - b) < 1e-4 for a, b in zip(lp.token_logprobs[1:], want)), "echo, max_tokens 0: the prompt's logprobs equal strata logits' log-softmax")
        check(lp.top_logprobs[0] is None and all(1 <= len(t) <= 2 for t in lp.top_logprobs[1:]),
              "echo: the top logprobs of each prompt token after the first (a dict by text: tokens of one text share a key)")
        r2 = good.completions.create(model=NAME, prompt=ids, max_tokens=3, temperature=0, echo=True, logprobs=0)
        lp2 = r2.choices[0].logprobs
        check(len(lp2.tokens) == len(ids) + 3 and all(abs(a - b) < 1e-4 for a, b in zip(lp2.token_logprobs[1:len(ids)], want))
              and r2.choices[0].text.startswith(hf.decode(ids, skip_special_tokens=False)), "echo with a completion: prompt then completion, token ids decoded")
        code, body = post("/v1/completions", {"model": NAME, "prompt": text, "echo": True, "stream": True})
        check(code == 400 and body["error"]["param"] == "echo", "echo with stream: a 400 naming echo")
        # embeddings: the last token's hidden state, L2-normalized (no sentence-transformers config),
        # equal to a naive pooling of `strata logits --hidden`; a folder with modules.json pools by mean
        def hidden(ids):
            return json.loads(subprocess.check_output([BIN, "logits", "--model", MODEL, "--ids", ",".join(map(str, ids)), "--hidden"],
                                                      stderr=subprocess.DEVNULL))["hidden"]

        def unit(v):
            n = math.sqrt(sum(x * x for x in v))
            return [x / n for x in v]
        texts = ["the quick brown fox", "hello world", "a tiny model serves many clients"]
        e = good.embeddings.create(model=NAME, input=texts)
        ok = len(e.data) == 3 and e.usage.prompt_tokens == sum(len(hf.encode(t).ids) for t in texts)
        for d, t in zip(e.data, texts):
            want = unit(hidden(hf.encode(t).ids)[-1])
            ok = ok and d.index == texts.index(t) and max(abs(a - b) for a, b in zip(d.embedding, want)) < 1e-4
        check(ok, "/v1/embeddings of 3 texts: the last token's normalized hidden state (strata logits --hidden)")
        e64 = good.embeddings.create(model=NAME, input=[hf.encode("hello world").ids], encoding_format="base64")
        import base64, struct
        raw = base64.b64decode(e64.data[0].embedding) if isinstance(e64.data[0].embedding, str) else None
        check(raw is not None and max(abs(a - b) for a, b in zip(struct.unpack("<%df" % (len(raw) // 4), raw), e.data[1].embedding)) < 1e-6,
              "/v1/embeddings base64 of token ids: the same floats")
        for bad, field in (({"input": ""}, "input"), ({"input": [1, -1]}, "input"), ({"input": "x", "dimensions": 7}, "dimensions"),
                           ({"input": "x", "encoding_format": "int8"}, "encoding_format"), ({"input": "x", "pooling": "mean"}, "pooling")):
            code, body = post("/v1/embeddings", {"model": NAME, **bad})
            check(code == 400 and body["error"]["param"] == field, f"/v1/embeddings {bad}: 400 naming '{field}'")
        # every field of the openai client's request types (its own lists): honoured (200, and named
        # in docs/serving.md) or refused with a 400 naming it; never a 500, never ignored in silence
        from openai.types.chat import completion_create_params as chat_params
        from openai.types import completion_create_params as text_params, embedding_create_params as emb_params
        docs = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "serving.md")).read()
        values = {"frequency_penalty": 0.5, "presence_penalty": 0.5, "logit_bias": {"5": 1}, "logprobs": True, "top_logprobs": 2,
                  "max_completion_tokens": 2, "max_tokens": 2, "n": 2, "seed": 3, "stop": ["zz"], "stream_options": {"include_usage": True},
                  "temperature": 0.5, "top_p": 0.9, "user": "u", "metadata": {"k": "v"}, "parallel_tool_calls": True,
                  "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
                  "tool_choice": "auto", "response_format": {"type": "json_object"}, "service_tier": "auto", "safety_identifier": "s",
                  "prompt_cache_key": "k", "store": True, "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
                  "functions": [{"name": "f"}], "function_call": "auto", "prediction": {"type": "content", "content": "x"},
                  "reasoning_effort": "low", "verbosity": "low", "web_search_options": {}, "best_of": 2, "echo": True, "suffix": "end",
                  "dimensions": 48, "encoding_format": "float"}
        routes = (("/v1/chat/completions", chat_params.CompletionCreateParamsBase, {"messages": msgs}),
                  ("/v1/completions", text_params.CompletionCreateParamsBase, {"prompt": "the quick"}),
                  ("/v1/embeddings", emb_params.EmbeddingCreateParams, {"input": "the quick"}))
        for route, params, base in routes:
            walked = []
            for field in sorted(params.__annotations__):
                if field in base or field == "model":
                    continue
                body = {"model": NAME, **base, field: values.get(field, "x")}
                if field == "stream_options":
                    body["stream"] = True
                if field == "top_logprobs":
                    body["logprobs"] = True
                if route != "/v1/embeddings" and field not in ("max_tokens", "max_completion_tokens"):
                    body.setdefault("max_tokens", 2)
                if field == "stream_options":
                    q = urllib.request.Request(s.base + route, data=json.dumps(body).encode(), method="POST",
                                               headers={"content-type": "application/json", "authorization": "Bearer sekret-1"})
                    x = urllib.request.urlopen(q, timeout=30)
                    code, out = x.status, {}
                    x.read()
                else:
                    code, out = post(route, body)
                param = (out.get("error") or {}).get("param") or ""
                ok = (code == 200 and f"`{field}`" in docs) or (code == 400 and (param == field or param.startswith(field + ".")))
                walked.append(ok)
                if not ok:
                    print("   ", route, field, code, out)
            check(all(walked) and len(walked) >= 3, f"{route}: each of the {len(walked)} fields of the openai client's request type is honoured (and documented) or a 400 naming it")
        # the same port again: a clear error naming it, not a NIO trace
        taken = subprocess.run([BIN, "serve", "--model", MODEL, "--port", str(s.port)], capture_output=True, text=True, timeout=120)
        check(taken.returncode != 0 and f":{s.port}" in taken.stderr and "in use" in taken.stderr, "a port in use: an error naming it")
    finally:
        rc = s.stop()
    check(rc == 0, "keyed server: Ctrl-C exits 0")
    structured_output()
    tool_calls()
    chat_in_tmux()
    v = subprocess.run([BIN, "--version"], capture_output=True, text=True)
    check(v.returncode == 0 and v.stdout.strip().count(".") == 2, "strata --version prints a version")

    if FAILURES:
        print(f"{len(FAILURES)} failed:", *FAILURES, sep="\n  ")
        sys.exit(1)
    print("all server tests passed")


# 20 schemas with nested objects, arrays, enums, numbers and required fields: on a random-weight
# model at temperature 1, the constraint alone must make every answer valid (jsonschema decides)
SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]},
    {"type": "object", "properties": {"ok": {"type": "boolean"}, "score": {"type": "number"}}, "required": ["ok"]},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}, "count": {"type": "integer", "minimum": 0}},
     "required": ["color", "count"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 4},
    {"type": "object", "properties": {"user": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1},
                                                                              "email": {"type": "string", "maxLength": 20}},
                                               "required": ["id", "email"]}}, "required": ["user"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}}, "required": ["tags"]},
    {"enum": ["yes", "no", "maybe"]},
    {"type": "object", "properties": {"point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": False}},
     "required": ["point"]},
    {"type": "object", "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 5}, "comment": {"type": ["string", "null"]}},
     "required": ["rating", "comment"]},
    {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
        "sku": {"type": "string", "minLength": 2, "maxLength": 6}, "qty": {"type": "integer", "minimum": 1}, "price": {"type": "number", "minimum": 0}},
        "required": ["sku", "qty", "price"]}, "minItems": 1, "maxItems": 3}}, "required": ["items"]},
    {"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"type": "string", "maxLength": 5}]},
    {"type": "object", "properties": {"kind": {"const": "circle"}, "radius": {"type": "number", "minimum": 0}}, "required": ["kind", "radius"]},
    {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                        "required": ["v", "next"]}}, "$ref": "#/$defs/node"},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date"}, "id": {"type": "string", "format": "uuid"}}, "required": ["when", "id"]},
    {"type": "object", "properties": {"matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                                                 "minItems": 2, "maxItems": 2}}, "required": ["matrix"]},
    {"type": "object", "properties": {"title": {"type": "string"}, "done": {"type": "boolean"}, "priority": {"enum": [1, 2, 3]},
                                      "subtasks": {"type": "array", "items": {"type": "object", "properties": {"title": {"type": "string", "maxLength": 10}},
                                                                              "required": ["title"]}, "maxItems": 2}},
     "required": ["title", "done", "priority", "subtasks"]},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "object", "properties": {"c": {"enum": [True, None, "x"]}},
                                                                                   "required": ["c"]}}, "required": ["b"]}}, "required": ["a"]},
    {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}, "z": {"type": "number"}}, "required": ["x", "y", "z"],
     "additionalProperties": False},
    {"oneOf": [{"type": "integer"}, {"type": "string", "maxLength": 3}, {"type": "null"}]},
]


def structured_output():
    # 10. structured output: json_schema answers validate, json_object answers are objects, grammar
    #     answers are in the grammar's language, streamed ones too
    import jsonschema
    s = Server()
    c = s.client
    try:
        valid = 0
        for i, schema in enumerate(SCHEMAS):
            jsonschema.Draft202012Validator.check_schema(schema)
            r = c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": f"json {i}"}], max_tokens=100, temperature=1, seed=i,
                                          response_format={"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema, "strict": True}})
            text = r.choices[0].message.content
            try:
                jsonschema.validate(json.loads(text), schema, cls=jsonschema.Draft202012Validator)
                ok = r.choices[0].finish_reason == "stop"
            except Exception as e:
                ok = False
                print("   ", i, repr(text), e)
            valid += ok
            check(ok, f"json_schema {i}: the answer validates against its schema and ends with 'stop'")
        check(valid == len(SCHEMAS), f"{valid}/{len(SCHEMAS)} schema answers valid")
        # greedy with a tight budget: the answer still closes (the mask keeps room to finish)
        r = c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "tight"}], max_tokens=40, temperature=0,
                                      response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMAS[9]}})
        try:
            jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMAS[9])
            closed = True
        except Exception:
            closed = False
        check(closed, "a tight max_tokens (40): the answer closes validly within it")
        chunks = list(c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "stream"}], max_tokens=100, temperature=1, seed=7, stream=True,
                                                response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMAS[15]}}))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        try:
            jsonschema.validate(json.loads(text), SCHEMAS[15])
            ok = True
        except Exception:
            ok = False
        check(ok, "a streamed json_schema answer validates")
        for seed in range(3):
            r = c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": f"object {seed}"}], max_tokens=60, temperature=1, seed=seed,
                                          response_format={"type": "json_object"})
            try:
                ok = isinstance(json.loads(r.choices[0].message.content), dict)
            except Exception:
                ok = False
            check(ok, f"json_object {seed}: a JSON object")
        for seed in range(3):
            r = c.completions.create(model=NAME, prompt="Answer:", max_tokens=20, temperature=1, seed=seed,
                                     extra_body={"grammar": 'root ::= ("yes" | "no") ", " [0-9]{1,3} "."'})
            import re
            check(re.fullmatch(r"(yes|no), [0-9]{1,3}\.", r.choices[0].text) is not None, f"grammar {seed}: {r.choices[0].text!r} in the grammar's language")
        code, body = s.raw("/v1/chat/completions", json.dumps({"model": NAME, "messages": conversation(0), "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}}}}).encode())
        check(code == 400 and "multipleOf" in body["error"]["message"], "an uncompilable schema: 400 naming the keyword")
    finally:
        rc = s.stop()
    check(rc == 0, "structured-output server: Ctrl-C exits 0")


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}},
]


def long_context_model():
    """The chat fixture with a longer context (tool prompts run to 1600 tokens; a chat answer
    long enough to interrupt): the same weights and tokenizer, max_position_embeddings 4096."""
    import atexit
    import shutil
    d = tempfile.mkdtemp(prefix="strata-long-")
    atexit.register(shutil.rmtree, d, True)
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    cfg["max_position_embeddings"] = 4096
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        os.symlink(os.path.realpath(os.path.join(MODEL, f)), os.path.join(d, f))
    return d


def chat_in_tmux():
    # 12. strata chat in a terminal (tmux): Ctrl-C mid-answer stops the answer and keeps the session;
    #     the second turn computes only the tokens after what the cache holds (the count shown);
    #     the Up arrow recalls the last message (libedit's history)
    import shutil
    import re
    if shutil.which("tmux") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "tmux"], capture_output=True)
    if shutil.which("tmux") is None:
        check(False, "tmux is installed for the chat test")
        return
    d = long_context_model()
    err = os.path.join(d, "chat.err")
    session = "strata-chat-%d" % os.getpid()
    cmd = f"HOME={d} exec {os.path.abspath(BIN)} chat --model {d} --temperature 1 --seed 3 --ignore-eos -n 4000 2>{err}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", cmd], check=True)

    def wait_for(pattern, count, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = open(err).read() if os.path.exists(err) else ""
            if len(re.findall(pattern, text)) >= count:
                return text
            time.sleep(0.1)
        return open(err).read() if os.path.exists(err) else ""

    def keys(*k):
        subprocess.run(["tmux", "send-keys", "-t", session, *k], check=True)
    def pane():
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session, "-S", "-5000"], capture_output=True, text=True).stdout
    def answering(msg):
        # a random model's answer holds control bytes that make the pane unreadable: give the
        # answer time to start (a Ctrl-C before its first token still stops it after one token)
        time.sleep(0.5)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not pane().startswith(">"):
            time.sleep(0.1)
        keys("tell me a long story", "Enter")
        answering("tell me a long story")
        keys("C-c")
        text = wait_for(r"\(stopped\)", 1)
        lines = re.findall(r"\((\d+) tokens at [^;]*; prompt (\d+) tokens, (\d+) computed in [^,]*, (\d+) reused\)( \(stopped\))?", text)
        alive = subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0
        check(len(lines) == 1 and lines[0][4] != "" and 0 < int(lines[0][0]) < 4000 and alive,
              f"strata chat in tmux: Ctrl-C mid-answer stops it ({lines[0][0] if lines else '?'} of 4000 tokens) and the session goes on")
        keys("and another one", "Enter")
        answering("and another one")
        keys("C-c")
        text = wait_for(r"\(stopped\)", 2)
        lines = re.findall(r"\((\d+) tokens at [^;]*; prompt (\d+) tokens, (\d+) computed in [^,]*, (\d+) reused\)", text)
        if len(lines) == 2:
            first_prompt = int(lines[0][1])
            prompt, computed, reused = int(lines[1][1]), int(lines[1][2]), int(lines[1][3])
            check(reused >= first_prompt and computed == prompt - reused and computed < prompt - first_prompt + 1 + int(lines[0][0]),
                  f"the second turn computes only what follows the cached prefix ({computed} of {prompt} prompt tokens, {reused} reused)")
        else:
            check(False, f"the second turn's speed line: {text[-300:]!r}")
        keys("Up")
        time.sleep(0.3)
        keys("Enter")
        answering("and another one")
        keys("C-c")
        text = wait_for(r"\(stopped\)", 3)
        check(pane().count("> and another one") == 2 and len(re.findall(r"\(stopped\)", text)) == 3,
              "strata chat in tmux: the Up arrow recalls the last message, sent again")
        check(os.path.exists(os.path.join(d, ".cache", "strata", "chat_history")), "the chat history is kept in ~/.cache/strata/chat_history")
        keys("/bye", "Enter")
        deadline = time.time() + 20
        while time.time() < deadline and subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
            time.sleep(0.1)
        check(subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0, "strata chat in tmux: /bye ends it")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def tool_calls():
    # 11. tool calls in each format the corpus templates write: forced (tool_choice required or a
    #     named function) on a random-weight model, whole and streamed, the arguments valid against the
    #     tool's schema; "auto" parses a call that llama-server's `grammar` field makes the model write
    import jsonschema
    d = long_context_model()
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    templates = os.path.join(os.path.dirname(os.path.abspath(MODEL)), "templates")
    for name, fmt in (("qwen2.5", "hermes"), ("llama-3.1", "llama3"), ("mistral-nemo", "mistral"), ("granite-3.3", "granite"),
                      ("deepseek-r1-distill-qwen", "deepseek")):
        s = Server("--chat-template", os.path.join(templates, name + ".jinja"), model=d)
        c = s.client
        msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
        try:
            for seed in range(2):
                r = c.chat.completions.create(model=NAME, messages=msgs, tools=TOOLS, tool_choice="required", temperature=1, seed=seed, max_tokens=300)
                ch = r.choices[0]
                ok = ch.finish_reason == "tool_calls" and len(ch.message.tool_calls or []) == 1
                if ok:
                    call = ch.message.tool_calls[0]
                    try:
                        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
                        ok = call.type == "function" and call.id.startswith("call_")
                    except Exception as e:
                        print("   ", call, e)
                        ok = False
                else:
                    print("   ", ch)
                check(ok, f"{name} ({fmt}) tool_choice required, seed {seed}: one call, its arguments valid for its tool")
            r = c.chat.completions.create(model=NAME, messages=msgs, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}},
                                          temperature=1, seed=5, max_tokens=300)
            calls = r.choices[0].message.tool_calls or []
            check(len(calls) == 1 and calls[0].function.name == "add" and set(json.loads(calls[0].function.arguments)) == {"a", "b"},
                  f"{name}: a named tool_choice calls that tool")
            whole = r.choices[0].message.tool_calls[0].function.arguments if calls else None
            chunks = list(c.chat.completions.create(model=NAME, messages=msgs, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}},
                                                    temperature=1, seed=5, max_tokens=300, stream=True))
            deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
            content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
            check(len(deltas) == 1 and deltas[0].function.name == "add" and deltas[0].function.arguments == whole and content == ""
                  and finish == ["tool_calls"], f"{name}: streamed, the same call in delta.tool_calls, no content, finish_reason tool_calls")
            if fmt == "hermes":
                # "auto": the server parses whatever call the model writes (here written under a grammar)
                g = 'root ::= "<tool_call>\\n{\\"name\\": \\"add\\", \\"arguments\\": {\\"a\\": " [1-9] ", \\"b\\": 2}}\\n</tool_call>"'
                r = c.chat.completions.create(model=NAME, messages=msgs, tools=TOOLS, temperature=1, seed=1, max_tokens=200, extra_body={"grammar": g})
                calls = r.choices[0].message.tool_calls or []
                check(r.choices[0].finish_reason == "tool_calls" and len(calls) == 1 and json.loads(calls[0].function.arguments)["b"] == 2
                      and r.choices[0].message.content is None, f"{name}: tool_choice auto parses the call the model wrote")
                # a past call and its result go back through the template (arguments given as a string)
                hist = msgs + [{"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
                               {"role": "tool", "tool_call_id": "call_1", "content": "3"}]
                r = c.chat.completions.create(model=NAME, messages=hist, tools=TOOLS, temperature=0, max_tokens=3)
                check(r.choices[0].finish_reason in ("length", "stop", "tool_calls"), f"{name}: a conversation with a past call and its result is served")
            code, body = s.raw("/v1/chat/completions", json.dumps({"model": NAME, "messages": msgs, "tools": TOOLS,
                                                                   "tool_choice": {"type": "function", "function": {"name": "nope"}}}).encode())
            check(code == 400 and body["error"]["param"] == "tool_choice", f"{name}: a tool_choice naming no offered tool is a 400")
        finally:
            rc = s.stop()
        check(rc == 0, f"{name} server: Ctrl-C exits 0")


if __name__ == "__main__":
    main()
