#!/usr/bin/env python3
"""Oracle for the tokenizer: HF `tokenizers` (PyPI) on the model's own tokenizer.json gives
the expected ids of every corpus case; tests/text/tokenizer_corpus_test.cpp compares ours.

Cases: every corpus line; chunks of 2-6 consecutive lines joined with "\\n", "\\r\\n",
"\\r", "\\n\\n\\n", " \\n " or "\\t\\n"; the whole corpus as one text. Each with and without
special-token parsing:
  parse_special=true   HF encode as is (added tokens are matched in the text)
  parse_special=false  HF with encode_special_tokens=True, i.e. special added tokens are
                       tokenized as plain text. The added tokens that llama.cpp's GGUF
                       conventions make CONTROL (special, or looking special like
                       "<|fim_prefix|>") are marked special first, so that both sides agree
                       on which added tokens are control tokens; user-defined ones such as
                       <think> stay matched in both modes, in HF as in tandem.
Encoding never adds BOS/EOS (add_special_tokens=False), like our add_special=false.
The corpus must be NFC: tandem (like llama.cpp) does not apply the NFC normaliser that
Qwen3's tokenizer.json declares, so the script refuses text that NFC would change.

Usage: tokenizer_oracle.py TOKENIZER_JSON CORPUS_TXT OUT_JSON
"""
import json
import os
import random
import sys
import unicodedata

from tokenizers import Tokenizer


def looks_special(text: str) -> bool:  # same rule as tools/tokenizer/convert_tokenizer_json.py
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<\uff5c") and text.endswith("\uff5c>"))
            or (text.startswith("<unused") and text.endswith(">")))


def main():
    tokenizer_json, corpus_path, out_path = sys.argv[1:4]
    with open(tokenizer_json, encoding="utf-8") as f:
        tj = json.load(f)
    parsing = Tokenizer.from_str(json.dumps(tj))
    for t in tj.get("added_tokens", []):
        if looks_special(t["content"]):
            t["special"] = True
    plain = Tokenizer.from_str(json.dumps(tj))
    plain.encode_special_tokens = True

    with open(corpus_path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")  # only "\n" separates lines (not \x85, \u2028, ...)
    if lines and lines[-1] == "":
        lines.pop()

    texts = list(lines)
    rng = random.Random(7)
    joiners = ["\n", "\r\n", "\r", "\n\n\n", " \n ", "\t\n"]
    i = 0
    while i < len(lines):
        k = rng.randint(2, 6)
        texts.append(rng.choice(joiners).join(lines[i:i + k]))
        i += k
    texts.append("\n".join(lines))

    cases = []
    for text in texts:
        if unicodedata.normalize("NFC", text) != text:
            sys.exit(f"corpus text is not NFC (out of scope, see docstring): {text!r}")
        for parse_special, tok in ((False, plain), (True, parsing)):
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({"text": text, "parse_special": parse_special, "ids": ids})
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"tokenizer": tokenizer_json, "cases": cases}, f, ensure_ascii=False)
    print(f"{out_path}: {len(cases)} cases from {len(lines)} lines, "
          f"{sum(len(c['ids']) for c in cases)} tokens")


if __name__ == "__main__":
    main()
