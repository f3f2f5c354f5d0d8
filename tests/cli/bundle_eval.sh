#!/usr/bin/env bash
# mope eval on the tiny PrefBench bundle: 3 held-out prompts x 2 combinations
# x every available method (+ a top-k study of the target): every file is
# written, each JSONL record parses with the scores of its combination's
# choices, a reward-model score equals sigmoid(R(x, y) - R(x, y_ref)) as
# 'mope score' computes it, the SVGs parse as XML, results.md has its
# tables, a rerun resumes without regenerating (and refuses to when a model
# file changed), the same seed gives the same generations, and bad inputs
# fail cleanly.
set -euo pipefail
MOPE=$1
BUNDLE_DIR=$3
source "$(dirname "$0")/lib.bash"
[ -s "$BUNDLE_DIR/bundle.json" ] || { echo "FAIL: no tiny bundle in $BUNDLE_DIR (fixture prefbench_build)" >&2; exit 1; }

# held-out prompts (with their concepts) from the bundle's references
grep '"split":"test"' "$BUNDLE_DIR/references.jsonl" | head -3 >"$WORK/prompts.jsonl"
[ "$(wc -l <"$WORK/prompts.jsonl")" -eq 3 ] || { echo "FAIL: fewer than 3 test references" >&2; exit 1; }

OUT=$WORK/out
ARGS=(--bundle "$BUNDLE_DIR/bundle.json" --prompts "$WORK/prompts.jsonl" --combos P1A+P2A+P3A,P1B+P2B+P3B
      --target uniform --topk-ks 1,5 -n 16 -t 2 --seed 7)
"$MOPE" eval "${ARGS[@]}" -o "$OUT" >"$WORK/e1.out" 2>"$WORK/e1.err" \
  || { echo "FAIL: mope eval" >&2; cat "$WORK/e1.err" >&2; exit 1; }
expect_grep "progress line" "^eval: 54/54 generations" "$WORK/e1.err"
expect_grep "mope skipped without a PCM" "method mope skipped: the bundle has no PCM" "$WORK/e1.err"
for f in generations.jsonl results.md utility.svg weights.svg summary.json; do
  [ -s "$OUT/$f" ] || { echo "FAIL: $f missing" >&2; exit 1; }
done

python3 - "$OUT" "$BUNDLE_DIR" >"$WORK/score_in.jsonl" <<'PY'
import json, math, os, sys
import xml.etree.ElementTree as ET
out, bdir = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(os.path.join(out, "generations.jsonl"))]
# 2 combinations x 3 prompts x (prompt, soup, uniform, uniform-geo, 3 experts, uniform@k1, uniform@k5)
assert len(recs) == 54, len(recs)
methods = {r["method"] for r in recs}
assert methods == {"prompt", "soup", "uniform", "uniform-geo", "uniform@k1", "uniform@k5"} | \
    {"expert:" + c for c in ("P1A", "P1B", "P2A", "P2B", "P3A", "P3B")}, methods
keys = set()
for r in recs:
    choices = r["preference"].split("+")
    assert r["preference"] in ("P1A+P2A+P3A", "P1B+P2B+P3B"), r["preference"]
    if r["method"].startswith("expert:"):
        assert r["method"][7:] in choices, r  # a single expert only where it is chosen
    s = r["scores"]
    assert sorted(s["rm"]) == sorted(choices) and sorted(s["labeler"]) == sorted(choices), s
    for v in list(s["rm"].values()) + list(s["labeler"].values()):
        assert 0 <= v <= 1, s
    assert abs(s["utility_rm"] - sum(s["rm"].values()) / 3) < 1e-9, s
    assert abs(s["utility_labeler"] - sum(s["labeler"].values()) / 3) < 1e-9, s
    keys.add((r["id"], r["preference"], r["method"]))
assert len(keys) == 54
# the target's first sample carries its per-token weights (3 experts, summing to 1)
tw = [r for r in recs if r["method"] == "uniform" and "token_weights" in r]
assert len(tw) == 2, len(tw)
for row in tw[0]["token_weights"]["values"]:
    assert len(row) == 3 and abs(sum(row) - 1) < 1e-3 and abs(row[0] - 1 / 3) < 1e-3, row
for f in ("utility.svg", "weights.svg"):
    root = ET.parse(os.path.join(out, f)).getroot()
    assert root.tag.endswith("svg"), root.tag
