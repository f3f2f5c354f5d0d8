#!/usr/bin/env bash
# mope train: bad input gets a clear message and a clean exit -- malformed
# or incomplete JSONL (with its line number), empty files, a tokenizer that
# does not fit the model, bad options -- and a run whose loss turns NaN (lr
# 1e30) stops and leaves the last good checkpoint as it was.
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"

python3 - "$WORK" <<'PY'
import sys
d = sys.argv[1]
open(d + "/text.txt", "w").write(" ".join(["the cat sat on the mat and ran to the park"] * 200))
open(d + "/empty.jsonl", "w").write("\n\n")
open(d + "/missing.jsonl", "w").write('{"prompt":"a","response":"b"}\n{"prompt":"a"}\n')
open(d + "/broken.jsonl", "w").write('{"prompt":"a","response":"b"}\n\n{"prompt":"a",\n')
open(d + "/pref_missing.jsonl", "w").write('{"prompt":"a","chosen":"b"}\n')
open(d + "/cfg.json", "w").write('{"dim": 32, "layers": 1, "heads": 2, "kv_heads": 1, "ff": 64, "ctx": 32}')
open(d + "/badcfg.json", "w").write('{"dim": 32, "depth": 1}')
PY
"$MOPE" train tokenizer --data "$WORK/text.txt" --vocab-size 280 --out "$WORK/vocab.gguf" -q >/dev/null
L=(--data "$WORK/text.txt" --tokenizer "$WORK/vocab.gguf" --config "$WORK/cfg.json" -t 1 -q --batch 2)
"$MOPE" train lm "${L[@]}" --steps 4 --out "$WORK/base.gguf" >/dev/null

# usage errors: exit 2
rc=0; "$MOPE" train >/dev/null 2>&1 || rc=$?; expect_eq "no sub-command" "$rc" 2
rc=0; "$MOPE" train fly >/dev/null 2>&1 || rc=$?; expect_eq "unknown sub-command" "$rc" 2
rc=0; "$MOPE" train lm --out x.gguf >/dev/null 2>&1 || rc=$?; expect_eq "no --data" "$rc" 2
rc=0; "$MOPE" train lm "${L[@]}" --steps 0 --out x.gguf >/dev/null 2>&1 || rc=$?; expect_eq "steps 0" "$rc" 2
rc=0; "$MOPE" train lm "${L[@]}" --heads 3 --out x.gguf >/dev/null 2>&1 || rc=$?; expect_eq "dim % heads" "$rc" 2
rc=0; "$MOPE" train sft --data "$WORK/missing.jsonl" --out x.gguf >/dev/null 2>&1 || rc=$?; expect_eq "sft without model" "$rc" 2
rc=0; "$MOPE" train lm "${L[@]}" --beta 0.1 --out x.gguf >/dev/null 2>&1 || rc=$?; expect_eq "--beta on lm" "$rc" 2
rc=0; "$MOPE" train sft -m "$WORK/base.gguf" --data "$WORK/missing.jsonl" --dim 64 --out x.gguf >/dev/null 2>&1 \
  || rc=$?; expect_eq "shape on sft" "$rc" 2
"$MOPE" train lm --help | grep -q -- "--checkpoint-every"
"$MOPE" train rm --help | grep -q -- "--eval-frac"

# data errors name the file and line
fails_cleanly "$MOPE" train sft -m "$WORK/base.gguf" --data "$WORK/missing.jsonl" --out "$WORK/x.gguf" -t 1
expect_grep "missing field" "missing.jsonl:2: missing field \"response\"" "$WORK/fc.err"
fails_cleanly "$MOPE" train sft -m "$WORK/base.gguf" --data "$WORK/broken.jsonl" --out "$WORK/x.gguf" -t 1
expect_grep "malformed" "broken.jsonl:3: malformed JSON" "$WORK/fc.err"
fails_cleanly "$MOPE" train sft -m "$WORK/base.gguf" --data "$WORK/empty.jsonl" --out "$WORK/x.gguf" -t 1
expect_grep "empty" "no records (empty file)" "$WORK/fc.err"
fails_cleanly "$MOPE" train dpo -m "$WORK/base.gguf" --data "$WORK/pref_missing.jsonl" --out "$WORK/x.gguf" -t 1
expect_grep "missing rejected" "pref_missing.jsonl:1: missing field \"rejected\"" "$WORK/fc.err"
fails_cleanly "$MOPE" train sft -m "$WORK/base.gguf" --data "$WORK/nonexistent.jsonl" --out "$WORK/x.gguf" -t 1
: >"$WORK/empty.txt"
fails_cleanly "$MOPE" train lm "${L[@]}" --data "$WORK/empty.txt" --steps 2 --out "$WORK/x.gguf"
expect_grep "empty text" "empty" "$WORK/fc.err"
fails_cleanly "$MOPE" train lm "${L[@]}" --config "$WORK/badcfg.json" --steps 2 --out "$WORK/x.gguf"
expect_grep "config key" "unknown key \"depth\"" "$WORK/fc.err"
[ ! -f "$WORK/x.gguf" ] || { echo "FAIL: a failed run wrote its output" >&2; exit 1; }

# a tokenizer whose vocabulary differs from the base model's
fails_cleanly "$MOPE" train sft -m "$WORK/base.gguf" --tokenizer "$SHARED/testdata/tokenizers/vocab-llama-spm.gguf" \
  --data "$WORK/missing.jsonl" --out "$WORK/x.gguf" -t 1
expect_grep "vocab mismatch" "the tokenizer has .* tokens but the model's vocabulary is 280" "$WORK/fc.err"
# a model file that is not a model
fails_cleanly "$MOPE" train sft -m "$WORK/vocab.gguf" --data "$WORK/missing.jsonl" --out "$WORK/x.gguf" -t 1

# NaN: 4 good steps with a checkpoint every 2, then --resume with lr 1e30
"$MOPE" train lm "${L[@]}" --steps 4 --checkpoint-every 2 --out "$WORK/n.gguf" >/dev/null
before=$(md5sum <"$WORK/n.gguf.ckpt")
fails_cleanly "$MOPE" train lm "${L[@]}" --steps 40 --checkpoint-every 2 --lr 1e30 --min-lr 1e30 --resume \
  --out "$WORK/n2.gguf" --checkpoint "$WORK/n.gguf.ckpt"
expect_grep "nan message" "not finite" "$WORK/fc.err"
expect_grep "checkpoint kept" "last good checkpoint .*n.gguf.ckpt was left as it was" "$WORK/fc.err"
expect_eq "checkpoint untouched" "$(md5sum <"$WORK/n.gguf.ckpt")" "$before"
[ ! -f "$WORK/n2.gguf" ] || { echo "FAIL: the NaN run wrote its output" >&2; exit 1; }
# a checkpoint of another kind of run is refused
fails_cleanly "$MOPE" train sft -m "$WORK/base.gguf" --data "$WORK/missing.jsonl" --resume \
  --checkpoint "$WORK/n.gguf.ckpt" --out "$WORK/x.gguf" -t 1
echo "train_bad: ok"
