"""Structured output from the real model (Qwen2.5-Coder-0.5B) through `tandem serve` and
`tandem run`, checked by `jsonschema` (PyPI): every output of many seeds at temperature 1.0
parses and validates; constrained greedy equals unconstrained greedy when the latter already
fits; forced tool calls parse and validate through the real templates; bad grammars and
schemas are 400s naming the problem, and a clear error with a non-zero exit on the CLI."""
import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from conftest import Server, real_model_path, shared_template  # noqa: E402

SEEDS = 32

SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "email": {"type": "string", "format": "email"},
            "address": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 20},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["city", "zip"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        },
        "required": ["name", "age", "address"],
    },
    "order": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "date": {"type": "string", "format": "date"},
            "status": {"enum": ["open", "shipped", "closed"]},
            "total": {"type": "number", "minimum": 0, "maximum": 1000},
            "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"$ref": "#/$defs/item"}},
        },
        "required": ["id", "date", "status", "items"],
        "$defs": {"item": {"type": "object", "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
            "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
            "required": ["sku", "qty"]}},
    },
    "choice": {
        "anyOf": [
            {"type": "object", "properties": {"kind": {"const": "point"}, "x": {"type": "integer"}, "y": {"type": "integer"}},
             "required": ["kind", "x", "y"]},
            {"type": "object", "properties": {"kind": {"const": "label"}, "text": {"type": "string", "maxLength": 16},
                                              "done": {"type": "boolean"}, "when": {"type": ["string", "null"], "format": "date-time"}},
             "required": ["kind", "text"]},
        ]
    },
}

PROMPTS = {
    "person": "Invent a person and describe them as JSON with name, age, email, address (city, zip) and tags.",
    "order": "Invent a shop order as JSON: id (uuid), date, status, total and items (sku like ABC-12, qty).",
    "choice": "Give either a point (x, y) or a label as JSON, with a 'kind' field.",
}

FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER


def validate(schema, text):
    value = json.loads(text)  # every output parses
    jsonschema.Draft202012Validator(schema, format_checker=FORMAT_CHECKER).validate(value)
    return value


@pytest.fixture(scope="module")
def server():
    s = Server(real_model_path(), "-np", "4", "-c", "8192", "--alias", "coder")
    yield s
    assert s.stop() == 0


def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="none", max_retries=0, timeout=600)


def ask(server, prompt, **kw):
    return client(server).chat.completions.create(
        model="coder", messages=[{"role": "user", "content": prompt}], **kw)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_sampled_output_validates(server, name):
    schema = SCHEMAS[name]
    rf = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}

    def one(seed):
        r = ask(server, PROMPTS[name], response_format=rf, temperature=1.0, seed=seed, max_tokens=400)
        return r.choices[0]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        choices = list(pool.map(one, range(SEEDS)))
    distinct = set()
    for seed, c in enumerate(choices):
        assert c.finish_reason == "stop", (seed, c.message.content)
        validate(schema, c.message.content)
        distinct.add(c.message.content)
    assert len(distinct) > SEEDS // 4, "temperature 1.0 should give varied outputs"


def test_streamed_output_validates_and_json_object_mode(server):
    schema = SCHEMAS["person"]
    for seed in range(4):
        parts = []
        for chunk in client(server).chat.completions.create(
                model="coder", messages=[{"role": "user", "content": PROMPTS["person"]}], stream=True, seed=seed,
                temperature=1.0, max_tokens=400,
                response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}):
            for c in chunk.choices:
                parts.append(c.delta.content or "")
        validate(schema, "".join(parts))
    for seed in range(6):
        r = ask(server, "Describe a cat as a JSON object.", response_format={"type": "json_object"}, temperature=1.0,
                seed=seed, max_tokens=300)
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(r.choices[0].message.content), dict)


def yes_or_no(content):
    # A chat answer's grammar admits up to four leading blanks (the line a reasoning model
    # writes after </think>; grammar::compile's leading_space), which a model may take.
    answer = content.lstrip(" \n")
    return len(content) - len(answer) <= 4 and answer in ("yes", "no")


