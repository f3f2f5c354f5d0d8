#!/usr/bin/env bash
# mope prefbench corpus: the tiny corpus is written with all six files, every
# response record names one of the seven styles, the held-out (test) concepts
# never appear in train, the same seed gives the same bytes; bad usage fails.
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"

"$MOPE" prefbench corpus --tiny -o "$WORK/a" 2>"$WORK/err"
for f in train dev test; do for k in prompts responses; do
  [ -s "$WORK/a/${f}_$k.jsonl" ] || { echo "FAIL: missing ${f}_$k.jsonl" >&2; exit 1; }
done; done
expect_grep "summary" "concepts .*train/dev/test" "$WORK/err"
bad=$(grep -vcE '"style":"(neutral|P1A|P1B|P2A|P2B|P3A|P3B)"' "$WORK/a/train_responses.jsonl" || true)
expect_eq "records without a known style" "$bad" "0"
grep -o '"concept":"[^"]*"' "$WORK/a/test_prompts.jsonl" | sort -u >"$WORK/test_c"
grep -o '"concept":"[^"]*"' "$WORK/a/train_prompts.jsonl" | sort -u >"$WORK/train_c"
expect_eq "held-out concepts seen in train" "$(comm -12 "$WORK/test_c" "$WORK/train_c" | wc -l)" "0"
"$MOPE" prefbench corpus --tiny -o "$WORK/b" 2>/dev/null
cmp "$WORK/a/train_responses.jsonl" "$WORK/b/train_responses.jsonl"

fails_cleanly "$MOPE" prefbench corpus --tiny
fails_cleanly "$MOPE" prefbench corpus --tiny -o "$WORK/c" --seed x
fails_cleanly "$MOPE" prefbench corpus --tiny -o "$WORK/c" --wordnet "$WORK/nowhere"
expect_grep "names the missing database" "wordnet" "$WORK/fc.err"
fails_cleanly "$MOPE" prefbench frobnicate
echo "prefbench: ok"