bars = [e for e in ET.parse(os.path.join(out, "utility.svg")).iter() if e.get("class") == "bar"]
# (2 combinations + average) x 10 methods, minus the experts' missing combinations: 3 x 4 + 6 x 2
assert len(bars) == 24, len(bars)
summ = json.load(open(os.path.join(out, "summary.json")))
assert summ["target"] == "uniform" and summ["n_prompts"] == 3, summ
w = summ["labeler"]["wtl"]["prompt"]["P1A+P2A+P3A"]
assert sum(w) == 3, w
# one record for the independent check of the Bradley-Terry normalisation
refs = {json.loads(l)["prompt"]: json.loads(l)["response"] for l in open(os.path.join(bdir, "references.jsonl"))}
r = next(x for x in recs if x["method"] == "soup")
print(json.dumps({"prompt": r["prompt"], "response": r["response"], "want": r["scores"]["rm"]["P1A"]}))
print(json.dumps({"prompt": r["prompt"], "response": refs[r["prompt"]]}))
PY

# r = sigmoid(R(x, y) - R(x, y_ref)) with R from 'mope score'
"$MOPE" score --rm "$BUNDLE_DIR/rm/P1A.gguf" --template tulu --data "$WORK/score_in.jsonl" -t 1 >"$WORK/scored.jsonl"
python3 - "$WORK/scored.jsonl" <<'PY'
import json, math, sys
a, b = [json.loads(l) for l in open(sys.argv[1])]
got = 1 / (1 + math.exp(-(a["score"] - b["score"])))
assert abs(got - a["want"]) < 2e-3, (got, a["want"])
print("bt normalisation: ok", round(got, 4))
PY

for h in "^## Mean labeler utility" "^## Mean reward-model utility" "^## Win / tie / loss of uniform" \
         "^## Top-k study" "^| uniform (target) " "^| expert:P1A " "^| full " \
         "uniform >= every baseline on [0-2] of 2 combinations"; do
  expect_grep "results.md table" "$h" "$OUT/results.md"
done

# resume: nothing is generated again, the tables stay
cp "$OUT/generations.jsonl" "$WORK/g1.jsonl"
"$MOPE" eval "${ARGS[@]}" -o "$OUT" -q >/dev/null 2>"$WORK/e2.err"
expect_grep "resumed" "54 generations taken from an earlier run" "$WORK/e2.err"
cmp "$OUT/generations.jsonl" "$WORK/g1.jsonl"
# other settings in the same folder are refused
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$OUT" --temp 0.5
expect_grep "names the settings clash" "other settings" "$WORK/fc.err"
# a copy of the bundle resumes (the check is on contents, not paths); once a
# model in it changes (a retrained reward model, say), the folder is refused
cp -r "$BUNDLE_DIR" "$WORK/bcopy"
CARGS=("${ARGS[@]}")
CARGS[1]=$WORK/bcopy/bundle.json
"$MOPE" eval "${CARGS[@]}" -o "$OUT" -q >/dev/null 2>"$WORK/e3.err"
expect_grep "copy resumes" "54 generations taken from an earlier run" "$WORK/e3.err"
cp "$WORK/bcopy/rm/P1B.gguf" "$WORK/bcopy/rm/P1A.gguf"
fails_cleanly "$MOPE" eval "${CARGS[@]}" -o "$OUT"
expect_grep "names the models clash" "other models (a bundle file changed" "$WORK/fc.err"

# the same seed gives the same generations in a fresh folder (one combination)
"$MOPE" eval "${ARGS[@]}" --combos P1B+P2B+P3B -o "$WORK/out2" -q >/dev/null 2>&1
python3 - "$WORK/g1.jsonl" "$WORK/out2/generations.jsonl" <<'PY'
import json, sys
a = {(r["id"], r["method"]): r["response"] for r in map(json.loads, open(sys.argv[1])) if r["preference"] == "P1B+P2B+P3B"}
b = {(r["id"], r["method"]): r["response"] for r in map(json.loads, open(sys.argv[2]))}
assert a == b, [k for k in a if a[k] != b.get(k)]
print("deterministic: ok")
PY

# a prompt the bundle has no reference for: the reference is the base
# model's greedy no-repeat-3-gram answer, as 'mope generate --bundle --base'
# makes it, and r = sigmoid(R(x, y) - R(x, that answer))
printf '{"prompt":"What is a glacier?"}\n' >"$WORK/noref.jsonl"
"$MOPE" eval --bundle "$BUNDLE_DIR/bundle.json" --prompts "$WORK/noref.jsonl" --combos P2B --methods prompt \
  -n 12 -t 2 -o "$WORK/outr" -q --no-labelers >/dev/null 2>"$WORK/er.err"
expect_grep "notes the made reference" "base model's greedy answer" "$WORK/er.err"
"$MOPE" generate --bundle "$BUNDLE_DIR/bundle.json" --base -p "What is a glacier?" --temp 0 --no-repeat-ngram 3 \
  -n 12 -t 1 >"$WORK/ref.txt" 2>/dev/null
