#!/usr/bin/env bash
# Training tokens/s of mope's trainer against PyTorch training the identical
# model (bench/torch_llama.py), same batch, sequence length and thread count,
# on Debian's PyTorch with OpenBLAS as the system BLAS.
#
#   bench/train_vs_torch.sh [shape ...]      shapes: 5m 30m (default: both)
#
# Environment: BUILD_DIR (default build-bench; bench_train_cmp is (re)built
# there, Release), THREADS (default "1 2"), ROUNDS (default 2: mope, torch,
# mope, torch ... interleaved so that load from other processes hits both),
# STEPS (timed steps per run, default 3), WARMUP (default 1).
#
# For more than one thread PyTorch runs twice: with its defaults (GNU OpenMP
# workers spin-wait after each parallel region and fight OpenBLAS's own
# threads for the cores) and with OMP_WAIT_POLICY=PASSIVE, which a user who
# tunes PyTorch on a small CPU would set.  Both are reported.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-3}
WARMUP=${WARMUP:-1}
SHAPES=("$@")
[ ${#SHAPES[@]} -eq 0 ] && SHAPES=(5m 30m)
PY=/usr/bin/python3 # Debian's python: python3-torch is installed for it, not for a pyenv/venv python

die() { echo "train_vs_torch: $*" >&2; exit 1; }

# ---- packages ----
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
for p in python3-torch libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- OpenBLAS as the system BLAS / LAPACK (what Debian's PyTorch calls) ----
ARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
for lib in libblas.so.3 liblapack.so.3; do
  target=/usr/lib/$ARCH/openblas-pthread/$lib
  [ -e "$target" ] || die "$target is missing (package libopenblas0-pthread)"
  $SUDO update-alternatives --set "$lib-$ARCH" "$target" >/dev/null
  echo "system $lib -> $(update-alternatives --query "$lib-$ARCH" | sed -n 's/^Value: //p')"
done

# ---- mope's side ----
CMP=$BUILD_DIR/bench/bench_train_cmp
# always (re)build: incremental, and a stale binary would measure an old trainer
[ -f "$BUILD_DIR/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j1 --target bench_train_cmp >/dev/null || die "cannot build bench_train_cmp in $BUILD_DIR"

shape_args() {
  case $1 in
    # bench_train's default shape, batch 16 x 256
    5m) echo "--batch 16 --seq 256 --vocab 2048 --embd 256 --layers 6 --heads 8 --kv-heads 4 --ffn 688" ;;
    # batch 8 keeps the PyTorch runs of this larger model within minutes
    30m) echo "--batch 8 --seq 256 --vocab 4096 --embd 512 --layers 8 --heads 8 --kv-heads 8 --ffn 1376" ;;
    *) die "unknown shape '$1' (5m, 30m)" ;;
  esac
}
# the same model on a small batch, for the loss comparison
small_args() { shape_args "$1" | sed 's/--batch [0-9]*/--batch 2/; s/--seq [0-9]*/--seq 32/'; }

field() { sed -n "s/^RESULT.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) CPUs, $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mope: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (working tree), $CMP"
SDPA=$($PY -c 'import torch.nn.functional as F; print(int(hasattr(F, "scaled_dot_product_attention")))')
[ "$SDPA" = 1 ] || echo "torch: scaled_dot_product_attention is not in this torch; attention is plain matmuls + masked softmax"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
RES=$TMP/results.tsv
first=1
for shape in "${SHAPES[@]}"; do
  args=$(shape_args "$shape")
  echo
  echo "=== shape $shape: $args"
  # same start, same batch: the per-step losses must agree
  # shellcheck disable=SC2046
  mout=$("$CMP" $(small_args "$shape") --threads 1 --warmup 0 --steps 3 --dump "$TMP/init.bin") || die "$mout"
  cfg=(); [ $first = 1 ] && cfg=(--show-config)
  # shellcheck disable=SC2046
  tout=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $PY "$ROOT/bench/torch_llama.py" $(small_args "$shape") \
         --threads 1 --warmup 0 --steps 3 --load "$TMP/init.bin" "${cfg[@]}") || die "$tout"
  first=0
  grep -v '^mope step\|^RESULT' <<<"$mout" | head -1
  grep -v '^torch step\|^RESULT\|tokens/s' <<<"$tout"
  paste <(grep '^mope step' <<<"$mout" | awk '{print $5}') <(grep '^torch step' <<<"$tout" | awk '{print $5}') |
    awk '{ d = $1 - $2; if (d < 0) d = -d; printf "  step %d loss: mope %s  torch %s\n", NR, $1, $2;
           if (d > 1e-3 * ($1 < 0 ? -$1 : $1)) bad = 1 } END { exit bad }' ||
    die "shape $shape: mope and PyTorch losses differ from the same start: the models are not the same"
  pm=$(field params "$mout"); pt=$(field params "$tout")
  echo "parameters: mope $pm, torch $pt"
  [ "$pm" = "$pt" ] || die "shape $shape: parameter counts differ (mope $pm, torch $pt)"

  for t in $THREADS; do
    variants=(torch); [ "$t" -gt 1 ] && variants+=(torch-passive)
    for r in $(seq "$ROUNDS"); do
      l=$(load1)
      # shellcheck disable=SC2086
      out=$("$CMP" $args --threads "$t" --warmup "$WARMUP" --steps "$STEPS") || die "$out"
      echo "[$shape t=$t round $r, load $l] $(grep 'tokens/s' <<<"$out")"
      printf '%s\t%s\tmope\t%s\t%s\t%s\t%s\t%s\n' "$shape" "$t" "$(field tokens_per_s "$out")" \
        "$(field best_tokens_per_s "$out")" "$(field tokens_per_cpu_s "$out")" "$l" "$(field params "$out")" >>"$RES"
      for v in "${variants[@]}"; do
        wp=(); [ "$v" = torch-passive ] && wp=(OMP_WAIT_POLICY=PASSIVE)
        l=$(load1)
        # shellcheck disable=SC2086
        out=$(env "${wp[@]}" OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t" \
              $PY "$ROOT/bench/torch_llama.py" $args --threads "$t" --warmup "$WARMUP" --steps "$STEPS") || die "$out"
        echo "[$shape t=$t round $r, load $l] $v: $(grep 'tokens/s' <<<"$out" | sed 's/^torch: //')"
        [ "$(field params "$out")" = "$pm" ] || die "parameter counts differ"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$shape" "$t" "$v" "$(field tokens_per_s "$out")" \
          "$(field best_tokens_per_s "$out")" "$(field tokens_per_cpu_s "$out")" "$l" "$(field params "$out")" >>"$RES"
      done
    done
  done
done

echo
echo "tokens/s: mean over $ROUNDS runs of each run's mean step; best: the fastest single step of any run;"
echo "tok/CPU-s: tokens per CPU-second of all the process's threads (spin-waiting counts); ratios are mope / torch;"
echo "torch-passive: PyTorch with OMP_WAIT_POLICY=PASSIVE; load: range of the 1-minute load average at the runs' starts"
$PY - "$RES" <<'EOF'
import sys
from collections import defaultdict
runs = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    shape, t, who, mean, best, cpu, load, params = line.split("\t")
    if (shape, int(t)) not in order:
        order.append((shape, int(t)))
    runs[(shape, int(t), who)].append((float(mean), float(best), float(cpu), float(load), int(params)))
def agg(rs):  # mean of means, best of bests, mean of tokens per CPU-second
    n = len(rs)
    return sum(r[0] for r in rs) / n, max(r[1] for r in rs), sum(r[2] for r in rs) / n
print("| shape | threads | baseline | mope tok/s | torch tok/s | ratio | mope best | torch best | ratio best "
      "| mope tok/CPU-s | torch tok/CPU-s | ratio CPU | load |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for shape, t in order:
    m = runs[(shape, t, "mope")]
    mm, mb, mc = agg(m)
    for v in ("torch", "torch-passive"):
        rs = runs.get((shape, t, v))
        if not rs:
            continue
        tm, tb, tc = agg(rs)
        loads = [r[3] for r in m + rs]
        print(f"| {shape} ({m[0][4] / 1e6:.2f}M) | {t} | {v} | {mm:.0f} | {tm:.0f} | {mm / tm:.2f}x | {mb:.0f} | {tb:.0f} "
              f"| {mb / tb:.2f}x | {mc:.0f} | {tc:.0f} | {mc / tc:.2f}x | {min(loads):.1f}-{max(loads):.1f} |")
EOF
