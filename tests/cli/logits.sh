#!/usr/bin/env bash
# mope logits writes n_tokens x n_vocab little-endian f32, deterministically;
# the rows of a prefix equal the first rows of a longer input (causality);
# -p and --ids of the same tokens agree; perplexity runs on a text file.
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"

"$MOPE" model-init -o "$WORK/m.gguf" --seed 11 >/dev/null   # vocab 512
"$MOPE" logits -t 1 -m "$WORK/m.gguf" --ids "1 40 41 300 7" -o "$WORK/a.bin" 2>/dev/null
expect_eq "size" "$(stat -c %s "$WORK/a.bin")" "$((5 * 512 * 4))"
"$MOPE" logits -m "$WORK/m.gguf" --ids "1,40,41,300,7" -o "$WORK/b.bin" -t 2 2>/dev/null
cmp "$WORK/a.bin" "$WORK/b.bin"

# prefix rows match (to float rounding: batch shapes may differ)
"$MOPE" logits -t 1 -m "$WORK/m.gguf" --ids "1 40 41" -o "$WORK/p.bin" 2>/dev/null
expect_eq "prefix size" "$(stat -c %s "$WORK/p.bin")" "$((3 * 512 * 4))"
head -c $((3 * 512 * 4)) "$WORK/a.bin" >"$WORK/a3.bin"
paste <(od -An -v -f -w4 "$WORK/p.bin") <(od -An -v -f -w4 "$WORK/a3.bin") |
  awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; n++ }
       END { if (n != 1536 || m > 1e-4) { print "FAIL: prefix rows differ by " m " over " n > "/dev/stderr"; exit 1 } }'
# the rows are finite and not all equal
od -An -v -f -w4 "$WORK/a.bin" | awk '{ if ($1 != $1 + 0 || $1 == "inf" || $1 == "-inf") bad++; s[$1]++ }
  END { if (bad || length(s) < 100) { print "FAIL: logits look wrong" > "/dev/stderr"; exit 1 } }'

# -p tokenizes with BOS: the same as --ids of `mope tokenize`
ids=$("$MOPE" tokenize -m "$WORK/m.gguf" "the sea and the river")
"$MOPE" logits -t 1 -m "$WORK/m.gguf" -p "the sea and the river" -o "$WORK/t.bin" 2>/dev/null
"$MOPE" logits -t 1 -m "$WORK/m.gguf" --ids "$ids" -o "$WORK/u.bin" 2>/dev/null
n=$(wc -w <<<"$ids")
expect_eq "-p size" "$(stat -c %s "$WORK/t.bin")" "$((n * 512 * 4))"
cmp "$WORK/t.bin" "$WORK/u.bin"

# perplexity: two chunks of 32 tokens, the second half of each scored
for i in $(seq 40); do echo "the water of the world is the sea and the river"; done >"$WORK/text.txt"
"$MOPE" perplexity -t 1 -m "$WORK/m.gguf" -f "$WORK/text.txt" -c 32 >"$WORK/ppl" 2>/dev/null
expect_grep "ppl line" "^PPL = [0-9.]* +/- [0-9.]* ([0-9]* chunks of 32 tokens, [0-9]* tokens scored)$" "$WORK/ppl"
chunks=$(sed -nE 's/.*\(([0-9]+) chunks.*/\1/p' "$WORK/ppl")
scored=$(sed -nE 's/.*, ([0-9]+) tokens scored.*/\1/p' "$WORK/ppl")
expect_eq "scored = chunks x (32 - 1 - 16)" "$scored" "$((chunks * 15))"

# with -c 12 the text (12..23 tokens) is one chunk: its perplexity equals
# exp(mean nll) of the predictions made at positions 6..10 (the second half),
# computed here from the logits file (log-sum-exp in awk)
printf 'the water of the world is the sea and the river' >"$WORK/one.txt"
all=$("$MOPE" tokenize -m "$WORK/m.gguf" -f "$WORK/one.txt")
n=$(wc -w <<<"$all")
[ "$n" -ge 12 ] && [ "$n" -lt 24 ] || { echo "FAIL: expected 12..23 tokens, got $n" >&2; exit 1; }
ids12=$(cut -d' ' -f1-12 <<<"$all")
"$MOPE" logits -t 1 -m "$WORK/m.gguf" --ids "$ids12" -o "$WORK/c.bin" 2>/dev/null
want=$(od -An -v -f -w4 "$WORK/c.bin" | awk -v ids="$ids12" -v V=512 '
  BEGIN { split(ids, t, " ") }
  { r = int((NR - 1) / V); c = (NR - 1) % V; x[r, c] = $1 }
  END {
    for (r = 6; r <= 10; r++) {
      m = -1e30; for (c = 0; c < V; c++) if (x[r, c] > m) m = x[r, c]
      s = 0; for (c = 0; c < V; c++) s += exp(x[r, c] - m)
      nll += log(s) + m - x[r, t[r + 2]]
    }
    printf "%.6f", exp(nll / 5)
  }')
"$MOPE" perplexity -t 1 -m "$WORK/m.gguf" -f "$WORK/one.txt" -c 12 >"$WORK/ppl1" 2>/dev/null
expect_grep "one chunk" "(1 chunks of 12 tokens, 5 tokens scored)" "$WORK/ppl1"
got=$(sed -nE 's/^PPL = ([0-9.]+) .*/\1/p' "$WORK/ppl1")
awk -v g="$got" -v w="$want" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d
  if (!(d < 1e-4)) { print "FAIL: perplexity " g ", from the logits " w > "/dev/stderr"; exit 1 } }'
echo "logits: ok"
