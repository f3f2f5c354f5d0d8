#!/usr/bin/env bash
# mope generate --bundle on the tiny PrefBench bundle (built by the
# prefbench_build fixture into $3): single experts, the base, uniform
# mixing with --pref, the other baselines, --show-weights as text and as
# JSON lines (checked with python3: weights per token, the summary agrees
# with the tokens), reproducibility, methods that must coincide, and bad
# input failing cleanly.
set -euo pipefail
MOPE=$1 BUNDLE_DIR=${3:-}
source "$(dirname "$0")/lib.bash"
B=$BUNDLE_DIR/bundle.json
[ -s "$B" ] || { echo "FAIL: no tiny bundle at '$B' (fixture: cli_prefbench_build)" >&2; exit 1; }
Q="What is a glacier?"
gen() { "$MOPE" generate --bundle "$B" -p "$Q" -t 1 -n 12 "$@"; }

# a single expert and the base (the PrefBench acceptance commands)
gen --expert P2A >"$WORK/e" 2>"$WORK/e.err"
expect_grep "expert speed line" "^[0-9]* tokens, .* (method expert:P2A" "$WORK/e.err"
gen --base >"$WORK/b" 2>"$WORK/b.err"
expect_grep "base speed line" "(method base" "$WORK/b.err"
gen --method expert:P2A >"$WORK/e2" 2>/dev/null
cmp "$WORK/e" "$WORK/e2"

# uniform over three choices: reproducible from the seed
gen --method uniform --pref P1A,P2B,P3A --seed 5 >"$WORK/u1" 2>"$WORK/u.err"
expect_grep "uniform speed line" "(method uniform" "$WORK/u.err"
gen --method uniform --pref "P1A, P2B, P3A" --seed 5 >"$WORK/u2" 2>/dev/null
cmp "$WORK/u1" "$WORK/u2"
# uniform over one choice is that expert (same seed, same tokens)
gen --method uniform --pref P2A >"$WORK/u3" 2>/dev/null
cmp "$WORK/e" "$WORK/u3"

# every other baseline runs
gen --method uniform-geo --pref P1B,P3B >/dev/null 2>"$WORK/g.err"
expect_grep "uniform-geo" "tokens, " "$WORK/g.err"
gen --method prompt --pref P1A,P2A >/dev/null 2>/dev/null
gen --method prompt --pref "explain it like a pirate" >/dev/null 2>/dev/null
gen --method soup --pref P1A,P2A,P3B >/dev/null 2>/dev/null
gen --method soup --soup-mode delta --pref P1A,P2A >/dev/null 2>/dev/null
gen --method uniform --pref P1A,P2B --topk 5 >/dev/null 2>"$WORK/k.err"
expect_grep "top-k" "tokens, " "$WORK/k.err"
if python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("pcm") else 1)' "$B"; then
  gen --pref P1A,P2B,P3A >/dev/null 2>"$WORK/m.err"
  expect_grep "mope" "(method mope" "$WORK/m.err"
  gen --pref "short and sweet" --show-weights >/dev/null 2>/dev/null
else
  fails_cleanly gen --pref P1A,P2B,P3A
  expect_grep "no PCM" "bundle has no PCM (train one with mope train pcm)" "$WORK/fc.err"
fi

# --show-weights as text: one line per token with the three weights (1/3 each)
gen --method uniform --pref P1A,P2B,P3A --show-weights >"$WORK/sw" 2>/dev/null
n_lines=$(grep -c ' \[P1A \.33 P2B \.33 P3A \.33\]$' "$WORK/sw" || true)
[ "$n_lines" -ge 1 ] || { echo "FAIL: no weight lines in --show-weights output" >&2; cat "$WORK/sw" >&2; exit 1; }
if grep -q $'\033' "$WORK/sw"; then echo "FAIL: colour codes written to a file" >&2; exit 1; fi

