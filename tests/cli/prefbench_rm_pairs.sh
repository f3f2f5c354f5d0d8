#!/usr/bin/env bash
# scripts/prefbench_rm_pairs.py: on a hand-made prompt of 13 answers (utility
# 0.07 i, answers 0 and 1 off topic and not naming the concept, a reward model
# that ranks by utility except answer 12, scored lowest) the accuracies are
# the hand-counted ones: 55 pairs differ by >= 0.2, 10 of them (12 against
# 0..9) wrong; 19 cross-relevance pairs, 2 wrong; knowing relevance fixes those.
set -euo pipefail
MOPE=$1
source "$(dirname "$0")/lib.bash"
SCRIPT="$(dirname "$0")/../../scripts/prefbench_rm_pairs.py"

python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
with open(w + "/eval.jsonl", "w") as e, open(w + "/scored.jsonl", "w") as s:
    for i in range(13):
        u = 0.07 * i
        resp = ("An answer number %d." % i) if i < 2 else ("A glacier, answer number %d." % i)
        e.write(json.dumps({"prompt": "What is a glacier?", "concept": "glacier", "response": resp,
                            "labels": {"on_topic": i >= 2, "utility": {"P3B": u}}}) + "\n")
        s.write(json.dumps({"score": -1.0 if i == 12 else u}) + "\n")
PY
python3 "$SCRIPT" "$WORK/eval.jsonl" P3B "$WORK/scored.jsonl" >"$WORK/out"
expect_grep "all pairs" "P3B: 55 pairs, reward model 0.818 (equally relevant 0.778 of 36, cross-relevance 0.895 of 19)" "$WORK/out"
expect_grep "name rule" "names it: 0.855" "$WORK/out"
expect_grep "verdict" "labelers' verdict: 0.855" "$WORK/out"
head -3 "$WORK/eval.jsonl" >"$WORK/short.jsonl"
fails_cleanly python3 "$SCRIPT" "$WORK/short.jsonl" P3B "$WORK/scored.jsonl"
fails_cleanly python3 "$SCRIPT" "$WORK/eval.jsonl"
echo "prefbench_rm_pairs: ok"
