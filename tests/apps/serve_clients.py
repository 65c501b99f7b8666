#!/usr/bin/env python3
"""Runs the real `aegaeon serve` binary and talks to it as outside clients do.

  serve_clients.py openai  --aegaeon BIN --model GGUF   the official `openai` package: list models,
                                                        complete a chat, stream a chat, complete
  serve_clients.py sigterm --aegaeon BIN --model GGUF   SIGTERM under load: exit 0, every client
                                                        gets a whole answer or an error, none hangs

Exit 77 (skipped) when the model or the `openai` package is missing.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77


def start_server(binary, model, extra):
    """Starts `aegaeon serve` on a free port over a directory holding only `model`."""
    tmp = tempfile.mkdtemp(prefix="aeg-serve-")
    os.symlink(os.path.abspath(model), os.path.join(tmp, "smollm2.gguf"))
    proc = subprocess.Popen([binary, "serve", "--models-dir", tmp, "--backend", "cpu", "--port", "0"]
                            + extra, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    port = None
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on http://[\d.]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        proc.kill()
        sys.exit("the server did not start:\n" + "".join(lines))
    # Keep draining its log so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, port, tmp


def stop_server(proc, tmp):
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


def check_logprobs_and_choices(client, question):
    """logprobs/top_logprobs, echo and n > 1, streamed and not, on both endpoints; /tokenize and
    /detokenize."""
    chat = client.chat.completions.create(model="smollm2", messages=question, max_tokens=12,
                                          temperature=0, logprobs=True, top_logprobs=3)
    content = chat.choices[0].logprobs.content
    # The end-of-turn token counts in the usage but is not part of the answer.
    assert len(content) in (chat.usage.completion_tokens, chat.usage.completion_tokens - 1), chat
    assert "".join(e.token for e in content) == chat.choices[0].message.content, content
    for e in content:
        assert len(e.top_logprobs) == 3, e
        assert e.logprob <= 0 and bytes(e.bytes) == e.token.encode(), e
        # Greedy picks the most likely token: the first alternative is the token itself.
        assert e.top_logprobs[0].token == e.token and e.top_logprobs[0].logprob == e.logprob, e
        assert e.top_logprobs[1].logprob <= e.top_logprobs[0].logprob, e

    streamed = []
    for chunk in client.chat.completions.create(model="smollm2", messages=question,
                                                max_tokens=12, temperature=0, logprobs=True,
                                                top_logprobs=3, stream=True):
        for c in chunk.choices:
            if c.logprobs is not None:
                streamed += c.logprobs.content
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]

    text = client.completions.create(model="smollm2", prompt="The capital of France is",
                                     max_tokens=4, temperature=0.7, seed=3, logprobs=2)
    lp = text.choices[0].logprobs
    assert "".join(lp.tokens) == text.choices[0].text, lp
    assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs) == 4, lp
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset), lp
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert -9999 <= logprob <= 0 and top[token] == logprob and 2 <= len(top) <= 3, top

    # vLLM's and llama.cpp's token endpoints sit beside /v1: the client's own request method.
    root = type(client)(base_url=str(client.base_url).removesuffix("/v1/"),
                        api_key=client.api_key)
    ids = root.post("/tokenize", body={"model": "smollm2", "prompt": "The capital of France"},
                    cast_to=object)
    assert ids["count"] == len(ids["tokens"]) > 0, ids
    text = root.post("/detokenize", body={"model": "smollm2", "tokens": ids["tokens"]},
                     cast_to=object)
    assert text["prompt"].endswith("The capital of France"), text

    echoed = client.completions.create(model="smollm2", prompt="The capital of France is",
                                       max_tokens=4, temperature=0, echo=True)
    assert echoed.choices[0].text.startswith("The capital of France is Paris"), echoed

    many = client.chat.completions.create(model="smollm2", messages=question, max_tokens=8,
                                          temperature=1.0, seed=11, n=3)
    assert [c.index for c in many.choices] == [0, 1, 2], many
    assert all(c.message.content for c in many.choices), many
    assert len({c.message.content for c in many.choices}) > 1, many  # each its own draw
    again = client.chat.completions.create(model="smollm2", messages=question, max_tokens=8,
                                           temperature=1.0, seed=11, n=3)
    assert [c.message.content for c in again.choices] == [c.message.content for c in many.choices]

    texts, ends = {}, {}
    for chunk in client.completions.create(model="smollm2", prompt="Once upon a time",
                                           max_tokens=6, temperature=1.0, seed=5, n=2,
                                           stream=True):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.finish_reason is not None:
                ends[c.index] = c.finish_reason
    whole = client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=6,
                                      temperature=1.0, seed=5, n=2)
    assert ends == {0: "length", 1: "length"}, ends
    assert [texts[0], texts[1]] == [c.text for c in whole.choices], (texts, whole)
    assert whole.usage.completion_tokens == 12, whole.usage

    # Choices that reach an instance together copy their prompt's KV (whether these did depends
    # on timing; the instance tests check the copies): the counter is exported.
    conn = http.client.HTTPConnection("127.0.0.1", client.base_url.port, timeout=30)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    assert "aegaeon_instance_prompts_shared_total{" in metrics, metrics


def check_openai(binary, model):
    try:
        import openai
    except ImportError:
        print("the openai package is not installed (scripts/python-deps installs it): skipped")
        return SKIP
    proc, port, tmp = start_server(binary, model, ["--api-key", "secret"])
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="secret")
        ids = [m.id for m in client.models.list()]
        assert ids == ["smollm2"], ids

        question = [{"role": "user", "content": "Name a color."}]
        chat = client.chat.completions.create(model="smollm2", messages=question, max_tokens=16,
                                              temperature=0)
        answer = chat.choices[0].message.content
        assert answer, chat
        assert chat.choices[0].finish_reason in ("stop", "length"), chat
        assert chat.usage.completion_tokens > 0 and chat.usage.prompt_tokens > 0, chat.usage

        streamed, chunks, usage = "", 0, None
        for chunk in client.chat.completions.create(model="smollm2", messages=question,
                                                    max_tokens=16, temperature=0, stream=True,
                                                    stream_options={"include_usage": True}):
            chunks += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                streamed += c.delta.content or ""
        assert streamed == answer, (streamed, answer)
        assert chunks >= 2 and usage is not None, (chunks, usage)
        assert usage.completion_tokens == chat.usage.completion_tokens, usage

        text = client.completions.create(model="smollm2", prompt="The capital of France is",
                                         max_tokens=4, temperature=0)
        assert text.choices[0].text.startswith(" Paris"), text

        check_logprobs_and_choices(client, question)

        try:
            client.chat.completions.create(model="nope", messages=question)
            raise AssertionError("an unknown model was accepted")
        except openai.NotFoundError as e:
            assert "does not exist" in str(e), e
        bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong")
        try:
            bad.models.list()
            raise AssertionError("a wrong key was accepted")
        except openai.AuthenticationError:
            pass
        print(f"openai {openai.__version__}: models, chat, streamed chat, completion, logprobs, "
              "n, echo, tokenize, errors: ok")
    finally:
        rc = stop_server(proc, tmp)
    assert rc == 0, f"aegaeon serve exited {rc}"
    return 0


def check_sigterm(binary, model):
    proc, port, tmp = start_server(binary, model, ["--grace", "1"])
    results = {}

    def client(i):
        body = json.dumps({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 4000,
                           "ignore_eos": True, "stream": i % 2 == 0})
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read().decode()
            if r.status == 200 and i % 2 == 0:
                ok = data.rstrip().endswith("data: [DONE]") and '"error"' in data
            else:
                ok = r.status == 503 and "shut down" in data
            results[i] = (ok, r.status, data[-300:])
        except Exception as e:  # a hang or a broken connection is a failure
            results[i] = (False, 0, repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    # Wait until all six run, then ask it to stop.
    deadline = time.time() + 60
    while time.time() < deadline:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        if re.search(r'aegaeon_requests_running\{model="smollm2"\} 6', text):
            break
        time.sleep(0.05)
    rc = stop_server(proc, tmp)
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a client still waits after the server exited"
    failures = {i: r for i, r in results.items() if not r[0]}
    assert len(results) == 6 and not failures, failures
    assert rc == 0, f"aegaeon serve exited {rc}"
    print("SIGTERM with 6 requests in flight: exit 0, every client answered")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["openai", "sigterm"])
    ap.add_argument("--aegaeon", required=True)
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    if not os.path.exists(a.model):
        print(f"{a.model} is absent (scripts/fetch-model): skipped")
        return SKIP
    return check_openai(a.aegaeon, a.model) if a.mode == "openai" else check_sigterm(a.aegaeon, a.model)


if __name__ == "__main__":
    sys.exit(main())