# --show-weights --json: JSON lines, then a summary that agrees with them
gen --method uniform --pref P1A,P2B,P3A --show-weights --json --seed 9 >"$WORK/j" 2>/dev/null
gen --method uniform --pref P1A,P2B,P3A --seed 9 >"$WORK/jt" 2>/dev/null
python3 - "$WORK/j" "$WORK/jt" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
toks, summ = lines[:-1], lines[-1]
assert toks, "no token objects"
text = ""
for t in toks:
    assert set(t) <= {"token", "id", "weights", "eog"}, t
    assert isinstance(t["token"], str) and isinstance(t["id"], int), t
    w = t["weights"]
    assert set(w) == {"P1A", "P2B", "P3A"}, w
    assert abs(sum(w.values()) - 1) < 1e-5 and all(abs(v - 1 / 3) < 1e-5 for v in w.values()), w
    if t["id"] >= 0 and not t.get("eog"):
        text += t["token"]
assert summ["method"] == "uniform" and summ["preference"] == "P1A,P2B,P3A", summ
assert summ["prompt"] == "What is a glacier?", summ
assert summ["n_tokens"] == sum(1 for t in toks if t["id"] >= 0), (summ, len(toks))
assert summ["response"] == text, (summ["response"], text)
assert summ["truncated"] == (summ["n_tokens"] == 12 and not summ["eog"]), summ
assert summ["logp"] < 0 and set(summ["mean_weights"]) == {"P1A", "P2B", "P3A"}, summ
plain = open(sys.argv[2]).read()
assert plain == summ["response"] + "\n", (plain, summ["response"])
print("json: ok,", len(toks), "tokens")
PY

# bad input: clear messages, non-zero exits, no crash
fails_cleanly gen --method uniform --pref P1A,P4C
expect_grep "unknown choice lists the known ones" "P4C.*known: P1A P1B P2A P2B P3A P3B" "$WORK/fc.err"
fails_cleanly gen --method uniform --pref P1A,P1B
expect_grep "one per dimension" "same dimension" "$WORK/fc.err"
fails_cleanly gen --method soup --pref "be kind"
expect_grep "soup needs choice ids" "not free text" "$WORK/fc.err"
fails_cleanly gen --method uniform
expect_grep "uniform needs a preference" "needs a preference" "$WORK/fc.err"
fails_cleanly gen --expert P9Z
expect_grep "unknown expert" "P9Z" "$WORK/fc.err"
fails_cleanly gen --method bogus
expect_eq "unknown method is a usage error" "$LAST_RC" 2
expect_grep "lists the methods" "uniform-geo" "$WORK/fc.err"
fails_cleanly gen --expert P1A --base
expect_eq "two methods" "$LAST_RC" 2
fails_cleanly gen --topk 0 --expert P1A
expect_eq "--topk 0" "$LAST_RC" 2
fails_cleanly gen --method uniform --pref P1A --soup-mode delta
fails_cleanly gen --method soup --pref P1A --soup-mode sideways
fails_cleanly "$MOPE" generate --bundle "$B" -m "$BUNDLE_DIR/base.gguf" -p "$Q"
expect_eq "-m with --bundle" "$LAST_RC" 2
fails_cleanly "$MOPE" generate -m "$BUNDLE_DIR/base.gguf" -p "$Q" --pref P1A
expect_eq "--pref without --bundle" "$LAST_RC" 2
fails_cleanly "$MOPE" generate --bundle "$WORK/nowhere.json" -p "$Q"
printf '{"format": "mope-bundle", "version": 1,' >"$WORK/broken.json"
fails_cleanly "$MOPE" generate --bundle "$WORK/broken.json" -p "$Q"
# the longest prompt that fits leaves a token or two: generation stops when
# the context is full (the tiny model's context is 160)
n=160
until "$MOPE" generate --bundle "$B" --expert P1A -t 1 --temp 0 -n 1000 -p "$(printf 'the %.0s' $(seq $n))" \
  >/dev/null 2>"$WORK/full.err"; do
  n=$((n - 2))
  [ "$n" -gt 0 ] || { echo "FAIL: no prompt length fits" >&2; exit 1; }
done
expect_grep "context full" "context is full" "$WORK/full.err"
fails_cleanly "$MOPE" generate --bundle "$B" --expert P1A -p "$(printf 'the %.0s' $(seq 400))"
expect_grep "long prompt" "context" "$WORK/fc.err"
echo "bundle generate: ok"
