#!/usr/bin/env python3
"""Chat-template oracle: Python jinja2 configured exactly as transformers'
apply_chat_template configures it, against `tandem template`.

transformers (utils/chat_template_utils.py) compiles templates with
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]), replaces the `tojson` filter with json.dumps
(ensure_ascii=False by default, indent/separators/sort_keys passed through), adds the
globals raise_exception (raises TemplateError) and strftime_now, and renders with
messages, tools (None when absent), documents (None), add_generation_prompt, then the
special tokens and the caller's extra kwargs.

  template_render.py render TEMPLATE CONVERSATION [--add-generation-prompt] [--var k=json]...
  template_render.py compare TANDEM_CLI --model GGUF --templates DIR --conversations DIR
      renders every template (and the model's own) x every conversation x generation
      prompt on/off x enable_thinking absent/true/false with both, and requires identical
      bytes -- or an error from both, of the same kind and the same gist (same_error).
      Each template file gets the bos/eos strings of its own model's tokenizer
      (SPECIAL_TOKENS), as transformers passes them; the model's template gets the model's.
"""
import argparse
import datetime
import os
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# bos_token/eos_token of the model each template in ../shared/data/templates comes from, as
# its tokenizer_config.json on Hugging Face gives them (transformers passes these to the
# template). Phi-3.5's and the DeepSeek distills' agree with llama.cpp's vocab GGUFs in
# ../shared/data/vocab (ggml-vocab-phi-3, ggml-vocab-deepseek-llm). Templates that use
# neither token (the Qwen family, SmolLM3) are left out.
LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
DEEPSEEK = {"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"}
SPECIAL_TOKENS = {
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": {"bos_token": "<s>", "eos_token": "</s>"},
    "google-gemma-2-2b-it.jinja": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "microsoft-Phi-3.5-mini-instruct.jinja": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
    "meta-llama-Llama-3.1-8B-Instruct.jinja": LLAMA3,
    "meta-llama-Llama-3.2-3B-Instruct.jinja": LLAMA3,
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"},
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": DEEPSEEK,
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": DEEPSEEK,
}

# Where jinja2 and tandem word the same error differently: (jinja2 pattern, tandem pattern
# with \1 for the name both must carry).
PARAPHRASES = [
    (r"cannot unpack non-iterable (\w+) object", r"'\1' object is not iterable"),
    (r"Encountered unknown tag '([^']+)'\.", r"unexpected '\1'"),
]


def normal(message):
    return " ".join(message.replace("'", "").replace('"', "").lower().rstrip(".").split())


def same_error(expected_error, stderr):
    """Whether tandem's error (its stderr: "error: WHERE:LINE:COL: MESSAGE") is the one
    jinja2 raised (expected_error: "ExceptionClass: message"): a template's
    raise_exception() must come out as such with its message verbatim; Python's recursion
    limit as tandem's call-depth limit; any other error with the same message up to quotes
    and case, one containing the other (tandem may add what it saw), or a PARAPHRASES entry
    naming the same thing. Returns None when they agree, else why not."""
    kind, _, message = expected_error.partition(": ")
    found = re.match(r"error: .*?:\d+:\d+: (.*)", stderr, re.S)
    if not found:
        return f"tandem's error names no template line:column: {stderr!r}"
    ours = found.group(1).strip()
    raised = ours.startswith("template raised an error: ")
    if kind == "TemplateError":  # raise_exception() in the template
        if not raised or ours[len("template raised an error: "):] != message:
            return f"the template raised {message!r}; tandem says {ours!r}"
        return None
    if raised:
        return f"jinja2 raised {expected_error}; tandem says the template raised: {ours!r}"
    if kind == "RecursionError":
        return None if "call depth" in ours else f"jinja2 hit its recursion limit; tandem says {ours!r}"
    a, b = normal(message), normal(ours)
    short, long = sorted((a, b), key=len)
    if short and short in long and len(short) >= 0.6 * len(long):
        return None
    for theirs, tandem in PARAPHRASES:
        m = re.fullmatch(theirs, message)
        if m and re.search(m.expand(tandem), ours):
            return None
    return f"jinja2 raised {expected_error}; tandem says {ours!r}"


