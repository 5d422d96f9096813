#!/usr/bin/env bash
# tandem vs a peer engine's llama-bench, same models and settings, one markdown table:
#   bench/compare.sh --peer /path/to/llama-bench [--peer-name llama.cpp] [-t N] [-p 512]
#                    [-n 128] [-d 0] [-r 3] MODEL.gguf [MODEL2.gguf ...]
# tandem is $TANDEM_BIN (default build/release/tandem). The peer is only run, never built
# or fetched. Both write llama-bench JSON; bench/compare_report.py pairs the tests up.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TANDEM_BIN="${TANDEM_BIN:-$ROOT/build/release/tandem}"

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "compare: $*" >&2; exit 1; }

peer="" peer_name="llama.cpp" threads="" p=512 n=128 d=0 r=3 models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peer) peer="${2:?--peer needs a path}"; shift 2 ;;
    --peer-name) peer_name="${2:?--peer-name needs a name}"; shift 2 ;;
    -t) threads="${2:?-t needs a number}"; shift 2 ;;
    -p) p="${2:?-p needs a value}"; shift 2 ;;
    -n) n="${2:?-n needs a value}"; shift 2 ;;
    -d) d="${2:?-d needs a value}"; shift 2 ;;
    -r) r="${2:?-r needs a value}"; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "compare: unknown option $1" >&2; usage ;;
    *) models+=("$1"); shift ;;
  esac
done
[ -n "$peer" ] || { echo "compare: --peer is required" >&2; usage; }
[ ${#models[@]} -gt 0 ] || { echo "compare: no model given" >&2; usage; }
[ -x "$peer" ] || die "peer '$peer' is not an executable file (this script never builds or fetches one)"
[ -x "$TANDEM_BIN" ] || die "tandem '$TANDEM_BIN' not found (build it, or set TANDEM_BIN)"
for m in "${models[@]}"; do [ -f "$m" ] || die "model '$m' not found"; done
if [ -z "$threads" ]; then
  # Physical cores, as llama-bench's default; nproc where lscpu cannot say.
  threads="$(lscpu -p=Core,Socket 2>/dev/null | grep -v '^#' | sort -u | wc -l)"
  [ "$threads" -gt 0 ] 2>/dev/null || threads="$(nproc)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
margs=()
for m in "${models[@]}"; do margs+=(-m "$m"); done
common=(-t "$threads" -p "$p" -n "$n" -d "$d" -r "$r" -o json)

echo "running tandem ($TANDEM_BIN) ..." >&2
"$TANDEM_BIN" bench "${margs[@]}" "${common[@]}" > "$work/tandem.json" 2> "$work/tandem.err" \
  || { cat "$work/tandem.err" >&2; die "tandem bench failed"; }
echo "running $peer_name ($peer) ..." >&2
"$peer" "${margs[@]}" "${common[@]}" > "$work/peer.json" 2> "$work/peer.err" \
  || { tail -n 20 "$work/peer.err" >&2; die "$peer_name's llama-bench failed"; }

python3 "$ROOT/bench/compare_report.py" --peer-name "$peer_name" "$work/tandem.json" "$work/peer.json"
