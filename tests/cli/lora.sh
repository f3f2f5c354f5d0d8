#!/usr/bin/env bash
# --lora FILE[:SCALE] on mope logits / generate, with adapter files written
# here byte by byte in llama.cpp's adapter GGUF layout: an adapter whose B is
# zero (or scale 0) leaves the logits bit-identical; a non-zero one changes
# them; repeated --lora adds the updates (x + (-x) = base, x twice = 2x);
# bad adapters fail cleanly.
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"

u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
u64() { u32 $(($1 & 0xffffffff)); u32 $(($1 >> 32)); }
gstr() { u64 ${#1}; printf '%s' "$1"; }
kv_str() { gstr "$1"; u32 8; gstr "$2"; }
# n floats given as a u32 bit pattern
floats() { local i; for ((i = 0; i < $1; i++)); do u32 "$2"; done; }

# write_adapter OUT ARCH B_BITS: one adapted matrix, blk.0.attn_q.weight
# (64 x 64 in model-init's default model), rank 4, alpha 4, A = 0.5, B = the
# given f32 bits.  Header: 2 tensors, 4 keys; data aligned to 32.
write_adapter() {
  {
    printf 'GGUF'; u32 3; u64 2; u64 4
    kv_str general.architecture "$2"
    kv_str general.type adapter
    kv_str adapter.type lora
    gstr adapter.lora.alpha; u32 6; u32 0x40800000
    gstr blk.0.attn_q.weight.lora_a; u32 2; u64 64; u64 4; u32 0; u64 0
    gstr blk.0.attn_q.weight.lora_b; u32 2; u64 4; u64 64; u32 0; u64 1024
  } >"$1"
  local size pad
  size=$(stat -c %s "$1")
  pad=$(((32 - size % 32) % 32))
  head -c "$pad" /dev/zero >>"$1"
  { floats 256 0x3f000000; floats 256 "$3"; } >>"$1"
}

"$MOPE" model-init -o "$WORK/m.gguf" --seed 5 >/dev/null
write_adapter "$WORK/zero.gguf" llama 0
write_adapter "$WORK/nz.gguf" llama 0x3c23d70a    # B = 0.01
write_adapter "$WORK/qwen.gguf" qwen2 0x3c23d70a

ids="1 40 41 300 7 99"
logits() { "$MOPE" logits -t 1 -m "$WORK/m.gguf" --ids "$ids" -o "$@" 2>/dev/null; }
logits "$WORK/base.bin"
logits "$WORK/zero.bin" --lora "$WORK/zero.gguf"
cmp "$WORK/base.bin" "$WORK/zero.bin"
logits "$WORK/s0.bin" --lora "$WORK/nz.gguf:0"
cmp "$WORK/base.bin" "$WORK/s0.bin"
logits "$WORK/nz.bin" --lora "$WORK/nz.gguf"
if cmp -s "$WORK/base.bin" "$WORK/nz.bin"; then echo "FAIL: a non-zero adapter left the logits unchanged" >&2; exit 1; fi
expect_eq "size" "$(stat -c %s "$WORK/nz.bin")" "$((6 * 512 * 4))"

# max |a - b| over two logits files, and max |a|
maxdiff() {
  paste <(od -An -v -f -w4 "$1") <(od -An -v -f -w4 "$2") |
    awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; a = $1 < 0 ? -$1 : $1; if (a > s) s = a }
         END { printf "%.9g %.9g\n", m, s }'
}
read -r d s <<<"$(maxdiff "$WORK/nz.bin" "$WORK/base.bin")"
awk -v d="$d" -v s="$s" 'BEGIN { if (!(d > 1e-4 * s)) { print "FAIL: adapter effect too small: " d > "/dev/stderr"; exit 1 } }'

# the updates of repeated --lora add up
logits "$WORK/cancel.bin" --lora "$WORK/nz.gguf" --lora "$WORK/nz.gguf:-1"
read -r d s <<<"$(maxdiff "$WORK/cancel.bin" "$WORK/base.bin")"
awk -v d="$d" -v s="$s" 'BEGIN { if (!(d <= 1e-5 * s)) { print "FAIL: x + (-x) differs from the base by " d > "/dev/stderr"; exit 1 } }'
logits "$WORK/twice.bin" --lora "$WORK/nz.gguf" --lora="$WORK/nz.gguf"
logits "$WORK/double.bin" --lora "$WORK/nz.gguf:2"
read -r d s <<<"$(maxdiff "$WORK/twice.bin" "$WORK/double.bin")"
awk -v d="$d" -v s="$s" 'BEGIN { if (!(d <= 1e-5 * s)) { print "FAIL: x + x differs from 2x by " d > "/dev/stderr"; exit 1 } }'

# generate: a zero adapter gives the same greedy text
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "the sea and the" -n 12 --temp 0 >"$WORK/g0.txt" 2>/dev/null
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "the sea and the" -n 12 --temp 0 --lora "$WORK/zero.gguf:3" \
  >"$WORK/g1.txt" 2>/dev/null
cmp "$WORK/g0.txt" "$WORK/g1.txt"
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "the sea" -n 4 --lora "$WORK/nz.gguf" >/dev/null 2>&1

# bad adapters fail cleanly, naming the problem
echo "not a gguf file" >"$WORK/bad.gguf"
fails_cleanly "$MOPE" logits -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/x.bin" --lora "$WORK/bad.gguf"
expect_grep "bad file named" "bad.gguf" "$WORK/fc.err"
fails_cleanly "$MOPE" generate -m "$WORK/m.gguf" -p "the sea" --lora "$WORK/bad.gguf"
expect_grep "bad file named" "bad.gguf" "$WORK/fc.err"
fails_cleanly "$MOPE" logits -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/x.bin" --lora "$WORK/absent.gguf"
expect_grep "absent file named" "absent.gguf" "$WORK/fc.err"
fails_cleanly "$MOPE" logits -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/x.bin" --lora "$WORK/qwen.gguf"
expect_grep "architecture" "architecture 'qwen2'" "$WORK/fc.err"
fails_cleanly "$MOPE" logits -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/x.bin" --lora "$WORK/m.gguf"
expect_grep "a model is not an adapter" "not a LoRA adapter" "$WORK/fc.err"
fails_cleanly "$MOPE" logits -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/x.bin" --lora ":2"
fails_cleanly "$MOPE" logits -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/x.bin" --lora "$WORK/nz.gguf:inf"
fails_cleanly "$MOPE" logits -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/x.bin" --lora
many=()
for i in $(seq 17); do many+=(--lora "$WORK/nz.gguf"); done
fails_cleanly "$MOPE" logits -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/x.bin" "${many[@]}"
expect_grep "too many" "at most 16" "$WORK/fc.err"
[ ! -e "$WORK/x.bin" ] || { echo "FAIL: output written despite errors" >&2; exit 1; }
echo "lora: ok"
