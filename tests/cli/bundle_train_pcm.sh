#!/usr/bin/env bash
# mope train pcm on the tiny PrefBench bundle ($3, built by the
# prefbench_build fixture): a few REBEL iterations write a PCM over the six
# experts and a JSONL log with every field and the eight combinations; a run
# interrupted after a checkpoint and resumed ends with the same bytes as an
# uninterrupted one; --update-bundle names the PCM in a copy of the
# manifest; `mope generate --bundle --method mope` runs with it when that
# command exists; bad usage fails cleanly.
set -euo pipefail
MOPE=$1
TINY=$3
source "$(dirname "$0")/lib.bash"
[ -s "$TINY/bundle.json" ] || { echo "FAIL: no tiny bundle at $TINY (run the prefbench_build fixture)" >&2; exit 1; }

COMMON=(--bundle "$TINY/bundle.json" --dim 32 --layers 1 --heads 2 --kv-heads 1 --ff 64 --ctx 320
        --batch 8 --epochs 2 -n 16 --lr 1e-3 --min-lr 1e-3 --kl 0.01 --kl-prior 0.05 --length-penalty 0.05 --seed 5 -t 1)

start=$(date +%s%N)
"$MOPE" train pcm "${COMMON[@]}" --iterations 3 -o "$WORK/pcm.gguf" --log "$WORK/log.jsonl" \
  >"$WORK/t1.out" 2>"$WORK/t1.err" || { echo "FAIL: train pcm" >&2; cat "$WORK/t1.err" >&2; exit 1; }
end=$(date +%s%N)
echo "train pcm, 3 iterations of 8 items x 2 rollouts x 16 tokens: $(( (end - start) / 1000000 )) ms"
grep "^iter " "$WORK/t1.err" || true
expect_grep "summary" "^train pcm: 3 iterations over [0-9]* prompts x 8 preferences" "$WORK/t1.out"
expect_grep "progress line" "^iter 3/3  reward" "$WORK/t1.err"
"$MOPE" info "$WORK/pcm.gguf" >"$WORK/info.out" 2>&1
expect_grep "PCM head" "mope.pcm.head.weight" "$WORK/info.out"
expect_grep "PCM experts" "mope.pcm.experts" "$WORK/info.out"

python3 - "$WORK/log.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["iteration"] for l in lines] == [1, 2, 3], lines
fields = ["reward", "utility", "loss_before", "loss_after", "rebel_loss", "kl", "kl_prior", "grad_norm", "lr", "mean_len",
          "truncated", "tokens", "rollout_s", "reward_s", "update_s", "tokens_per_s", "iter_s", "elapsed_s",
          "per_preference"]
combos = set()
for l in lines:
    for f in fields:
        assert f in l, (f, l)
    assert 0 < l["utility"] < 1 and 0 < l["reward"] < 1, l
    for name, p in l["per_preference"].items():
        assert len(name.split("+")) == 3, name
        w = p["weights"]
        assert sorted(w) == ["P1A", "P1B", "P2A", "P2B", "P3A", "P3B"], w
        assert abs(sum(w.values()) - 1) < 1e-4, w
        combos.add(name)
# batch 8 visits every combination once per iteration
assert len(combos) == 8, combos
print("log: ok; iteration seconds:", [round(l["iter_s"], 2) for l in lines])
PY

# a run in two slices (stopped after iteration 2, which writes the
# checkpoint, then resumed) ends with the same bytes as one uninterrupted run
"$MOPE" train pcm "${COMMON[@]}" --iterations 3 -o "$WORK/a.gguf" -q >/dev/null 2>&1
"$MOPE" train pcm "${COMMON[@]}" --iterations 3 -o "$WORK/b.gguf" --checkpoint "$WORK/b.ckpt" --stop-at 2 \
  --log "$WORK/b.jsonl" -q >"$WORK/s.out" 2>&1
expect_grep "stopped" "stopped after iteration 2 of 3" "$WORK/s.out"
[ -s "$WORK/b.ckpt" ] && [ ! -e "$WORK/b.gguf" ] || { echo "FAIL: --stop-at outputs" >&2; exit 1; }
"$MOPE" train pcm "${COMMON[@]}" --iterations 3 -o "$WORK/b.gguf" --checkpoint "$WORK/b.ckpt" --resume \
  --log "$WORK/b.jsonl" >"$WORK/r.out" 2>/dev/null
expect_grep "resumed" "(resumed)" "$WORK/r.out"
cmp "$WORK/a.gguf" "$WORK/b.gguf" || { echo "FAIL: the resumed run differs from the uninterrupted one" >&2; exit 1; }
expect_eq "log iterations after resume" "$(python3 -c 'import json,sys; print([json.loads(l)["iteration"] for l in open(sys.argv[1])])' "$WORK/b.jsonl")" "[1, 2, 3]"

