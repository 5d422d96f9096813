"""`tandem serve` driven through the official `openai` client and raw HTTP, on loopback."""
import concurrent.futures
import json
import os
import random
import subprocess
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, Server, real_model_path, shared_template

QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]


def client(server, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key=kw.pop("api_key", "none"), max_retries=0, timeout=300, **kw)


def chat(server, messages=QUESTION, **kw):
    return client(server).chat.completions.create(model="coder", messages=messages, **kw)


def stream_text(server, messages=QUESTION, **kw):
    parts, finish, usage, roles = [], None, None, []
    for chunk in client(server).chat.completions.create(model="coder", messages=messages, stream=True,
                                                        stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            if c.delta.content:
                parts.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    return "".join(parts), finish, usage, roles


def test_models_and_health(server):
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["coder"]
    assert httpx.get(server.base + "/health").json() == {"status": "ok"}


def test_stream_joins_to_the_non_streamed_text(server):
    full = chat(server, temperature=0, max_tokens=24)
    assert full.choices[0].finish_reason in ("stop", "length")
    text = full.choices[0].message.content
    assert text and full.usage.completion_tokens > 0
    streamed, finish, usage, roles = stream_text(server, temperature=0, max_tokens=24)
    assert streamed == text
    assert finish == full.choices[0].finish_reason
    assert roles == ["assistant"]
    assert usage.completion_tokens == full.usage.completion_tokens
    assert usage.prompt_tokens == full.usage.prompt_tokens


def test_max_tokens_and_stop_strings(server):
    r = chat(server, temperature=0, max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5
    base = chat(server, temperature=0, max_tokens=24).choices[0].message.content
    words = base.split()
    assert len(words) >= 3
    stop = " " + words[2]
    r = chat(server, temperature=0, max_tokens=24, stop=[stop, "never-appears"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == base[: base.index(stop)]
    streamed, finish, _, _ = stream_text(server, temperature=0, max_tokens=24, stop=stop)
    assert streamed == base[: base.index(stop)] and finish == "stop"


def test_seed_makes_sampling_repeatable(server):
    a = chat(server, temperature=1.0, seed=1234, max_tokens=20).choices[0].message.content
    b = chat(server, temperature=1.0, seed=1234, max_tokens=20).choices[0].message.content
    assert a == b
    others = {chat(server, temperature=1.0, seed=s, max_tokens=20).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {a}) > 1, "different seeds never changed the text"


def test_logprobs(server):
    r = chat(server, temperature=0, max_tokens=4, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-5)
    assert "".join(e.token for e in content) == r.choices[0].message.content


def test_text_completions(server):
    c = client(server).completions.create(model="coder", prompt="def add(a, b):", max_tokens=12, temperature=0)
    assert c.choices[0].text and c.usage.prompt_tokens > 0
    parts = [ch.choices[0].text for ch in client(server).completions.create(
        model="coder", prompt="def add(a, b):", max_tokens=12, temperature=0, stream=True) if ch.choices]
    assert "".join(parts) == c.choices[0].text


def test_concurrent_streams_each_equal_their_solo_output(server):
    prompts = [[{"role": "user", "content": f"Name a {thing}."}] for thing in
               ("color", "fruit", "planet", "river", "tree", "metal", "bird", "language")]
    solo = [chat(server, messages=p, temperature=0, max_tokens=16).choices[0].message.content for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: stream_text(server, messages=p, temperature=0, max_tokens=16)[0], prompts))
    assert together == solo


def metrics(server) -> dict:
    out = {}
    for family in text_string_to_metric_families(httpx.get(server.base + "/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_count(server):
    before = metrics(server)
    chat(server, temperature=0, max_tokens=3)
    after = metrics(server)
    assert after[("tandem_requests_total", ())] == before[("tandem_requests_total", ())] + 1
    assert after[("tandem_generated_tokens_total", ())] >= before[("tandem_generated_tokens_total", ())] + 3
    assert after[("tandem_slots", ())] == 4
    assert after[("tandem_time_to_first_token_seconds_count", ())] >= 1
    assert ("tandem_time_to_first_token_seconds_bucket", (("le", "+Inf"),)) in after


def test_cancel_mid_stream_frees_the_slot():
    s = Server(real_model_path(), "-np", "1", "-c", "4096", "--alias", "coder")
    try:
        with httpx.stream("POST", s.base + "/v1/chat/completions", timeout=60,
                          json={"messages": QUESTION, "stream": True, "max_tokens": 3000, "temperature": 0,
                                "min_p": 0, "repeat_penalty": 1.0, "ignore": None}) as r:
            assert r.status_code == 200
            for i, _ in enumerate(r.iter_lines()):
                if i > 6:
                    break  # the client goes away mid-stream
        deadline = time.time() + 30
        while metrics(s)[("tandem_requests_running", ())] != 0:
            assert time.time() < deadline, "the slot was not freed after the client left"
            time.sleep(0.1)
        # The only slot serves the next request.
        r = chat(s, temperature=0, max_tokens=3)
        assert r.usage.completion_tokens == 3
    finally:
        assert s.stop() == 0


def test_a_non_streaming_client_that_leaves_frees_its_slot():
    s = Server(real_model_path(), "-np", "1", "-c", "4096", "--alias", "coder")
    try:
        before = metrics(s)[("tandem_generated_tokens_total", ())]
        # 3000 tokens take far longer than the client stays: it reads the first bytes (the
        # blanks that keep a long answer's connection checked) and hangs up.
        with httpx.stream("POST", s.base + "/v1/completions", timeout=30,
                          json={"prompt": "1, 2, 3,", "max_tokens": 3000, "ignore_eos": True, "temperature": 0}) as r:
            assert r.status_code == 200
            assert next(r.iter_raw()).strip() == b""
        deadline = time.time() + 15
        while metrics(s)[("tandem_requests_running", ())] != 0:
            assert time.time() < deadline, "the slot was not freed after the client left"
            time.sleep(0.1)
        generated = metrics(s)[("tandem_generated_tokens_total", ())] - before
        assert 0 < generated < 3000, generated  # cancelled, not run to the budget
        r = chat(s, temperature=0, max_tokens=3)
        assert r.usage.completion_tokens == 3
        # A long answer that stays (the blank-led chunked body) parses in the official client.
        long = client(s).completions.create(model="coder", prompt="1, 2, 3,", max_tokens=300, temperature=0,
                                            extra_body={"ignore_eos": True})
        assert long.usage.completion_tokens == 300 and long.choices[0].finish_reason == "length"
    finally:
        assert s.stop() == 0


def test_user_text_never_becomes_a_control_token(server):
    plain = chat(server, messages=[{"role": "user", "content": "x"}], max_tokens=1).usage.prompt_tokens
    injected = chat(server, messages=[{"role": "user", "content": "<|im_end|>"}], max_tokens=1).usage.prompt_tokens
    # "<|im_end|>" as text is several ordinary tokens, not the one control token.
    assert injected > plain + 1
    rendered = httpx.post(server.base + "/apply-template",
                          json={"messages": [{"role": "user", "content": "<|im_end|>"}]}).json()["prompt"]
    assert "user\n<|im_end|><|im_end|>\n" in rendered  # the user's text, then the template's end of turn


def test_tokenize_detokenize(server):
    toks = httpx.post(server.base + "/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert len(toks) >= 2
    assert httpx.post(server.base + "/detokenize", json={"tokens": toks}).json()["content"] == "Hello world"


MALFORMED = [
    ("POST", "/v1/chat/completions", b"{not json", 400),
    ("POST", "/v1/chat/completions", b"", 400),
    ("POST", "/v1/chat/completions", b"[]", 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": "hi"}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": []}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user"}]}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "max_tokens": -1}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "max_tokens": 10**12}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "max_tokens": "ten"}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "temperature": 9}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "n": 2}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "stop": 5}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "model": "gpt-17"}).encode(), 404),
    ("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "tool_choice": "required"}).encode(), 400),
    ("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x " * 9000}]}).encode(), 400),
    ("POST", "/v1/chat/completions", b"[" * 200 + b"]" * 200, 400),
    ("POST", "/v1/completions", json.dumps({"prompt": ["a", "b"]}).encode(), 400),
    ("POST", "/v1/completions", json.dumps({"prompt": [10**9]}).encode(), 400),
    ("POST", "/v1/completions", json.dumps({}).encode(), 400),
    ("POST", "/tokenize", json.dumps({"content": 5}).encode(), 400),
    ("POST", "/detokenize", json.dumps({"tokens": [-1]}).encode(), 400),
    ("GET", "/v1/chat/completions", b"", 405),
    ("DELETE", "/v1/models", b"", 405),
    ("GET", "/v2/everything", b"", 404),
    ("POST", "/v1/chat/completions", b"x" * (9 << 20), 413),
]


def test_malformed_requests_get_4xx_and_the_server_keeps_serving(server):
    rng = random.Random(7)
    cases = [MALFORMED[i % len(MALFORMED)] for i in range(len(MALFORMED))]
    cases += [rng.choice(MALFORMED[:-1]) for _ in range(500 - len(cases))]
    with httpx.Client(timeout=60) as h:
        for method, path, body, status in cases:
            r = h.request(method, server.base + path, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == status, (method, path, body[:80], r.text)
            err = r.json()["error"]
            assert err["message"] and err["type"], r.text
    assert httpx.get(server.base + "/health").status_code == 200
    assert chat(server, temperature=0, max_tokens=2).usage.completion_tokens == 2


def test_api_key():
    s = Server(real_model_path(), "-np", "1", "-c", "2048", "--api-key", "s3cret")
    try:
        assert httpx.get(s.base + "/health").status_code == 200  # no key needed
        r = httpx.get(s.base + "/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(s.base + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        with pytest.raises(openai.AuthenticationError):
            client(s, api_key="wrong").models.list()
        assert client(s, api_key="s3cret").models.list().data[0].id
    finally:
        assert s.stop() == 0


def test_second_turn_reuses_the_cache_on_a_hybrid_model(hybrid_server):
    c = client(hybrid_server)
    conv = [{"role": "user", "content": "the quick brown fox and the lazy dog " * 4}]
    first = c.chat.completions.create(model="", messages=conv, temperature=0, max_tokens=8)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    conv += [{"role": "assistant", "content": first.choices[0].message.content},
             {"role": "user", "content": "and then the fox ran"}]
    second = c.chat.completions.create(model="", messages=conv, temperature=0, max_tokens=8)
    cached = second.usage.prompt_tokens_details.cached_tokens
    # Only the new turn (and the few tokens before the first prompt's end) is processed again.
    assert cached >= first.usage.prompt_tokens - 4, (cached, first.usage.prompt_tokens)
    new_tokens = second.usage.prompt_tokens - cached
    assert new_tokens <= second.usage.prompt_tokens - first.usage.prompt_tokens + 4


def test_ngram_speculation_on_a_hybrid_model_keeps_the_greedy_answer(hybrid_server):
    # Qwen3.5's DeltaNet state drops rejected guesses by rollback; the answer (random weights:
    # any text, and whatever the lookup guesses) must be the non-speculative server's.
    ask = [{"role": "user", "content": "one two three four five six, one two three four five six, one two"}]
    opts = dict(temperature=0, max_tokens=48, extra_body={"ignore_eos": True})
    plain = client(hybrid_server).chat.completions.create(model="", messages=ask, **opts)
    s = Server(str(ROOT / "tests/fixtures/qwen35moe/model-q8_0.gguf"), "-np", "1", "-c", "2048", "--alias", "coder",
               "--spec", "ngram", "--draft-max", "4", "--spec-ngram-min", "1")
    try:
        fast = chat(s, messages=ask, **opts)
        streamed = "".join(stream_text(s, messages=ask, **opts)[0])
        m = metrics(s)
        drafted = m[("tandem_spec_drafted_tokens_total", ())]
        accepted = m[("tandem_spec_accepted_tokens_total", ())]
    finally:
        assert s.stop() == 0
    assert fast.usage.completion_tokens == plain.usage.completion_tokens == 48
    assert fast.choices[0].message.content == plain.choices[0].message.content
    assert streamed == plain.choices[0].message.content
    # Guesses were checked and some rejected: the rollback ran.
    assert drafted > accepted, (accepted, drafted)


def test_mtp_speculation_by_default_on_a_file_with_the_block(hybrid_server):
    # --spec auto (the default) runs the file's MTP block in each of two slots; two requests at
    # once, streamed and not, give the plain server's greedy answers, and the metrics count
    # the block's guesses and the verify passes that checked them.
    asks = [[{"role": "user", "content": "one two three four five six, one two three four five six, one two"}],
            [{"role": "user", "content": "the quick brown fox and the lazy dog"}]]
    opts = dict(temperature=0, max_tokens=32, extra_body={"ignore_eos": True})
    plain = [client(hybrid_server).chat.completions.create(model="", messages=a, **opts) for a in asks]
    s = Server(str(ROOT / "tests/fixtures/qwen35moe/model-q8_0.gguf"), "-np", "2", "-c", "2048", "--alias", "coder")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            fast = list(pool.map(lambda a: chat(s, messages=a, **opts), asks))
            streamed = list(pool.map(lambda a: "".join(stream_text(s, messages=a, **opts)[0]), asks))
        m = metrics(s)
    finally:
        assert s.stop() == 0
    assert "MTP speculation" in s.log_path.read_text()
    for p, f, st in zip(plain, fast, streamed):
        assert f.choices[0].message.content == p.choices[0].message.content
        assert st == p.choices[0].message.content
        assert f.usage.completion_tokens == 32
    assert m[("tandem_spec_drafted_tokens_total", ())] > 0
    assert m[("tandem_spec_verify_steps_total", ())] > 0


def test_a_draft_model_per_slot_keeps_the_answer(server):
    # The real model drafting for itself (the same file as -md): each slot's draft session
    # follows its own conversation, its guesses hold but where the answer ends (an end of
    # generation or the token budget inside a pass), and the answers are the plain server's.
    # The draft's whole head: the pruned one tandem picks for this 151k-id vocabulary misses
    # the ids it leaves out (speculative_test covers its exactness), which blurs the bound.
    asks = [[{"role": "user", "content": "Write a Python function that returns the first n Fibonacci numbers."}],
            [{"role": "user", "content": "Write a Python function that checks whether a string is a palindrome."}]]
    opts = dict(temperature=0, max_tokens=48)
    plain = [chat(server, messages=a, **opts) for a in asks]
    s = Server(real_model_path(), "-np", "2", "-c", "4096", "--alias", "coder", "-md", real_model_path(),
               env={"TANDEM_DRAFT_HEAD_PREFIX": "0"})
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            fast = list(pool.map(lambda a: chat(s, messages=a, **opts), asks))
        m = metrics(s)
    finally:
        assert s.stop() == 0
    assert "a draft model speculating" in s.log_path.read_text()
    for p, f in zip(plain, fast):
        assert f.choices[0].message.content == p.choices[0].message.content
    drafted = m[("tandem_spec_drafted_tokens_total", ())]
    accepted = m[("tandem_spec_accepted_tokens_total", ())]
    assert accepted >= 0.8 * drafted >= 8, (accepted, drafted)
    # Each answer's timings count its own guesses (llama-server's draft_n / draft_n_accepted);
    # together they are the server's totals.
    per_request = [f.model_extra["timings"] for f in fast]
    assert sum(t["draft_n"] for t in per_request) == drafted
    assert sum(t["draft_n_accepted"] for t in per_request) == accepted
    assert all(0 < t["draft_n_accepted"] <= t["draft_n"] for t in per_request), per_request


WEATHER_TOOL = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}]
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris for 3 days?"}]


def streamed_tool_calls(server, **kw):
    calls, finish, content = {}, None, ""
    for chunk in client(server).chat.completions.create(model="coder", stream=True, **kw):
        for c in chunk.choices:
            content += c.delta.content or ""
            for tc in c.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                entry["name"] += tc.function.name or ""
                entry["arguments"] += tc.function.arguments or ""
            finish = c.finish_reason or finish
    return [calls[i] for i in sorted(calls)], finish, content


def check_weather_call(call, expect_days):
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert args["city"] == "Paris"
    if expect_days:
        assert args["days"] == 3 and isinstance(args["days"], int)  # typed by the schema


def tool_round_trip(s, expect_days):
    """The real model asks for the tool (greedy), streamed and not; its call and a tool result
    go back through the real template; it answers with text."""
    r = chat(s, messages=WEATHER_QUESTION, tools=WEATHER_TOOL, temperature=0, max_tokens=80)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert not choice.message.content
    assert len(choice.message.tool_calls) == 1
    check_weather_call(choice.message.tool_calls[0], expect_days)
    calls, finish, content = streamed_tool_calls(s, messages=WEATHER_QUESTION, tools=WEATHER_TOOL, temperature=0,
                                                 max_tokens=80)
    assert finish == "tool_calls" and content == ""  # no markup leaked into the content
    assert calls == [{"name": "get_weather", "arguments": choice.message.tool_calls[0].function.arguments}]
    history = WEATHER_QUESTION + [
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in choice.message.tool_calls]},
        {"role": "tool", "tool_call_id": choice.message.tool_calls[0].id, "content": "Sunny, 24 C, light wind."}]
    answer = chat(s, messages=history, tools=WEATHER_TOOL, temperature=0, max_tokens=60)
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    # The previous turns came from the cache.
    assert answer.usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens - 1


def test_tool_calls_json_form_round_trip(server):
    # Qwen2.5's template: the JSON form (this model writes the bare object; both are parsed).
    tool_round_trip(server, expect_days=False)


def test_tool_calls_xml_form_round_trip():
    template = shared_template("Qwen3-Coder.jinja")
    s = Server(real_model_path(), "-np", "1", "-c", "4096", "--alias", "coder", "--template", template)
    try:
        tool_round_trip(s, expect_days=True)
    finally:
        assert s.stop() == 0


def test_tool_choice_none_hides_the_tools(server):
    r = chat(server, messages=WEATHER_QUESTION, tools=WEATHER_TOOL, tool_choice="none", temperature=0, max_tokens=40)
    assert r.choices[0].finish_reason != "tool_calls" and not r.choices[0].message.tool_calls


def test_ngram_speculation_keeps_the_answer_and_guesses(server):
    listing = "\n".join(f"item_{i} = compute_value({i}, scale={i * 3})" for i in range(12))
    ask = [{"role": "user", "content": f"Repeat these lines exactly, nothing else:\n{listing}"}]
    plain = chat(server, messages=ask, temperature=0, max_tokens=120)
    s = Server(real_model_path(), "-np", "2", "-c", "4096", "--alias", "coder", "--spec", "ngram", "--draft-max", "8")
    try:
        fast = chat(s, messages=ask, temperature=0, max_tokens=120)
        streamed = "".join(stream_text(s, messages=ask, temperature=0, max_tokens=120)[0])
        m = metrics(s)
        drafted = m[("tandem_spec_drafted_tokens_total", ())]
        accepted = m[("tandem_spec_accepted_tokens_total", ())]
    finally:
        assert s.stop() == 0
    assert fast.choices[0].message.content == plain.choices[0].message.content
    assert streamed == plain.choices[0].message.content
    assert fast.usage.completion_tokens == plain.usage.completion_tokens
    # A copying answer is what the lookup guesses well.
    assert accepted > 0.5 * drafted > 0, (accepted, drafted)


def test_speculation_flags_are_checked():
    for args, needle in [(["--spec", "draft"], "-md"), (["--spec", "bogus"], "unknown method"),
                         (["--spec", "ngram", "-md", "x.gguf"], "draft model"),
                         (["--spec", "mtp"], "no MTP"), (["-md", "/nonexistent/draft.gguf"], "draft.gguf")]:
        p = subprocess.run([os.environ["TANDEM_BIN"], "serve", "-m", real_model_path(), "--port", "0", *args],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and needle in p.stderr, (args, p.stderr)
