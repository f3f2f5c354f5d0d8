#!/usr/bin/env bash
# mope train sft / dpo / rm and mope score end to end on tiny data: each
# writes a model the next step (or generate / score) accepts, and the
# reward model ranks a marker it was trained on.
set -euo pipefail
MOPE=$1
source "$(dirname "$0")/lib.bash"

python3 - "$WORK" <<'PY'
import json, random, sys
d = sys.argv[1]
r = random.Random(3)
words = "sun sky sea tree bird rock leaf rain snow wind".split()
text = []
with open(d + "/sft.jsonl", "w") as f:
    for i in range(40):
        q = r.choice(words)
        a = " ".join(r.choice(words) for _ in range(4))
        f.write(json.dumps({"prompt": "what is " + q, "response": a}) + "\n")
        text.append("what is " + q + " " + a)
with open(d + "/pref.jsonl", "w") as f:
    for i in range(120):
        q = r.choice(words)
        good = [r.choice(words) for _ in range(3)]
        good.insert(r.randrange(4), "yes")
        bad = [r.choice(words) for _ in range(4)]
        f.write(json.dumps({"prompt": q, "chosen": " ".join(good), "rejected": " ".join(bad),
                            "dimension": "style"}) + "\n")
with open(d + "/score.jsonl", "w") as f:
    f.write(json.dumps({"id": 1, "prompt": "sun", "response": "sky yes rain tree"}) + "\n")
    f.write(json.dumps({"id": 2, "prompt": "sun", "response": "sky sea rain tree"}) + "\n")
    f.write(json.dumps({"id": 3, "prompt": "sun", "chosen": "yes", "rejected": "no"}) + "\n")
open(d + "/text.txt", "w").write("\n".join(text * 5) + "\n" + "yes no " * 50)
PY
"$MOPE" train tokenizer --data "$WORK/text.txt" --vocab-size 300 --out "$WORK/vocab.gguf" -q >/dev/null
COMMON=(-t 1 -q --dim 32 --layers 1 --heads 2 --kv-heads 1 --ff 64 --ctx 64)
"$MOPE" train lm --data "$WORK/text.txt" --tokenizer "$WORK/vocab.gguf" "${COMMON[@]}" --steps 20 --batch 4 \
  --lr 3e-3 --out "$WORK/base.gguf" >/dev/null

"$MOPE" train sft -m "$WORK/base.gguf" --data "$WORK/sft.jsonl" --steps 30 --batch 4 --lr 3e-3 -t 1 \
  --out "$WORK/sft.gguf" --log "$WORK/sft.csv" >"$WORK/sft.out" 2>"$WORK/sft.err"
expect_grep "sft summary" "^train sft: 30 steps, final loss" "$WORK/sft.out"
expect_grep "sft data line" "40 examples, .* tokens, template tulu" "$WORK/sft.err"
"$MOPE" generate -m "$WORK/sft.gguf" -p "what is sun" --chat -n 6 -t 1 >/dev/null 2>"$WORK/g.err"
expect_grep "generate on sft" "tokens, " "$WORK/g.err"

"$MOPE" train dpo -m "$WORK/sft.gguf" --data "$WORK/pref.jsonl" --steps 20 --batch 4 --lr 1e-3 --beta 0.5 -t 1 \
  --out "$WORK/dpo.gguf" >"$WORK/dpo.out" 2>"$WORK/dpo.err"
expect_grep "dpo progress" "acc [0-9.]*  margin" "$WORK/dpo.err"
loss=$(sed -nE 's/.*final loss ([0-9.]+).*/\1/p' "$WORK/dpo.out")
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 0.6931 else 1)" "$loss" \
  || { echo "FAIL: dpo loss $loss did not fall below log 2" >&2; exit 1; }

