#!/usr/bin/env bash
# mope prefbench build --tiny end to end: every stage runs and prints its
# time, the bundle and model card are written and name files that exist,
# the models load (generate with the base and through the bundle), a second
# run skips every stage and changes nothing, a lost output is rebuilt alone,
# and bad usage fails cleanly.  With a third argument the bundle is built
# there and kept: it is the "tiny_bundle" fixture of the bundle_*.sh tests.
set -euo pipefail
MOPE=$1
source "$(dirname "$0")/lib.bash"

OUT=$WORK/pb
if [ -n "${3:-}" ]; then
  OUT=$3
  rm -rf -- "$OUT" "$OUT.work" # a fresh build: stale stamps would skip every stage
fi
start=$(date +%s)
"$MOPE" prefbench build --tiny -t 2 -o "$OUT" >"$WORK/b1.out" 2>"$WORK/b1.err" \
  || { echo "FAIL: prefbench build --tiny" >&2; tail -30 "$WORK/b1.err" >&2; exit 1; }
end=$(date +%s)
echo "prefbench build --tiny: $((end - start)) s"
for s in corpus data tokenizer base_lm base_sft expert_data expert_P1A expert_P3B rm_trunk samples rm_P1A rm_P3B references eval; do
  expect_grep "time of stage $s" "^stage $s: [0-9.]* s" "$WORK/b1.err"
done
expect_grep "total time" "^done in [0-9.]* s" "$WORK/b1.err"

for f in bundle.json MODEL_CARD.md tokenizer.gguf base.gguf references.jsonl; do
  [ -s "$OUT/$f" ] || { echo "FAIL: $f missing" >&2; exit 1; }
done
for c in P1A P1B P2A P2B P3A P3B; do
  [ -s "$OUT/experts/$c.gguf" ] || { echo "FAIL: expert $c missing" >&2; exit 1; }
  [ -s "$OUT/rm/$c.gguf" ] || { echo "FAIL: reward model $c missing" >&2; exit 1; }
done
expect_grep "sanity table" "^## Sanity table" "$OUT/MODEL_CARD.md"
expect_grep "card names commands" "mope train lm --data lm.txt" "$OUT/MODEL_CARD.md"
expect_grep "card has a row per choice" "^| P3B unfriendly |" "$OUT/MODEL_CARD.md"

# the manifest: six experts and reward models with their choices, every path
# relative and present, the preference texts of ../shared/data/preferences.json
python3 - "$OUT" "$2/data/preferences.json" <<'PY'
import json, os, sys
out, prefs = sys.argv[1], json.load(open(sys.argv[2]))
b = json.load(open(os.path.join(out, "bundle.json")))
assert b["format"] == "mope-bundle" and b["version"] == 1 and b["template"] == "tulu", b
want = {c["id"]: c["text"] for d in prefs["dimensions"] for c in d["choices"]}
got = {c["id"]: c["text"] for d in b["preferences"]["dimensions"] for c in d["choices"]}
assert got == want, (got, want)
assert sorted(e["choice"] for e in b["experts"]) == sorted(want), b["experts"]
assert sorted(r["choice"] for r in b["reward_models"]) == sorted(want), b["reward_models"]
paths = [b["tokenizer"], b["base"], b["references"]] + [e["adapter"] for e in b["experts"]] \
        + [r["path"] for r in b["reward_models"]]
for p in paths:
    assert not os.path.isabs(p), p
    assert os.path.getsize(os.path.join(out, p)) > 0, p
refs = [json.loads(l) for l in open(os.path.join(out, "references.jsonl"))]
assert len(refs) > 20 and {r["split"] for r in refs} == {"train", "dev", "test"}, len(refs)
test_c = {json.loads(l)["concept"] for l in open(os.path.join(out + ".work", "corpus", "test_prompts.jsonl"))}
assert all(r["concept"] in test_c for r in refs if r["split"] == "test")
# the reward models' pairs include corpus answers about another concept (off
# topic), so they learn to check relevance
work = out + ".work"
concept_of = {}
for l in open(os.path.join(work, "corpus", "train_prompts.jsonl")):
    r = json.loads(l)
    concept_of[r["prompt"]] = r["concept"]
answer_concepts = {}
for l in open(os.path.join(work, "corpus", "train_responses.jsonl")):
    r = json.loads(l)
    answer_concepts.setdefault(r["response"], set()).add(r["concept"])
foreign = total = 0
for c in ["P1A", "P1B", "P2A", "P2B", "P3A", "P3B"]:
    for l in open(os.path.join(work, "pairs_%s.jsonl" % c)):
        r = json.loads(l)
        total += 1
        pc = concept_of.get(r["prompt"])
        for side in ("chosen", "rejected"):
            cs = answer_concepts.get(r[side])
            if pc and cs and pc not in cs:
                foreign += 1
                assert side == "rejected", (c, r)  # the gate (0.05 off topic) keeps it from winning
assert foreign > 0, "no off-topic answer in any reward-model pair"
print("bundle: ok (%d of %d pairs hold an off-topic answer)" % (foreign, total))