def test_llama_server_fields(server):
    body = {"messages": [{"role": "user", "content": "Is the sky blue? Answer yes or no."}], "temperature": 1.0,
            "max_tokens": 10, "grammar": 'root ::= "yes" | "no"'}
    for seed in range(4):
        r = httpx.post(server.base + "/v1/chat/completions", json={**body, "seed": seed}, timeout=300).json()
        assert yes_or_no(r["choices"][0]["message"]["content"]), r
    schema = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 6}, "minItems": 3, "maxItems": 3}
    # A budget the answer can finish in: at temperature 1 the grammar's bounded whitespace
    # (a newline and up to 40 blanks) may be taken, and a cut-off answer is not JSON.
    r = httpx.post(server.base + "/v1/completions", json={"prompt": "Three dice rolls as a JSON list:", "seed": 1,
                                                          "json_schema": schema, "max_tokens": 300, "temperature": 1.0},
                   timeout=300).json()
    assert r["choices"][0]["finish_reason"] == "stop", r["choices"][0]
    validate(schema, r["choices"][0]["text"])


GREEDY_CASES = [
    ("Reply with only this JSON and nothing else: {\"name\": \"Ann\", \"age\": 31}",
     {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}),
    ("Output only the JSON array [1, 2, 3] with no other text.",
     {"type": "array", "items": {"type": "integer"}}),
    ("Answer with exactly one word, yes or no: is water wet?",
     {"enum": ["yes", "no", "Yes", "No"]}),
    ("Write the JSON object {\"ok\": true} and nothing else.",
     {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}),
]


def fits(schema, text):
    try:
        validate(schema, text)
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


def test_constrained_greedy_equals_unconstrained_greedy_when_it_fits(server):
    compared = 0
    for prompt, schema in GREEDY_CASES:
        free = ask(server, prompt, temperature=0, max_tokens=60).choices[0]
        bound = ask(server, prompt, temperature=0, max_tokens=60,
                    response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}).choices[0]
        validate(schema, bound.message.content)
        if free.finish_reason == "stop" and fits(schema, free.message.content):
            assert bound.message.content == free.message.content, prompt
            compared += 1
    assert compared >= 2, "the greedy comparison needs prompts whose free output already fits"


def test_forced_tool_calls_validate_json_form(server):
    check_tool_calls(server)


def test_forced_tool_calls_validate_xml_form():
    template = shared_template("Qwen3-Coder.jinja")
    s = Server(real_model_path(), "-np", "2", "-c", "4096", "--alias", "coder", "--template", template)
    try:
        check_tool_calls(s)
    finally:
        assert s.stop() == 0


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a city",
     "parameters": {"type": "object", "properties": {
         "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7},
         "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "days"]}}},
    {"type": "function", "function": {"name": "add", "description": "Add two numbers",
     "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"]}}},
]


def check_tool_calls(server):
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    question = [{"role": "user", "content": "What's the weather in Oslo for the next 2 days?"}]
    for seed in range(8):
        for choice in ("required", {"type": "function", "function": {"name": "add"}}):
            r = client(server).chat.completions.create(model="coder", messages=question, tools=TOOLS, tool_choice=choice,
                                                       temperature=1.0, seed=seed, max_tokens=200)
            c = r.choices[0]
            assert c.finish_reason == "tool_calls", c
            assert len(c.message.tool_calls) == 1
            call = c.message.tool_calls[0].function
            if isinstance(choice, dict):
                assert call.name == "add"
            jsonschema.validate(json.loads(call.arguments), by_name[call.name])
    # streamed
    names, args, finish = "", "", None
    for chunk in client(server).chat.completions.create(model="coder", messages=question, tools=TOOLS,
                                                        tool_choice="required", temperature=1.0, seed=3,
                                                        max_tokens=200, stream=True):
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                names += tc.function.name or ""
                args += tc.function.arguments or ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls"
    jsonschema.validate(json.loads(args), by_name[names])