"$MOPE" train rm -m "$WORK/base.gguf" --data "$WORK/pref.jsonl" --steps 80 --batch 8 --lr 3e-3 -t 1 \
  --eval-frac 0.25 --eval-every 40 --out "$WORK/rm.gguf" --log "$WORK/rm.csv" >"$WORK/rm.out" 2>"$WORK/rm.err"
expect_grep "rm summary" "held-out accuracy [0-9.]* (30 pairs)" "$WORK/rm.out"
acc=$(sed -nE 's/.*held-out accuracy ([0-9.]+).*/\1/p' "$WORK/rm.out")
echo "reward model held-out accuracy: $acc"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.9 else 1)" "$acc" \
  || { echo "FAIL: rm accuracy $acc" >&2; exit 1; }
expect_grep "rm log has eval" "^40,.*,0\.[0-9]*,\|^40,.*,1\.0000," "$WORK/rm.csv"

"$MOPE" score --rm "$WORK/rm.gguf" --data "$WORK/score.jsonl" --out "$WORK/scored.jsonl" -t 1 2>/dev/null
python3 - "$WORK/scored.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["id"] for r in rows] == [1, 2, 3], rows
assert rows[0]["score"] > rows[1]["score"], rows     # the marker scores higher
assert "score_chosen" in rows[2] and "score_rejected" in rows[2], rows
print("scores:", rows[0]["score"], rows[1]["score"])
PY
# LoRA SFT: the output is an adapter (llama.cpp convention) whose loss falls,
# the base stays as it was, and the adapter applies with --lora
python3 -c "
import json
with open('$WORK/const.jsonl', 'w') as f:
    for i in range(40): f.write(json.dumps({'prompt': 'what is sun', 'response': 'sky sea tree'}) + '\\n')
"
"$MOPE" train sft -m "$WORK/base.gguf" --data "$WORK/const.jsonl" --steps 40 --batch 4 --lr 1e-2 -t 1 \
  --lora-rank 4 --out "$WORK/lora.gguf" --log "$WORK/lora.csv" >"$WORK/lora.out" 2>/dev/null
"$MOPE" info "$WORK/lora.gguf" >"$WORK/lora.info"
expect_grep "adapter type" "adapter.type.*lora" "$WORK/lora.info"
expect_grep "adapter tensor" "blk.0.attn_q.weight.lora_a" "$WORK/lora.info"
python3 - "$WORK/lora.csv" <<'PY'
import sys
rows = [float(l.split(",")[1]) for l in open(sys.argv[1]) if l[0].isdigit()]
first, last = sum(rows[:5]) / 5, sum(rows[-5:]) / 5
print("lora sft loss (mean of 5 steps)", first, "->", last)
assert last < first - 0.1, (first, last)
PY
"$MOPE" logits -m "$WORK/base.gguf" -p "what is sun" -o "$WORK/l0.bin" -t 1
"$MOPE" logits -m "$WORK/base.gguf" --lora "$WORK/lora.gguf" -p "what is sun" -o "$WORK/l1.bin" -t 1
if cmp -s "$WORK/l0.bin" "$WORK/l1.bin"; then echo "FAIL: the trained adapter changes nothing" >&2; exit 1; fi
"$MOPE" generate -m "$WORK/base.gguf" --lora "$WORK/lora.gguf" -p "what is sun" --chat -n 4 -t 1 >/dev/null 2>&1
fails_cleanly "$MOPE" train rm -m "$WORK/base.gguf" --data "$WORK/pref.jsonl" --lora-rank 4 --out "$WORK/x.gguf"
fails_cleanly "$MOPE" train dpo -m "$WORK/base.gguf" --data "$WORK/pref.jsonl" --lora-rank 4 --lora-dropout 0.1 \
  --out "$WORK/x.gguf"

fails_cleanly "$MOPE" score --rm "$WORK/base.gguf" --data "$WORK/score.jsonl"
expect_grep "not an rm" "no value head" "$WORK/fc.err"
echo "train_chat: ok"
