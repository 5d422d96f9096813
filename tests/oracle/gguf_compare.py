#!/usr/bin/env python3
"""Oracle check for the GGUF reader: `tandem inspect --json --full` must report exactly what
the `gguf` package (PyPI, llama.cpp's own Python reader) reads from the same file.

usage: gguf_compare.py TANDEM_BINARY FILE.gguf [FILE.gguf ...]

For a split model pass its first part: each part is compared against gguf's reader of that
part. Compared: format version, every metadata key in order with its type (element types for
arrays, nested arrays included) and its full value; every tensor's name, type, shape, element
count, byte size and absolute data offset. Exit status 1 on the first difference."""
import json
import math
import subprocess
import sys

import gguf
from gguf import GGUFValueType

TYPE_NAMES = {
    GGUFValueType.UINT8: "uint8", GGUFValueType.INT8: "int8", GGUFValueType.UINT16: "uint16",
    GGUFValueType.INT16: "int16", GGUFValueType.UINT32: "uint32", GGUFValueType.INT32: "int32",
    GGUFValueType.FLOAT32: "float32", GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "string",
    GGUFValueType.ARRAY: "array", GGUFValueType.UINT64: "uint64", GGUFValueType.INT64: "int64",
    GGUFValueType.FLOAT64: "float64",
}


def same_value(a, b):
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return (math.isnan(a) and math.isnan(b)) or float(a) == float(b)
        return False
    return a == b


def flatten(items):
    out = []
    for item in items:
        out.extend(flatten(item) if isinstance(item, list) else [item])
    return out


def fail(path, message):
    print(f"MISMATCH {path}: {message}")
    sys.exit(1)


def compare_part(path, part_index, ours, ours_tensors, check_metadata):
    reader = gguf.GGUFReader(path)
    fields = [f for f in reader.fields.values() if not f.name.startswith("GGUF.")]
    version = int(reader.fields["GGUF.version"].contents())
    if version != ours["parts"][part_index]["version"]:
        fail(path, f"version gguf {version}, tandem {ours['parts'][part_index]['version']}")
    if check_metadata:
        if len(fields) != len(ours["metadata"]):
            fail(path, f"{len(fields)} metadata keys in gguf, {len(ours['metadata'])} in tandem")
        for field, entry in zip(fields, ours["metadata"]):
            if field.name != entry["key"]:
                fail(path, f"key order differs: gguf '{field.name}', tandem '{entry['key']}'")
            types = [TYPE_NAMES[t] for t in field.types]
            if types[0] != entry["type"]:
                fail(path, f"{field.name}: type gguf {types[0]}, tandem {entry['type']}")
            # gguf reports no element type for an empty array.
            if types[0] == "array" and len(types) > 1 and types[1] != entry["element_type"]:
                fail(path, f"{field.name}: element type gguf {types[1]}, tandem {entry['element_type']}")
            theirs = field.contents()
            mine = entry["value"]
            if types[0] == "array" and len(types) > 1 and types[1] == "array":
                # gguf's contents() flattens nested arrays; compare the flattened leaves and
                # the element type of the innermost arrays.
                mine = flatten(mine)
            if not same_value(theirs, mine):
                fail(path, f"{field.name}: value differs:\n  gguf   {str(theirs)[:300]}\n"
                           f"  tandem {str(entry['value'])[:300]}")
    if len(reader.tensors) != len(ours_tensors):
        fail(path, f"{len(reader.tensors)} tensors in gguf, {len(ours_tensors)} in tandem")
    for t, o in zip(reader.tensors, ours_tensors):
        theirs = {"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape],
                  "n_elements": int(t.n_elements), "bytes": int(t.n_bytes),
                  "offset": int(t.data_offset), "part": part_index}
        mine = {k: o[k] for k in theirs}
        if theirs != mine:
            fail(path, f"tensor differs:\n  gguf   {theirs}\n  tandem {mine}")
    return len(fields), len(reader.tensors)


def main():
    binary, files = sys.argv[1], sys.argv[2:]
    if not files:
        fail("-", "no files given")
    for path in files:
        out = subprocess.run([binary, "inspect", "--json", "--full", path], capture_output=True)
        if out.returncode != 0:
            fail(path, f"tandem inspect failed: {out.stderr.decode(errors='replace')}")
        ours = json.loads(out.stdout)
        n_keys = n_tensors = 0
        for index, part in enumerate(ours["parts"]):
            tensors = [t for t in ours["tensors"] if t["part"] == index]
            k, n = compare_part(part["path"], index, ours, tensors, check_metadata=index == 0)
            n_keys += k if index == 0 else 0
            n_tensors += n
        if n_tensors != ours["n_tensors"]:
            fail(path, f"tensor total {ours['n_tensors']} != sum over parts {n_tensors}")
        print(f"ok {path}: {len(ours['parts'])} part(s), {n_keys} keys, {n_tensors} tensors")


if __name__ == "__main__":
    main()
