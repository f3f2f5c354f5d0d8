#!/usr/bin/env bash
# The committed PrefBench bundles (models/prefbench/): the README's main
# command gives a personalised answer with per-token weights, and the
# free-text PCM (bundle-freetext.json) reads the mission statement's own
# example: "easy for an elementary-school student, concise, friendly" must
# put most weight on P1A, P2A and P3A, and "unfriendly" must move the P3
# weight to P3B (the default PCM, trained on the canonical sentences only,
# puts 0.67 of the first text on P3B: docs/RESULTS.md).
set -euo pipefail
MOPE=$1
source "$(dirname "$0")/lib.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$ROOT/models/prefbench
[ -s "$D/bundle.json" ] && [ -s "$D/bundle-freetext.json" ] || { echo "FAIL: no committed bundles in $D" >&2; exit 1; }
Q="What is a glacier?"

"$MOPE" generate --bundle "$D/bundle.json" --pref P1A,P2A,P3A --show-weights -p "$Q" --seed 7 -t 1 \
    >"$WORK/main" 2>"$WORK/main.err"
expect_grep "weights per token" "\[P1A \.[0-9]* P1B \.[0-9]* P2A" "$WORK/main"
expect_grep "speed line" "tokens, .* (method mope)" "$WORK/main.err"

weights() { # free text -> "P1A P1B P2A P2B P3A P3B" mean weights
  "$MOPE" generate --bundle "$D/bundle-freetext.json" --pref "$1" -p "$Q" --seed 7 -t 1 --json 2>/dev/null |
    python3 -c '
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    if "mean_weights" in d:
        w = d["mean_weights"]
        print(" ".join("%.4f" % w[k] for k in ("P1A", "P1B", "P2A", "P2B", "P3A", "P3B")))'
}
read -r a1 b1 a2 b2 a3 b3 <<<"$(weights "easy for an elementary-school student, concise, friendly")"
python3 -c "import sys; a1,b1,a2,b2,a3,b3=map(float,sys.argv[1:]); assert a1+a2+a3 > 0.8, sys.argv[1:]" \
    "$a1" "$b1" "$a2" "$b2" "$a3" "$b3" || { echo "FAIL: free-text PCM misreads the mission example" >&2; exit 1; }
read -r a1 b1 a2 b2 a3 b3 <<<"$(weights "easy for an elementary-school student, concise, unfriendly")"
python3 -c "import sys; a1,b1,a2,b2,a3,b3=map(float,sys.argv[1:]); assert b3 > 0.2 and b3 > 2 * a3, sys.argv[1:]" \
    "$a1" "$b1" "$a2" "$b2" "$a3" "$b3" || { echo "FAIL: free-text PCM misreads 'unfriendly'" >&2; exit 1; }
echo "committed bundles: OK"
