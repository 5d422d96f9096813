#!/usr/bin/env python3
"""Writes GGUF files with the `gguf` package (llama.cpp's own Python writer) that cover what
real files do and more: every metadata value type, nested arrays, string arrays with
non-ASCII text, a non-default alignment, format version 2, and a model split over three
files. tandem must read each exactly as `gguf` does (gguf_compare.py checks that).

usage: gguf_make_samples.py OUT_DIR     (prints the paths written, one per line)"""
import os
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as VT


def add_every_value_type(w):
    w.add_uint8("test.u8", 255)
    w.add_int8("test.i8", -128)
    w.add_uint16("test.u16", 65535)
    w.add_int16("test.i16", -32768)
    w.add_uint32("test.u32", 4294967295)
    w.add_int32("test.i32", -2147483648)
    w.add_float32("test.f32", 3.1415927)
    w.add_uint64("test.u64", 18446744073709551615)
    w.add_int64("test.i64", -9223372036854775808)
    w.add_float64("test.f64", -2.718281828459045e-300)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "héllo wörld — 日本語 🙂 \n\t\"quoted\"")
    w.add_array("test.array_u8", [0, 1, 2, 255])
    w.add_key_value("test.array_i16", [-3, 7, 32767], VT.ARRAY, VT.INT16)
    w.add_key_value("test.array_f32", [0.5, -1.25, 1e-7], VT.ARRAY, VT.FLOAT32)
    w.add_key_value("test.array_f64", [1e300, -0.0], VT.ARRAY, VT.FLOAT64)
    w.add_key_value("test.array_u64", [0, 2**64 - 1], VT.ARRAY, VT.UINT64)
    w.add_key_value("test.array_bool", [True, False, True], VT.ARRAY, VT.BOOL)
    w.add_array("test.array_string", ["a", "", "ĠĠ", "<|im_start|>", "中文"])
    w.add_array("test.array_nested", [[1, 2, 3], [4], [5, 6]])


def add_tensors(w, count, rng):
    types = [
        (gguf.GGMLQuantizationType.F32, np.float32, 4),
        (gguf.GGMLQuantizationType.F16, np.float16, 2),
        (gguf.GGMLQuantizationType.Q8_0, None, None),
        (gguf.GGMLQuantizationType.Q4_K, None, None),
    ]
    for i in range(count):
        qtype, np_type, _ = types[i % len(types)]
        rows, cols = 3 + i, 256
        if np_type is not None:
            data = rng.standard_normal((rows, cols)).astype(np_type)
            w.add_tensor(f"blk.{i}.weight", data)
        else:
            block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
            raw = rng.integers(0, 256, size=(rows, cols // block_elems * block_bytes), dtype=np.uint8)
            w.add_tensor(f"blk.{i}.weight", raw, raw_dtype=qtype)


def write(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    written = []

    path = os.path.join(out, "every-type.gguf")
    w = gguf.GGUFWriter(path, "testarch")
    add_every_value_type(w)
    add_tensors(w, 6, rng)
    write(w)
    written.append(path)

    path = os.path.join(out, "aligned-64.gguf")
    w = gguf.GGUFWriter(path, "testarch")
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    add_tensors(w, 5, rng)
    write(w)
    written.append(path)

    # Version 2 has the same little-endian layout as version 3; only the number differs.
    path = os.path.join(out, "version-2.gguf")
    with open(os.path.join(out, "every-type.gguf"), "rb") as f:
        data = bytearray(f.read())
    data[4:8] = (2).to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(data)
    written.append(path)

    path = os.path.join(out, "split.gguf")
    w = gguf.GGUFWriter(path, "testarch", split_max_tensors=3)
    w.add_string("general.name", "split sample")
    add_tensors(w, 8, rng)
    write(w)
    written.append(os.path.join(out, "split-00001-of-00003.gguf"))

    for p in written:
        if not os.path.exists(p):
            sys.exit(f"expected {p} to be written")
        print(p)


if __name__ == "__main__":
    main()