def render(source, conversation, add_generation_prompt, extra, special_tokens):
    """Returns (text, None) or (None, "ExceptionClass: message")."""
    try:
        template = make_env().from_string(source)
        kwargs = {**special_tokens, **extra}
        text = template.render(messages=conversation["messages"], tools=conversation.get("tools"),
                               documents=conversation.get("documents"),
                               add_generation_prompt=add_generation_prompt, **kwargs)
        return text, None
    except Exception as e:  # the template's own errors and Python errors alike
        return None, f"{type(e).__name__}: {e}"


def model_info(path):
    """Chat template and bos/eos strings of a GGUF, read with the gguf package."""
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def field(key):
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    tokens = field("tokenizer.ggml.tokens") or []
    special = {}
    for name, key in (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id")):
        idx = field(key)
        if idx is not None and idx < len(tokens):
            special[name] = tokens[idx]
    return field("tokenizer.chat_template"), special


def first_difference(expected, actual, context=60):
    n = min(len(expected), len(actual))
    i = next((k for k in range(n) if expected[k] != actual[k]), n)
    line = expected.count("\n", 0, i) + 1
    return (f"first difference at character {i} (line {line}):\n"
            f"    jinja2: {expected[max(0, i - context):i + context]!r}\n"
            f"    tandem: {actual[max(0, i - context):i + context]!r}")


def shared_missing(path):
    if Path(path).is_dir():
        return False
    if os.environ.get("TANDEM_REQUIRE_SHARED") == "1":
        sys.exit(f"shared data missing: {path} (TANDEM_REQUIRE_SHARED=1)")
    print(f"SKIPPED LOUDLY: {path} not found; set TANDEM_SHARED")
    return True


def run_tandem(cmd):
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    return proc.returncode, proc.stdout.decode("utf-8", errors="replace"), proc.stderr.decode("utf-8", errors="replace").strip()


def snippets(args):
    """Feature snippets: each {"template": ..., "vars": {...}} renders identically (or both fail)."""
    cases = json.loads(Path(args.file).read_text(encoding="utf-8"))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "messages.json"
        empty.write_text("[]")
        for k, case in enumerate(cases):
            tpath = Path(tmp) / f"snippet{k}.jinja"
            tpath.write_text(case["template"], encoding="utf-8")
            variables = case.get("vars", {})
            expected, expected_error = render(case["template"], {"messages": []}, False, variables, {})
            cmd = [args.tandem, "template", "--template", str(tpath), "--messages", str(empty)]
            for name, value in variables.items():
                cmd += ["--var", f"{name}={json.dumps(value)}"]
            code, out, err = run_tandem(cmd)
            label = f"snippet {k}: {case['template']!r}"
            if code not in (0, 1) or "Sanitizer" in err:
                failures += 1
                print(f"FAIL {label}: crashed (exit {code}) {err[-300:]}")
            elif expected_error is not None:
                why = None if code == 0 else same_error(expected_error, err)
                if code == 0:
                    failures += 1
                    print(f"FAIL {label}: jinja2 raised {expected_error} but tandem printed {out!r}")
                elif why:
                    failures += 1
                    print(f"FAIL {label}: a different error: {why}")
                elif args.verbose:
                    print(f"ok   {label}: both raise: jinja2 {expected_error} / tandem {err}")
            elif code != 0:
                failures += 1
                print(f"FAIL {label}: tandem failed: {err}")
            elif out != expected:
                failures += 1
                print(f"FAIL {label}: {first_difference(expected, out)}")
            elif args.verbose:
                print(f"ok   {label}")
    print(f"{len(cases)} snippets: {len(cases) - failures} agree with jinja2, {failures} differ")
    return 1 if failures else 0


def compare(args):
    if shared_missing(args.templates):
        return 0
    source_of = {}
    for path in sorted(Path(args.templates).glob("*.jinja")):
        source_of[path.name] = (path.read_text(encoding="utf-8"), str(path))
    special = {}
    if args.model:
        model_template, special = model_info(args.model)
        if model_template is None:
            sys.exit(f"{args.model}: no tokenizer.chat_template")
        source_of["<model>"] = (model_template, None)
    # The template files render with their own models' special tokens (on both sides, as
    # --var: without -m tandem has no token strings of its own).
    tokens_of = {name: (special if path is None else SPECIAL_TOKENS.get(name, {})) for name, (_, path) in source_of.items()}
    conversations = sorted(Path(args.conversations).glob("*.json"))
    if not source_of or not conversations:
        sys.exit("no templates or no conversations found")
    variants = []
    for agp in (False, True):
        for thinking in (None, True, False):
            variants.append((agp, {} if thinking is None else {"enable_thinking": thinking}))

    cases = failures = both_raise = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, path) in source_of.items():
            for conv_path in conversations:
                conversation = json.loads(conv_path.read_text(encoding="utf-8"))
                for agp, extra in variants:
                    cases += 1
                    expected, expected_error = render(source, conversation, agp, extra, tokens_of[name])
                    cmd = [args.tandem, "template", "--messages", str(conv_path)]
                    if path:
                        cmd += ["--template", path]
                        for k, v in tokens_of[name].items():
                            cmd += ["--var", f"{k}={json.dumps(v)}"]
                    else:
                        cmd += ["-m", args.model]
                    if agp:
                        cmd.append("--add-generation-prompt")
                    for k, v in extra.items():
                        cmd += ["--var", f"{k}={json.dumps(v)}"]
                    proc = subprocess.run(cmd, capture_output=True, timeout=60)
                    label = f"{name} x {conv_path.name} agp={agp} {extra or ''}"
                    actual = proc.stdout.decode("utf-8", errors="replace")
                    stderr = proc.stderr.decode("utf-8", errors="replace").strip()
                    if proc.returncode not in (0, 1) or "Sanitizer" in stderr:
                        failures += 1
                        print(f"FAIL {label}: tandem crashed (exit {proc.returncode}): {stderr[-500:]}")
                    elif expected_error is not None:
                        why = None if proc.returncode == 0 else same_error(expected_error, stderr)
                        if proc.returncode == 0:
                            failures += 1
                            print(f"FAIL {label}: jinja2 raised ({expected_error}) but tandem rendered {actual[:200]!r}")
                        elif why:
                            failures += 1
                            print(f"FAIL {label}: a different error: {why}")
                        else:
                            both_raise += 1
                            if args.verbose:
                                print(f"ok   {label}: both raise\n    jinja2: {expected_error}\n    tandem: {stderr}")
                    elif proc.returncode != 0:
                        failures += 1
                        print(f"FAIL {label}: tandem failed: {stderr}")
                    elif actual != expected:
                        failures += 1
                        print(f"FAIL {label}: output differs; {first_difference(expected, actual)}")
                    elif args.verbose:
                        print(f"ok   {label}")
    print(f"{cases} renders ({len(source_of)} templates x {len(conversations)} conversations x {len(variants)} variants): "
          f"{cases - failures} agree ({both_raise} of them the same error in both), {failures} differ")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("render")
    r.add_argument("template")
    r.add_argument("conversation")
    r.add_argument("--add-generation-prompt", action="store_true")
    r.add_argument("--var", action="append", default=[])
    r.add_argument("--bos", default=None)
    r.add_argument("--eos", default=None)
    c = sub.add_parser("compare")
    c.add_argument("tandem")
    c.add_argument("--model")
    c.add_argument("--templates", required=True)
    c.add_argument("--conversations", required=True)
    c.add_argument("--verbose", action="store_true")
    sn = sub.add_parser("snippets")
    sn.add_argument("tandem")
    sn.add_argument("file")
    sn.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.mode == "snippets":
        return snippets(args)
    if args.mode == "render":
        conv = json.loads(Path(args.conversation).read_text(encoding="utf-8"))
        if isinstance(conv, list):
            conv = {"messages": conv}
        extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.var)}
        special = {k: v for k, v in (("bos_token", args.bos), ("eos_token", args.eos)) if v is not None}
        text, err = render(Path(args.template).read_text(encoding="utf-8"), conv, args.add_generation_prompt, extra, special)
        if err:
            sys.exit(err)
        sys.stdout.write(text)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