# --update-bundle on a copy of the manifest
cp "$TINY/bundle.json" "$TINY/bundle.pcmtest-$$.json"
trap 'rm -rf "$WORK"; rm -f "$TINY/bundle.pcmtest-$$.json" "$TINY/pcm.pcmtest-$$.gguf" "$TINY/pcm.pcmtest-$$.gguf.refs.jsonl"' EXIT
"$MOPE" train pcm "${COMMON[@]}" --bundle "$TINY/bundle.pcmtest-$$.json" --iterations 1 \
  -o "$TINY/pcm.pcmtest-$$.gguf" --update-bundle -q >"$WORK/u.out" 2>"$WORK/u.err" \
  || { echo "FAIL: --update-bundle" >&2; cat "$WORK/u.err" >&2; exit 1; }
python3 - "$TINY/bundle.pcmtest-$$.json" "pcm.pcmtest-$$.gguf" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
assert b.get("pcm") == sys.argv[2], (b.get("pcm"), sys.argv[2])
print("update-bundle: ok")
PY

if "$MOPE" generate --help 2>/dev/null | grep -q -- "--method"; then
  "$MOPE" generate --bundle "$TINY/bundle.pcmtest-$$.json" --method mope --pref P1A,P2A,P3A -p "What is a glacier?" \
    -n 8 -t 1 >"$WORK/g.out" 2>"$WORK/g.err" || { echo "FAIL: generate --method mope" >&2; cat "$WORK/g.err" >&2; exit 1; }
  expect_grep "generate with the trained PCM" "tokens, " "$WORK/g.err"
fi

# --explore: every item's second rollout steered by one of its preference's experts
"$MOPE" train pcm "${COMMON[@]}" --iterations 1 --explore 1 --explore-head 4 --explore-tail 4 -o "$WORK/e.gguf" \
  --log "$WORK/e.jsonl" >/dev/null 2>"$WORK/e.err" || { echo "FAIL: --explore" >&2; cat "$WORK/e.err" >&2; exit 1; }
expect_grep "progress line counts the steered items" "^iter 1/1 .* explored 8 ([+-]" "$WORK/e.err"
python3 - "$WORK/e.jsonl" <<'PY'
import json, sys
l = json.loads(open(sys.argv[1], encoding="utf-8").readline())
assert l["explored"] == 8 and len(l["explore_items"]) == 8, l
for x in l["explore_items"]:
    assert x["expert"] in x["preference"].split("+"), x
    assert (x["head"], x["tail"]) in [(4, 0), (0, 4), (4, 4)], x
assert abs(l["explore_gain"] - sum(x["utility"] - x["partner_utility"] for x in l["explore_items"]) / 8) < 1e-9
print("explore: ok")
PY

fails_cleanly "$MOPE" train pcm "${COMMON[@]}" -o "$WORK/x.gguf" --explore 1.5
fails_cleanly "$MOPE" train pcm "${COMMON[@]}" -o "$WORK/x.gguf" --explore 0.5 --explore-head 0 --explore-tail 0
expect_grep "explore lengths" "explore" "$WORK/fc.err"
fails_cleanly "$MOPE" train pcm "${COMMON[@]}" -o "$WORK/x.gguf" --prefs "P1A,P9Z"
expect_grep "names the unknown choice" "P9Z" "$WORK/fc.err"
# the geometric rule trains too (its rollouts record the experts' whole distributions)
"$MOPE" train pcm "${COMMON[@]}" --iterations 2 --rule geometric -o "$WORK/geo.gguf" --log "$WORK/geo.jsonl" \
  >"$WORK/g.out" 2>"$WORK/g.err" || { echo "FAIL: train pcm --rule geometric" >&2; cat "$WORK/g.err" >&2; exit 1; }
"$MOPE" info "$WORK/geo.gguf" >"$WORK/ginfo.out" 2>&1
expect_grep "geometric PCM" 'mope.pcm.rule: str = "geometric"' "$WORK/ginfo.out"
python3 - "$WORK/geo.jsonl" <<'PY'
import json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["iteration"] for l in lines] == [1, 2], lines
for l in lines:
    # the first epoch sees the rollout policy itself: loss_before is the
    # batch's REBEL loss at log-ratio 0, finite and positive
    assert math.isfinite(l["loss_before"]) and l["loss_before"] >= 0, l
print("geometric: ok")
PY
fails_cleanly "$MOPE" train pcm "${COMMON[@]}" -o "$WORK/x.gguf" --reward-weights 1,2
expect_grep "weights per dimension" "dimensions" "$WORK/fc.err"
fails_cleanly "$MOPE" train pcm -o "$WORK/x.gguf"
fails_cleanly "$MOPE" train pcm --bundle "$WORK/nowhere.json" -o "$WORK/x.gguf"
fails_cleanly "$MOPE" train pcm "${COMMON[@]}" -o "$WORK/x.gguf" --batch 0
fails_cleanly "$MOPE" train pcm "${COMMON[@]}" -o "$WORK/x.gguf" --bogus
[ ! -e "$WORK/x.gguf" ] || { echo "FAIL: a failed run wrote its output" >&2; exit 1; }
echo "train pcm: ok"
