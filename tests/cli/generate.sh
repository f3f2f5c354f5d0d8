#!/usr/bin/env bash
# mope generate on models written by model-init: produces text, reports
# speed, is reproducible from the seed, honours -n, and --chat uses the
# template of a real vocabulary.
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"
T=$SHARED/testdata/tokenizers

"$MOPE" model-init -o "$WORK/m.gguf" --seed 5 >/dev/null
"$MOPE" generate -m "$WORK/m.gguf" -p "the water of the" -n 24 --seed 7 -t 2 >"$WORK/a" 2>"$WORK/a.err"
[ "$(wc -c <"$WORK/a")" -gt 1 ] || { echo "FAIL: no text generated" >&2; exit 1; }
expect_grep "speed line" "^[0-9]* tokens, [0-9.]* tok/s (prompt [0-9.]* tok/s)$" "$WORK/a.err"
n=$(sed -nE 's/^([0-9]+) tokens,.*/\1/p' "$WORK/a.err")
[ "$n" -ge 1 ] && [ "$n" -le 24 ] || { echo "FAIL: token count $n not in 1..24" >&2; exit 1; }

# same seed, same text (1 or 2 threads); another seed differs
"$MOPE" generate -m "$WORK/m.gguf" -p "the water of the" -n 24 --seed 7 -t 1 >"$WORK/b" 2>/dev/null
cmp "$WORK/a" "$WORK/b"
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "the water of the" -n 24 --seed 8 >"$WORK/c" 2>/dev/null
if cmp -s "$WORK/a" "$WORK/c"; then echo "FAIL: seeds 7 and 8 gave the same text" >&2; exit 1; fi

# greedy ignores the seed; all the filters accept their values
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "the sea" -n 12 --temp 0 --seed 1 >"$WORK/g1" 2>/dev/null
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "the sea" -n 12 --temp 0 --seed 2 >"$WORK/g2" 2>/dev/null
cmp "$WORK/g1" "$WORK/g2"
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "the sea" -n 12 --temp 0.7 --top-k 5 --top-p 0.9 --min-p 0.1 \
  --repeat-penalty 1.3 --repeat-last-n 16 --no-repeat-ngram 2 >/dev/null 2>"$WORK/f.err"
expect_grep "filters run" "tokens, " "$WORK/f.err"

# -n 0 generates nothing
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "the" -n 0 >"$WORK/z" 2>"$WORK/z.err"
expect_grep "-n 0" "^0 tokens" "$WORK/z.err"

# a context of 16 stops generation when full
"$MOPE" model-init -o "$WORK/small.gguf" --ctx 16 >/dev/null
"$MOPE" generate -t 1 -m "$WORK/small.gguf" -p "the sea" -n 100 --temp 0 >/dev/null 2>"$WORK/s.err"
expect_grep "context full" "context is full" "$WORK/s.err"

# a byte-level BPE vocabulary with a Llama-3 chat template: --chat finds it
"$MOPE" model-init -o "$WORK/l3.gguf" --vocab-from "$T/vocab-llama3-bpe.gguf" --type q8_0 --tied \
  --dim 32 --heads 2 --layers 1 --ff 64 >/dev/null
"$MOPE" generate -t 1 -m "$WORK/l3.gguf" -p "What is a glacier?" --chat -v -n 8 --seed 3 >"$WORK/l3" 2>"$WORK/l3.err"
expect_grep "llama3 detected" "^chat template: llama3$" "$WORK/l3.err"
# BOS, 4 header tokens, 5 question tokens, eot, 4 header tokens (checked with
# `mope tokenize --special` on the reference vocabulary)
expect_grep "llama3 prompt" "^prompt (15 tokens): <|start_header_id|>user<|end_header_id|>" "$WORK/l3.err"
expect_grep "llama3 chat" "tokens, " "$WORK/l3.err"
# a file without a chat template gets tulu
"$MOPE" generate -t 1 -m "$WORK/m.gguf" -p "Hi" --chat -v -n 2 >/dev/null 2>"$WORK/t.err"
expect_grep "tulu fallback" "^chat template: tulu$" "$WORK/t.err"
"$MOPE" generate -t 1 -m "$WORK/l3.gguf" -p "Hi" --template chatml --system "Be brief." -n 4 >/dev/null 2>&1
echo "generate: ok"
