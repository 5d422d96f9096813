#!/usr/bin/env python3
"""Convert a Hugging Face byte-level BPE tokenizer.json into a vocabulary-only GGUF with
llama.cpp's keys and conventions, so tandem can load it like a model's vocabulary.

Conventions (those of llama.cpp's convert_hf_to_gguf.py for "gpt2"-model vocabularies):
  tokenizer.ggml.model       "gpt2"
  tokenizer.ggml.pre         given by --pre (default "qwen2")
  tokenizer.ggml.tokens      id order; ids with no token become "[PAD<id>]"
  tokenizer.ggml.token_type  NORMAL (1) for model tokens; added tokens CONTROL (3) when
                             marked special or when they look special ("<|...|>",
                             "<｜...｜>", "<pad>", "<mask>", "<unused...>"), otherwise
                             USER_DEFINED (4); padding ids UNUSED (5)
  tokenizer.ggml.merges      "left right" strings in rank order
  special ids / add_bos / add_eos from tokenizer_config.json beside tokenizer.json
  tokenizer.chat_template    from tokenizer_config.json when present

Usage: convert_tokenizer_json.py TOKENIZER_JSON OUT.gguf [--pre NAME] [--name NAME] [--n-vocab N]
Needs the `gguf` package (tools/requirements-test.txt).
"""
import argparse
import json
import os
import sys

import gguf

TOKEN_NORMAL = 1
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4
TOKEN_UNUSED = 5


def looks_special(text: str) -> bool:
    if text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]"):
        return True
    if text.startswith("<|") and text.endswith("|>"):
        return True
    if text.startswith("<\uff5c") and text.endswith("\uff5c>"):
        return True
    return text.startswith("<unused") and text.endswith(">")


def token_text(value):
    """tokenizer_config.json names special tokens as a string or as {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def convert(tokenizer_json: str, out_path: str, pre: str, name: str, n_vocab: int = 0) -> None:
    with open(tokenizer_json, encoding="utf-8") as f:
        tj = json.load(f)
    model = tj["model"]
    if model.get("type") != "BPE":
        sys.exit(f"{tokenizer_json}: model type {model.get('type')!r} is not BPE")
    pretok = json.dumps(tj.get("pre_tokenizer"))
    if "ByteLevel" not in pretok:
        sys.exit(f"{tokenizer_json}: not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer)")

    config = {}
    config_path = os.path.join(os.path.dirname(tokenizer_json), "tokenizer_config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)

    id_to_text = {int(i): t for t, i in model["vocab"].items()}
    added = {int(t["id"]): t for t in tj.get("added_tokens", [])}
    for i, t in added.items():
        id_to_text[i] = t["content"]
    size = max(id_to_text) + 1
    if n_vocab:
        if n_vocab < size:
            sys.exit(f"--n-vocab {n_vocab} is below the {size} ids {tokenizer_json} uses")
        size = n_vocab  # a model's embedding has rows past the last token (padding ids)

    tokens, types = [], []
    for i in range(size):
        if i not in id_to_text:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
        elif i in added and added[i]["content"] not in model["vocab"]:
            text = added[i]["content"]
            special = added[i].get("special", False) or looks_special(text)
            tokens.append(text)
            types.append(TOKEN_CONTROL if special else TOKEN_USER_DEFINED)
        else:
            tokens.append(id_to_text[i])
            types.append(TOKEN_NORMAL)

    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    w = gguf.GGUFWriter(out_path, arch="qwen3")
    w.add_name(name)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    text_to_id = {t: i for i, t in enumerate(tokens)}
    for key, adder in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                       ("unk_token", w.add_unk_token_id), ("pad_token", w.add_pad_token_id)):
        text = token_text(config.get(key))
        if text is not None:
            if text not in text_to_id:
                sys.exit(f"{config_path}: {key} {text!r} is not in the vocabulary")
            adder(text_to_id[text])
    if "add_bos_token" in config:
        w.add_add_bos_token(bool(config["add_bos_token"]))
    if "add_eos_token" in config:
        w.add_add_eos_token(bool(config["add_eos_token"]))
    if isinstance(config.get("chat_template"), str):
        w.add_chat_template(config["chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{out_path}: {size} tokens ({sum(t == TOKEN_CONTROL for t in types)} control, "
          f"{sum(t == TOKEN_USER_DEFINED for t in types)} user-defined), {len(merges)} merges, pre={pre}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tokenizer_json")
    ap.add_argument("out")
    ap.add_argument("--pre", default="qwen2", help="tokenizer.ggml.pre value (default qwen2)")
    ap.add_argument("--name", default="qwen3-tokenizer", help="general.name")
    ap.add_argument("--n-vocab", type=int, default=0, help="pad to this many ids (as a model's embedding rows)")
    args = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    convert(args.tokenizer_json, args.out, args.pre, args.name, args.n_vocab)


if __name__ == "__main__":
    main()
