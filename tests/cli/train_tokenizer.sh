#!/usr/bin/env bash
# mope train tokenizer: trains a vocabulary that mope tokenize reads back
# (specials as single ids, BOS first), the same data gives the same bytes,
# progress goes to stderr (a line per 10% when not a terminal), and bad
# input (missing / empty data, a vocab below the byte+special base, an
# unwritable output) fails cleanly.
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"
DATA=/usr/share/common-licenses/GPL-3

"$MOPE" train tokenizer --data "$DATA" --vocab-size 600 --special "<|user|>" --out "$WORK/a.gguf" \
  >"$WORK/out" 2>"$WORK/err"
expect_grep "summary" "wrote $WORK/a.gguf: 600 tokens" "$WORK/out"
expect_grep "progress" "merges .*(100%)" "$WORK/err"
n=$(grep -c "^merges " "$WORK/err")
[ "$n" -ge 1 ] && [ "$n" -le 11 ] || { echo "FAIL: $n progress lines" >&2; exit 1; }
"$MOPE" train tokenizer -q -d "$DATA" -n 600 --special "<|user|>" -o "$WORK/b.gguf" >/dev/null
cmp "$WORK/a.gguf" "$WORK/b.gguf" || { echo "FAIL: two runs differ" >&2; exit 1; }

# the user-defined token is id 3 and one token; BOS (1) comes first
ids=$("$MOPE" tokenize -m "$WORK/a.gguf" "<|user|>the program")
expect_eq "BOS then <|user|>" "$(cut -d' ' -f1,2 <<<"$ids")" "1 3"
# "the" is frequent in the licence: one piece
expect_eq "' the' is one token" "$("$MOPE" tokenize -m "$WORK/a.gguf" --no-bos "the" | wc -w)" "1"

: >"$WORK/empty.txt"
fails_cleanly "$MOPE" train tokenizer -d "$WORK/missing.txt" -n 600 -o "$WORK/c.gguf"
expect_grep "missing file" "missing.txt" "$WORK/fc.err"
fails_cleanly "$MOPE" train tokenizer -d "$WORK/empty.txt" -n 600 -o "$WORK/c.gguf"
expect_grep "empty file" "empty" "$WORK/fc.err"
fails_cleanly "$MOPE" train tokenizer -d "$DATA" -n 259 --special "<|a|>" -o "$WORK/c.gguf"
expect_grep "small vocab" "smaller than the fixed base of 260" "$WORK/fc.err"
fails_cleanly "$MOPE" train tokenizer -d "$DATA" -n 600 -o "$WORK/no/such/dir/c.gguf"
expect_grep "unwritable" "cannot write" "$WORK/fc.err"
fails_cleanly "$MOPE" train tokenizer -d "$DATA" -n 600
expect_grep "no output" "--out" "$WORK/fc.err"
[ ! -e "$WORK/c.gguf" ] || { echo "FAIL: output written on error" >&2; exit 1; }
echo "train_tokenizer: ok"