def test_bad_schemas_and_grammars_are_400s_naming_the_problem(server):
    cases = [
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "not": {}}}}},
         "response_format", "unsupported keyword 'not'"),
        ({"response_format": {"type": "xml"}}, "response_format", "json_schema"),
        ({"grammar": "root ::= \"a\" b"}, "grammar", "rule 'b' is used but never defined"),
        ({"grammar": "root ::= \"a\"\nb ::= [x"}, "grammar", "line 2, column 7"),
        ({"grammar": "root ::= \"a\" root"}, "grammar", "can never complete"),
        ({"json_schema": {"type": "string", "pattern": "(?=x)"}}, "json_schema", "lookaround"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
            "a": {"type": "string", "format": "hostname"}}}}}], "tool_choice": "required"}, "tools", "hostname"),
    ]
    for extra, param, message in cases:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}
        r = httpx.post(server.base + "/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 400, (extra, r.text)
        err = r.json()["error"]
        assert err["param"] == param and message in err["message"], err


def test_grammar_too_ambiguous_to_match_is_a_400_and_the_server_goes_on(server):
    # Accepted when compiled, but every byte may open another nested root: the parse count
    # grows with each byte (past the matcher's bound within about six bytes of any text),
    # so the request fails within its first tokens, naming the cause.
    body = {"messages": [{"role": "user", "content": "Write a long sentence about bananas."}], "max_tokens": 64,
            "grammar": 'root ::= ([^?] root* | [^?]){1,9}'}
    r = httpx.post(server.base + "/v1/chat/completions", json=body, timeout=60)
    # A job still running after a second is answered through a kept-alive 200 body (see
    # server.cpp); one that fails sooner, as this does on an unloaded machine, gets a 400.
    assert r.status_code in (200, 400), r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "too ambiguous to match" in err["message"], err
    with httpx.stream("POST", server.base + "/v1/chat/completions", json={**body, "stream": True}, timeout=60) as s:
        events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    errors = [json.loads(e)["error"] for e in events if e != "[DONE]" and "error" in json.loads(e)]
    assert errors and errors[0]["type"] == "invalid_request_error" and "too ambiguous" in errors[0]["message"], events
    # A budget the answer can always finish in: up to four leading blanks (yes_or_no) and
    # the word (4 tokens failed when a sampled answer took the blanks first).
    ok = httpx.post(server.base + "/v1/chat/completions", timeout=60,
                    json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "grammar": 'root ::= "yes" | "no"'})
    assert ok.status_code == 200 and yes_or_no(ok.json()["choices"][0]["message"]["content"]), ok.text


def run_cli(*args, timeout=300):
    return subprocess.run([os.environ["TANDEM_BIN"], "run", "-m", real_model_path(), "-t", "2", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_json_schema_and_grammar(tmp_path):
    prompt = "<|im_start|>user\nGive a JSON object with a name and an age.<|im_end|>\n<|im_start|>assistant\n"
    schema = SCHEMAS["person"]
    (tmp_path / "s.json").write_text(json.dumps(schema))
    for seed in range(3):
        r = run_cli("-p", prompt, "-n", "300", "--temp", "1", "-s", str(seed), "--json-schema", "@" + str(tmp_path / "s.json"))
        assert r.returncode == 0, r.stderr
        validate(schema, r.stdout.strip())
    (tmp_path / "g.gbnf").write_text('root ::= "The answer is " [0-9]+ "."\n')
    r = run_cli("-p", prompt, "-n", "20", "--temp", "0", "--grammar-file", str(tmp_path / "g.gbnf"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("The answer is ") and r.stdout.strip().endswith(".")
    bad = run_cli("-p", prompt, "-n", "5", "--grammar", "root ::= [a-")
    assert bad.returncode != 0 and "--grammar: grammar: line 1, column 10" in bad.stderr, bad.stderr
    bad = run_cli("-p", prompt, "-n", "5", "--json-schema", '{"type": "object", "patternProperties": {}}')
    assert bad.returncode != 0 and "unsupported keyword 'patternProperties'" in bad.stderr, bad.stderr
