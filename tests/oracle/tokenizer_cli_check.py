#!/usr/bin/env python3
"""`tandem tokenize` end to end: --json ids equal HF tokenizers' for a few texts (plain
with special tokens parsed by default and with --no-parse-special, -p and -f), the plain listing has one "id<TAB>piece" line per token,
and bad input (missing model, file without a tokenizer, unsupported tokenizer model) exits
1 with an error naming the problem.

Usage: tokenizer_cli_check.py TANDEM TOKENIZER_JSON VOCAB_GGUF SHARED_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer

tandem, tokenizer_json, vocab, shared = sys.argv[1:5]
hf = Tokenizer.from_file(tokenizer_json)
failures = 0


def run(*args):
    return subprocess.run([tandem, "tokenize", *args], capture_output=True)


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


texts = ["Hello world", "<|im_start|>user\n你好 🙂<|im_end|>\n", "  tabs\tand\r\nCRLF  ", "x" * 1000]
for text in texts:
    for special, flags in ((False, ["--no-parse-special"]), (True, []), (True, ["--parse-special"])):
        args = ["-m", vocab, "-p", text, "--json"] + flags
        r = run(*args)
        check(r.returncode == 0, f"exit {r.returncode} for {text!r}: {r.stderr!r}")
        if r.returncode:
            continue
        ours = json.loads(r.stdout)
        hf.encode_special_tokens = not special
        check(ours == hf.encode(text, add_special_tokens=False).ids, f"ids differ for {text!r} special={special}")

with tempfile.NamedTemporaryFile("wb", delete=False) as f:
    f.write("file text\r\nwith bytes é\n".encode())
r = run("-m", vocab, "-f", f.name, "--json")
check(r.returncode == 0 and json.loads(r.stdout) == hf.encode("file text\r\nwith bytes é\n", add_special_tokens=False).ids, "-f")
lines = run("-m", vocab, "-f", f.name).stdout.decode().splitlines()
check(len(lines) == len(json.loads(r.stdout)) and all("\t" in l for l in lines), "plain listing")
os.unlink(f.name)

bad = [
    (["-m", "/nonexistent/model.gguf", "-p", "x"], "/nonexistent/model.gguf"),
    (["-m", os.path.join(shared, "data", "vocab", "ggml-vocab-bert-bge.gguf"), "-p", "x"], "'bert' is not supported"),
    (["-m", vocab], "-p TEXT or -f FILE"),
    (["-m", vocab, "-f", "/nonexistent/text.txt"], "/nonexistent/text.txt"),
]
model = os.environ.get("TANDEM_TEST_MODEL")
with tempfile.TemporaryDirectory() as d:
    import gguf
    path = os.path.join(d, "no-tokenizer.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    bad.append((["-m", path, "-p", "x"], "no tokenizer"))
    for args, needle in bad:
        r = run(*args)
        err = r.stderr.decode()
        check(r.returncode == 1 and needle in err, f"{args}: exit {r.returncode}, stderr {err!r}")

print(f"tokenizer CLI: {failures} failed")
sys.exit(1 if failures else 0)
