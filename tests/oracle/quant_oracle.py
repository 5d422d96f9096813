#!/usr/bin/env python3
"""Writes bit-exact reference cases for tandem's quant code, computed with gguf-py.

Usage: quant_oracle.py OUT_FILE [--model REAL.gguf] [--seed N]
       quant_oracle.py --check FILE

Read by tests/quant/quant_oracle_test.cpp. Needs python3 with `gguf` and `numpy`.

File format (all integers little-endian uint32, floats little-endian IEEE float32):

    magic      8 bytes  b"TQORACL1"
    n_sections u32
    then n_sections sections, each:
      kind     u32   0 = dequantize case, 1 = quantize case
      type     u32   ggml type id (GGMLQuantizationType value)
      n_blocks u32   number of blocks (for F32/F16/BF16 a "block" is one element)
      label_n  u32   length of label
      label    label_n bytes of UTF-8 (where the data came from, e.g. "random",
                     "model:blk.0.ffn_down.weight")
      kind 0:  n_blocks * block_bytes   quantized bytes
               n_blocks * block_elems   float32: gguf.quants.dequantize of those bytes
      kind 1:  n_blocks * block_elems   float32 input
               n_blocks * block_bytes   gguf.quants.quantize of that input

block_bytes / block_elems are the ggml geometry of the type (the reader takes them from
its own type table). Every expected value comes from gguf.quants, except Q8_K, which
gguf-py cannot dequantize: its expectation is computed here as float32(d) * float32(q),
the same single rounding gguf-py uses for Q8_0.

Random blocks are random bytes whose f16 (Q8_K: f32) scale fields are replaced by
random finite values (normal, subnormal, zero, negative, extreme), so no input holds
NaN or Inf (a huge Q8_K scale may still overflow to Inf in the expected output).
Quantize inputs are finite float32 (plain F16/BF16 inputs also include +-Inf and
values that overflow f16).

Check mode: quant_oracle.py --check FILE reads a file in the same format written by
the C++ side (kind 0 sections: OUR quantized bytes and OUR dequantized floats) and
verifies that gguf.quants dequantizes those bytes to exactly those floats; exit 1 on
the first mismatch.
"""

from __future__ import annotations

import argparse
import struct
import sys

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf import quants
except ImportError as exc:  # pragma: no cover - environment problem, reported clearly
    sys.exit(f"quant_oracle.py: needs the gguf and numpy packages ({exc})")

MAGIC = b"TQORACL1"
KIND_DEQUANT = 0
KIND_QUANT = 1

# Byte offsets of the f16 scale fields inside one block, per type.
F16_FIELDS: dict[T, tuple[int, ...]] = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
    T.IQ4_NL: (0,), T.IQ4_XS: (0,),
}
DEQUANT_TYPES = [T.F32, T.F16, T.BF16, *F16_FIELDS.keys(), T.Q8_K]
QUANT_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]

# ggml geometry (gguf-py's table lists Q8_1 wrongly, but Q8_1 is not used here).
def geometry(t: T) -> tuple[int, int]:
    if t == T.Q8_K:
        return 256, 292
    return gguf.GGML_QUANT_SIZES[t]