python3 - "$WORK/outr/generations.jsonl" "$WORK/ref.txt" >"$WORK/score_r.jsonl" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).readline())
assert r["id"] == "line-1" and r["scores"]["labeler"]["P2B"] is None, r
ref = open(sys.argv[2]).read()[:-1]  # generate ends the text with a newline
print(json.dumps({"prompt": r["prompt"], "response": r["response"], "want": r["scores"]["rm"]["P2B"]}))
print(json.dumps({"prompt": r["prompt"], "response": ref}))
PY
"$MOPE" score --rm "$BUNDLE_DIR/rm/P2B.gguf" --template tulu --data "$WORK/score_r.jsonl" -t 1 >"$WORK/scored_r.jsonl" 2>/dev/null
python3 - "$WORK/scored_r.jsonl" <<'PY'
import json, math, sys
a, b = [json.loads(l) for l in open(sys.argv[1])]
got = 1 / (1 + math.exp(-(a["score"] - b["score"])))
assert abs(got - a["want"]) < 2e-3, (got, a["want"])
print("made reference: ok")
PY

# mope itself, when 'mope train pcm' exists: a 2-iteration PCM in a copy of
# the bundle; mope is then the default target, its weights are plotted
if "$MOPE" train pcm --help >/dev/null 2>&1; then
  cp -r "$BUNDLE_DIR" "$WORK/pcmb"
  "$MOPE" train pcm --bundle "$WORK/pcmb/bundle.json" --dim 32 --layers 1 --heads 2 --kv-heads 1 --ff 64 \
    --ctx 320 --batch 8 --epochs 1 -n 8 --iterations 2 --seed 5 -t 2 -o "$WORK/pcmb/pcm.gguf" --update-bundle \
    >/dev/null 2>"$WORK/pcm.err" || { echo "FAIL: train pcm" >&2; cat "$WORK/pcm.err" >&2; exit 1; }
  "$MOPE" eval --bundle "$WORK/pcmb/bundle.json" --prompts "$WORK/prompts.jsonl" --n-prompts 2 \
    --combos P1B+P2A+P3A --methods mope,uniform -n 12 -t 2 -o "$WORK/outm" -q >/dev/null 2>"$WORK/em.err" \
    || { echo "FAIL: eval with mope" >&2; cat "$WORK/em.err" >&2; exit 1; }
  expect_grep "mope is the target" "^| mope (target) " "$WORK/outm/results.md"
  expect_grep "mope against uniform" "^| uniform " "$WORK/outm/results.md"
  python3 - "$WORK/outm" <<'PY'
import json, os, sys
import xml.etree.ElementTree as ET
recs = [json.loads(l) for l in open(os.path.join(sys.argv[1], "generations.jsonl"))]
assert sorted(r["method"] for r in recs) == ["mope", "mope", "uniform", "uniform"], recs
m = next(r for r in recs if r["method"] == "mope" and "token_weights" in r)
tw = m["token_weights"]
assert len(tw["names"]) == 6 and len(tw["values"]) >= 1, tw["names"]
for row in tw["values"]:
    assert abs(sum(row) - 1) < 2e-3 and min(row) >= 0, row
lines = [e for e in ET.parse(os.path.join(sys.argv[1], "weights.svg")).iter() if e.get("class") == "line"]
assert len(lines) == 6, len(lines)
print("eval with mope: ok")
PY
fi

# bad inputs
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --prompts "$WORK/nowhere.jsonl"
expect_grep "names the missing prompts file" "nowhere.jsonl" "$WORK/fc.err"
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --methods prompt,bogus
expect_grep "names the unknown method" "bogus" "$WORK/fc.err"
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --combos P1A+P9Z
expect_grep "names the unknown choice" "P9Z" "$WORK/fc.err"
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --combos P1A+P1B
expect_grep "two choices of one dimension" "two choices of dimension P1" "$WORK/fc.err"
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --methods mope
expect_grep "mope needs a PCM" "no PCM" "$WORK/fc.err"
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --methods expert:P7Q
expect_grep "names the unknown expert" "P7Q" "$WORK/fc.err"
printf '{"id":"a","prompt":"What is a cat?"}\n{"id":"a","prompt":"What is a dog?"}\n' >"$WORK/dup.jsonl"
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --prompts "$WORK/dup.jsonl"
expect_grep "duplicate id" "duplicate id" "$WORK/fc.err"
printf '{"id":"a","prompt":"What is a cat?"}\n{"id": oops\n{"id":"c","prompt":"x"}\n' >"$WORK/bad.jsonl"
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --prompts "$WORK/bad.jsonl"
expect_grep "names the bad line" "bad.jsonl:2" "$WORK/fc.err"
fails_cleanly "$MOPE" eval --prompts "$WORK/prompts.jsonl" -o "$WORK/x"
expect_eq "usage error exit" "$LAST_RC" 2
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --topk-ks 0
fails_cleanly "$MOPE" eval "${ARGS[@]}" -o "$WORK/x" --bogus
echo "eval: ok"
