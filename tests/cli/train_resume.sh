#!/usr/bin/env bash
# mope train lm: a run killed with SIGKILL after its first checkpoint and
# continued with --resume ends with the same loss (and here the same bytes)
# as an uninterrupted run with the same seed; the output is a model that
# `mope info` and `mope generate` accept, with the tokenizer inside.
set -euo pipefail
MOPE=$1
source "$(dirname "$0")/lib.bash"

python3 - "$WORK/text.txt" <<'PY'
import random, sys
r = random.Random(1)
w = "the cat sat on a mat and the dog ran to the park while birds sang in trees near water".split()
open(sys.argv[1], "w").write("\n".join(" ".join(r.choice(w) for _ in range(12)) + "." for _ in range(400)))
PY
"$MOPE" train tokenizer --data "$WORK/text.txt" --vocab-size 300 --out "$WORK/vocab.gguf" -q >/dev/null

ARGS=(--data "$WORK/text.txt" --tokenizer "$WORK/vocab.gguf" --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128
      --ctx 64 --steps 160 --batch 8 --lr 3e-3 --warmup 10 -t 1 --checkpoint-every 10 --seed 7)
"$MOPE" train lm "${ARGS[@]}" --out "$WORK/full.gguf" --log "$WORK/full.csv" >"$WORK/full.out" 2>"$WORK/full.err"
expect_grep "progress lines" "^step 160/160  loss [0-9.]*  lr .* tok/s  ETA" "$WORK/full.err"
expect_grep "log header" "^step,loss,lr,grad_norm" "$WORK/full.csv"
expect_eq "log lines" "$(wc -l <"$WORK/full.csv")" 161

"$MOPE" train lm "${ARGS[@]}" --out "$WORK/part.gguf" -q >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 3000); do [ -f "$WORK/part.gguf.ckpt" ] && break; sleep 0.02; done
[ -f "$WORK/part.gguf.ckpt" ] || { echo "FAIL: no checkpoint appeared" >&2; exit 1; }
kill -9 "$pid" 2>/dev/null || { echo "FAIL: the run ended before it could be killed" >&2; exit 1; }
wait "$pid" 2>/dev/null || true
[ ! -f "$WORK/part.gguf" ] || { echo "FAIL: the killed run wrote its output" >&2; exit 1; }
step=$("$MOPE" info "$WORK/part.gguf.ckpt" | sed -nE 's/.*mope\.train\.step: u64 = ([0-9]+).*/\1/p')
echo "killed after the checkpoint of step $step"
[ "$step" -ge 10 ] && [ "$step" -lt 160 ] || { echo "FAIL: checkpoint step $step" >&2; exit 1; }

"$MOPE" train lm "${ARGS[@]}" --out "$WORK/part.gguf" --resume >"$WORK/part.out" 2>"$WORK/part.err"
expect_grep "resumed" "(resumed)" "$WORK/part.out"
a=$(sed -nE 's/.*final loss ([0-9.]+).*/\1/p' "$WORK/full.out")
b=$(sed -nE 's/.*final loss ([0-9.]+).*/\1/p' "$WORK/part.out")
echo "final loss: uninterrupted $a, killed + resumed $b"
python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(a-b) <= 0.01*abs(a) else 1)" "$a" "$b" \
  || { echo "FAIL: final losses differ by more than 1%" >&2; exit 1; }
cmp "$WORK/full.gguf" "$WORK/part.gguf" || { echo "FAIL: resumed model differs from the uninterrupted one" >&2; exit 1; }

# the output is an ordinary model with the tokenizer keys
"$MOPE" info "$WORK/full.gguf" >"$WORK/info"
expect_grep "tokenizer in output" "tokenizer.ggml.tokens" "$WORK/info"
expect_grep "architecture" 'general.architecture: str = "llama"' "$WORK/info"
"$MOPE" generate -m "$WORK/full.gguf" -p "the cat" -n 8 -t 1 --seed 1 >"$WORK/gen" 2>"$WORK/gen.err"
expect_grep "generate runs" "tokens, " "$WORK/gen.err"
echo "train_resume: ok"