def random_finite_f16(rng: np.random.Generator, n: int) -> np.ndarray:
    """uint16 bit patterns of finite f16 values of every kind."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    bits[(bits & 0x7C00) == 0x7C00] &= np.uint16(0xBFFF)  # exponent 31 -> 15: finite
    kind = rng.integers(0, 8, size=n)
    realistic = (rng.standard_normal(n) * 10.0 ** rng.uniform(-5, 0, n)).astype(np.float16)
    bits = np.where(kind < 4, realistic.view(np.uint16), bits)
    subnormal = rng.integers(1, 0x400, size=n).astype(np.uint16) | (rng.integers(0, 2, n).astype(np.uint16) << 15)
    bits = np.where(kind == 4, subnormal, bits)
    special = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x7BFF, 0xFBFF, 0x0400, 0x3C00], dtype=np.uint16)
    bits = np.where(kind == 5, special[rng.integers(0, len(special), n)], bits)
    return bits.astype(np.uint16)


def random_finite_f32_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    bits = rng.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32)
    bits[(bits & 0x7F800000) == 0x7F800000] &= np.uint32(0xBFFFFFFF)
    realistic = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 1, n)).astype(np.float32)
    return np.where(rng.integers(0, 2, n) == 0, realistic.view(np.uint32), bits).astype(np.uint32)


def random_blocks(rng: np.random.Generator, t: T, n_blocks: int) -> np.ndarray:
    elems, size = geometry(t)
    if t == T.F32:
        return random_finite_f32_bits(rng, n_blocks).view(np.uint8).reshape(n_blocks, 4)
    if t == T.F16:
        return random_finite_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    if t == T.BF16:
        bits = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint32).astype(np.uint16)
        bits[(bits & 0x7F80) == 0x7F80] &= np.uint16(0xBFFF)
        return bits.view(np.uint8).reshape(n_blocks, 2)
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint16).astype(np.uint8)
    if t == T.Q8_K:
        blocks[:, 0:4] = random_finite_f32_bits(rng, n_blocks).view(np.uint8).reshape(n_blocks, 4)
        return blocks
    for off in F16_FIELDS[t]:
        blocks[:, off:off + 2] = random_finite_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks


def reference_dequantize(t: T, blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    if t == T.Q8_K:
        d = blocks[:, 0:4].copy().view(np.float32)
        q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
        with np.errstate(over="ignore"):  # huge random scales overflow to Inf on purpose
            return (d * q).astype(np.float32)
    flat = np.ascontiguousarray(blocks).reshape(-1)
    if t in (T.F32, T.F16):
        out = quants.dequantize(flat, t)
    else:
        out = quants.dequantize(np.ascontiguousarray(blocks), t)
    return np.asarray(out, dtype=np.float32).reshape(n, -1)


def reference_quantize(t: T, x: np.ndarray) -> np.ndarray:
    """x: (n_blocks, block_elems) float32 -> (n_blocks, block_bytes) uint8."""
    n = x.shape[0]
    if t == T.F32:
        return x.astype(np.float32).view(np.uint8).reshape(n, -1)
    if t == T.F16:
        return quants.quantize(x.reshape(-1), t).view(np.uint8).reshape(n, -1)
    return np.asarray(quants.quantize(x, t)).view(np.uint8).reshape(n, -1)


def quant_inputs(rng: np.random.Generator, t: T, n_blocks: int) -> np.ndarray:
    elems, _ = geometry(t)
    if t in (T.F32, T.F16, T.BF16):
        x = random_finite_f32_bits(rng, n_blocks).view(np.float32).copy()
        # Values around the f16/bf16 limits and rounding boundaries, plus infinities.
        extra = np.array([65504.0, 65519.99, 65520.0, -65536.0, 6.0e-8, 2.98e-8, 5.96e-8, -1e-45,
                          np.inf, -np.inf, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 3.4e38], dtype=np.float32)
        x[: len(extra)] = extra
        return x.reshape(n_blocks, 1)
    x = np.empty((n_blocks, elems), dtype=np.float32)
    for i in range(n_blocks):
        scale = np.float32(10.0 ** rng.uniform(-8, 3))
        kind = i % 10
        if kind < 4:
            v = rng.standard_normal(elems) * scale
        elif kind < 6:
            v = rng.uniform(-1, 1, elems) * scale + rng.uniform(-1, 1) * scale
        elif kind == 6:  # one outlier dominates
            v = rng.standard_normal(elems) * scale * 0.01
            v[rng.integers(elems)] = scale * rng.choice([-1, 1])
        elif kind == 7:  # all positive or all negative
            v = np.abs(rng.standard_normal(elems)) * scale * rng.choice([-1, 1])
        elif kind == 8:  # coarse values: many exact ties in the rounding
            v = rng.integers(-16, 17, elems) * np.float32(0.25) * scale
        else:
            v = rng.standard_t(2, elems) * scale
        x[i] = v.astype(np.float32)
    # Deterministic edge blocks at the front.
    x[0] = 0.0
    x[1] = 1.5
    x[2] = -3.25
    x[3] = 0.0
    x[3][5] = 7.0
    x[4] = np.where(np.arange(elems) % 2 == 0, 1.0, -1.0)  # |max| tie, + first
    x[5] = -x[4]                                            # |max| tie, - first
    x[6] = np.linspace(-1, 1, elems, dtype=np.float32)
    x[7] = np.float32(1e-20) * rng.standard_normal(elems).astype(np.float32)  # f16 scale underflows
    return x


class Writer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sections: list[bytes] = []
        self.counts: dict[tuple[int, str], int] = {}

    def add(self, kind: int, t: T, label: str, first: np.ndarray, second: np.ndarray, n_blocks: int) -> None:
        lab = label.encode()
        head = struct.pack("<IIII", kind, int(t), n_blocks, len(lab)) + lab
        self.sections.append(head + np.ascontiguousarray(first).tobytes() + np.ascontiguousarray(second).tobytes())
        key = (kind, t.name)
        self.counts[key] = self.counts.get(key, 0) + n_blocks

    def dequant_case(self, t: T, label: str, blocks: np.ndarray) -> None:
        blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
        expected = reference_dequantize(t, blocks)
        self.add(KIND_DEQUANT, t, label, blocks, expected.astype("<f4"), blocks.shape[0])

    def quant_case(self, t: T, label: str, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = reference_quantize(t, x)
        self.add(KIND_QUANT, t, label, x.astype("<f4"), expected, x.shape[0])

    def write(self) -> None:
        with open(self.path, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(self.sections)))
            for s in self.sections:
                f.write(s)


def pick_spread(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in sorted(set(idx))]


def add_model_cases(w: Writer, path: str) -> None:
    reader = gguf.GGUFReader(path)
    by_type: dict[T, list] = {}
    for tensor in reader.tensors:
        by_type.setdefault(T(int(tensor.tensor_type)), []).append(tensor)
    for t, tensors in sorted(by_type.items(), key=lambda kv: int(kv[0])):
        if t not in DEQUANT_TYPES:
            print(f"quant_oracle: model type {t.name} not covered, skipped", file=sys.stderr)
            continue
        _, size = geometry(t)
        for tensor in pick_spread(tensors, 6):
            data = np.asarray(tensor.data)
            raw = data.view(np.uint8).reshape(data.shape[0] if data.ndim > 1 else 1, -1)
            rows = pick_spread(list(range(raw.shape[0])), 3)
            blocks = raw[rows].reshape(-1, size)
            w.dequant_case(t, f"model:{tensor.name}", blocks)
            # Realistic inputs for the quantizers: the decoded weights themselves.
            values = reference_dequantize(t, blocks).reshape(-1)
            for qt in QUANT_TYPES:
                q_elems, _ = geometry(qt)
                usable = values.size // q_elems * q_elems
                if usable and np.all(np.isfinite(values[:usable])):
                    w.quant_case(qt, f"model:{tensor.name}", values[:usable].reshape(-1, q_elems))


def read_sections(path: str):
    """Yields (kind, type, n_blocks, label, first_bytes, second_bytes) from an oracle file."""
    data = open(path, "rb").read()
    if data[:8] != MAGIC:
        raise ValueError(f"{path}: bad magic")
    (count,) = struct.unpack_from("<I", data, 8)
    pos = 12
    for _ in range(count):
        kind, tid, n_blocks, label_n = struct.unpack_from("<IIII", data, pos)
        pos += 16
        label = data[pos:pos + label_n].decode()
        pos += label_n
        t = T(tid)
        elems, size = geometry(t)
        n_bytes, n_floats = n_blocks * size, n_blocks * elems
        if kind == KIND_DEQUANT:
            first = data[pos:pos + n_bytes]
            second = data[pos + n_bytes:pos + n_bytes + 4 * n_floats]
        else:
            first = data[pos:pos + 4 * n_floats]
            second = data[pos + 4 * n_floats:pos + 4 * n_floats + n_bytes]
        pos += n_bytes + 4 * n_floats
        yield kind, t, n_blocks, label, first, second
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes")


def check(path: str) -> int:
    """Verifies kind-0 sections written by the C++ side against gguf.quants."""
    checked = 0
    for kind, t, n_blocks, label, raw, floats in read_sections(path):
        if kind != KIND_DEQUANT:
            continue
        elems, size = geometry(t)
        blocks = np.frombuffer(raw, dtype=np.uint8).reshape(n_blocks, size)
        ours = np.frombuffer(floats, dtype="<u4").reshape(n_blocks, elems)
        ref = reference_dequantize(t, blocks).view(np.uint32)
        bad = np.argwhere(ours != ref)
        if bad.size:
            b, e = bad[0]
            a, r = ours[b, e].view(np.float32), ref[b, e].view(np.float32)
            print(f"quant_oracle --check: MISMATCH {t.name} [{label}] block {b} element {e}: "
                  f"ours {a!r} (0x{ours[b, e]:08x}) gguf {r!r} (0x{ref[b, e]:08x})")
            return 1
        checked += n_blocks
        print(f"quant_oracle --check: {t.name} [{label}] {n_blocks} blocks identical")
    if checked == 0:
        print("quant_oracle --check: no dequantize sections found")
        return 1
    print(f"quant_oracle --check: OK, {checked} blocks")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", help="oracle file to write")
    ap.add_argument("--model", help="a real GGUF file to take blocks from")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--check", metavar="FILE", help="verify a file written by the C++ side instead")
    args = ap.parse_args()
    if args.check:
        return check(args.check)
    if not args.out:
        ap.error("OUT_FILE is required unless --check is given")

    rng = np.random.default_rng(args.seed)
    w = Writer(args.out)
    with np.errstate(over="ignore"):  # huge random scales overflow to Inf on purpose
        for t in DEQUANT_TYPES:
            elems, _ = geometry(t)
            n_blocks = {1: 8192, 32: 2048, 256: 512}[elems]
            w.dequant_case(t, "random", random_blocks(rng, t, n_blocks))
        for t in QUANT_TYPES:
            elems, _ = geometry(t)
            w.quant_case(t, "random", quant_inputs(rng, t, 8192 if elems == 1 else 2048))
        if args.model:
            add_model_cases(w, args.model)
    w.write()
    summary = ", ".join(f"{'deq' if k == 0 else 'q'}:{name}={n}" for (k, name), n in sorted(w.counts.items()))
    print(f"quant_oracle: wrote {len(w.sections)} sections to {args.out} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