# the experts' data: each P1/P2 answer is the corpus answer of its prompt,
# alone or between one opening and one closing sentence (friendly or
# unfriendly, about a third each); each P3 answer is its own corpus answer or
# its tone around another style's answer about the same concept
sent = {c: d["text"] for c, d in ((c["id"], c) for dd in prefs["dimensions"] for c in dd["choices"])}
by_prompt = {}
for l in open(os.path.join(work, "corpus", "train_responses.jsonl")):
    r = json.loads(l)
    by_prompt.setdefault(r["prompt"], {}).setdefault(r["style"], []).append(r["response"])  # senses share prompts
for c in ["P1A", "P1B", "P2A", "P2B", "P3A", "P3B"]:
    n = wrapped = 0
    for l in open(os.path.join(work, "expert_%s.jsonl" % c)):
        r = json.loads(l)
        assert r["prompt"].endswith(" " + sent[c]), r["prompt"]
        answers = by_prompt[r["prompt"][: -len(sent[c]) - 1]]
        resp, n = r["response"], n + 1
        if resp in answers[c]:
            continue
        others = ("neutral", "P1A", "P1B", "P2A", "P2B") if c[:2] == "P3" else (c,)
        inner = [a for st in others for a in answers.get(st, [])]
        hit = [s for s in inner if " " + s + " " in resp]
        assert hit, (c, resp)
        head, tail = resp.split(" " + max(hit, key=len) + " ")  # a P2A answer can lie inside a P2B one
        assert head.count(".") + head.count("!") + head.count("?") >= 1 and len(head) < 80, (c, head)
        assert len(tail) < 80, (c, tail)
        if c == "P3A":
            assert not head.startswith(("Sigh", "Ugh", "Again?")), head
        if c == "P3B":
            assert "!" not in head + tail, (head, tail)
        wrapped += 1
    share = wrapped / n
    lo, hi = (0.5, 0.8) if c[:2] != "P3" else (0.65, 0.95)
    assert lo <= share <= hi, (c, share, n)
    print("expert data %s: %d answers, %.2f given a tone" % (c, n, share))
PY

"$MOPE" generate -m "$OUT/base.gguf" --chat -p "What is a glacier?" -n 8 -t 1 >/dev/null 2>"$WORK/g.err"
expect_grep "generate with the base" "tokens, " "$WORK/g.err"
if "$MOPE" generate --help | grep -q -- "--bundle"; then
  "$MOPE" generate --bundle "$OUT/bundle.json" --expert P2A -p "What is a glacier?" -n 8 -t 1 >/dev/null 2>"$WORK/g2.err"
  expect_grep "generate with an expert of the bundle" "tokens, " "$WORK/g2.err"
  "$MOPE" generate --bundle "$OUT/bundle.json" --base -p "What is a glacier?" -n 8 -t 1 >/dev/null 2>"$WORK/g3.err"
  expect_grep "generate with the bundle's base" "tokens, " "$WORK/g3.err"
  fails_cleanly "$MOPE" generate --bundle "$OUT/bundle.json" --expert P9Z -p "x"
fi

# resume: every stamp matches, nothing is rebuilt or rewritten
cp "$OUT/base.gguf" "$WORK/base.before"
cp "$OUT/rm/P2B.gguf" "$WORK/rm.before"
"$MOPE" prefbench build --tiny -t 2 -o "$OUT" >/dev/null 2>"$WORK/b2.err"
if grep -q "^stage " "$WORK/b2.err"; then
  echo "FAIL: the second run rebuilt stages:" >&2; grep "^stage " "$WORK/b2.err" >&2; exit 1
fi
cmp "$OUT/base.gguf" "$WORK/base.before"
cmp "$OUT/rm/P2B.gguf" "$WORK/rm.before"
expect_grep "card kept on resume" "^## Sanity table" "$OUT/MODEL_CARD.md"

# a lost output is rebuilt, with the stages after it
rm "$OUT/experts/P3A.gguf"
"$MOPE" prefbench build --tiny -t 2 -o "$OUT" --until experts >/dev/null 2>"$WORK/b3.err"
expect_grep "lost expert rebuilt" "^stage expert_P3A:" "$WORK/b3.err"
if grep -q "^stage expert_P2B:\|^stage base_sft:" "$WORK/b3.err"; then
  echo "FAIL: stages before the lost output were rebuilt" >&2; exit 1
fi
cmp "$OUT/rm/P2B.gguf" "$WORK/rm.before"
expect_grep "card of the full build kept after --until" "^## Sanity table" "$OUT/MODEL_CARD.md"

fails_cleanly "$MOPE" prefbench build --tiny -o "$WORK/x" --until nowhere
expect_grep "names the stage" "nowhere" "$WORK/fc.err"
fails_cleanly "$MOPE" prefbench build --tiny -o "$WORK/x" --seed x
fails_cleanly "$MOPE" prefbench build --tiny -o "$WORK/x" --wordnet "$WORK/nowhere"
fails_cleanly "$MOPE" prefbench build --bogus
echo "prefbench build: ok"
