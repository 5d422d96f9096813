#!/usr/bin/env bash
# The objects of a kernel variant compiled for an ISA this CPU may lack (vnni.h,
# dot_bf16_dp.h), checked where no CPU runs them:
#  - each defines no function with external linkage (nm: T, or W for weak/inline code) but
#    its own kernels (namespace tandem::cpu::<variant>): an inline helper or template
#    compiled with AVX-512 flags and exported weakly could be the copy the linker hands to
#    AVX2-only code (SIGILL there). Data (V, u, D, R, B: e.g. an inline constexpr table,
#    the EH personality reference of sanitizer builds) holds no instructions and may be shared;
#  - each really contains the instruction (the variant was compiled for it).
# usage: isa_objects_test.sh VARIANT INSTRUCTION OBJECT...
set -euo pipefail
variant=$1
instruction=$2
shift 2
status=0
for obj in "$@"; do
  leaked=$(nm -C --defined-only "$obj" | awk '$2 ~ /^[TW]$/' | grep -v "tandem::cpu::${variant}::dot_" || true)
  if [ -n "$leaked" ]; then
    echo "FAIL: $obj exports functions outside tandem::cpu::${variant}::dot_*:" >&2
    echo "$leaked" >&2
    status=1
  fi
  count=$(objdump -d --no-show-raw-insn "$obj" | grep -c "$instruction" || true)
  if [ "$count" -eq 0 ]; then
    echo "FAIL: $obj has no $instruction instruction" >&2
    status=1
  else
    echo "ok: $(basename "$obj"): only its kernels exported, $count $instruction"
  fi
done
exit $status
