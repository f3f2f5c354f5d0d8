#!/usr/bin/env python3
"""Reward-model pair accuracy on the sanity table's held-out pairs, and what
it would be if the reward model knew each answer's relevance.

    mope score --rm models/prefbench/rm/P3B.gguf -d WORK/eval_test.jsonl -o scored.jsonl
    python3 scripts/prefbench_rm_pairs.py WORK/eval_test.jsonl P3B scored.jsonl

WORK/eval_test.jsonl is written by the `eval` stage of `mope prefbench build`
(13 answers per held-out prompt, each with the labelers' "labels"). Pairs are
the sanity table's: two different answers to one prompt whose labeler utility
for the choice differs by >= 0.2. Printed: the reward model's accuracy (all
pairs; equally relevant pairs; pairs where one answer is on topic and the
other not), then what it would be
  * if the concept's name decided every pair where exactly one answer
    contains the concept (or its plural with -s), the reward model the rest:
    relevance as far as a model can see it in the text;
  * with the score plus a bonus for naming the concept, the bonus chosen on
    these same pairs (so an optimistic bound for a model that learnt the
    name check beside what it knows);
  * if the labelers' own on-topic verdict decided every cross-relevance pair:
    on unseen concepts it also rests on whether the content is right, facts a
    model never trained on them lacks.
"""
import itertools
import json
import sys

PER = 13
MARGIN = 0.2


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    recs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    choice = sys.argv[2]
    scores = [json.loads(line)["score"] for line in open(sys.argv[3]) if line.strip()]
    if len(recs) != len(scores) or len(recs) % PER:
        sys.exit("%s and %s must hold the same records, %d per prompt" % (sys.argv[1], sys.argv[3], PER))

    def named(r):
        c, t = r["concept"].lower(), r["response"].lower()
        return c in t or c + "s" in t

    pairs = []
    n = [0, 0]
    ok = [0, 0]
    ok_name = ok_verdict = 0
    for i in range(0, len(recs), PER):
        for a, b in itertools.combinations(range(i, i + PER), 2):
            la, lb = recs[a]["labels"], recs[b]["labels"]
            d = la["utility"][choice] - lb["utility"][choice]
            if abs(d) < MARGIN or recs[a]["response"] == recs[b]["response"]:
                continue
            pairs.append((a, b, d > 0))
            right = (scores[a] > scores[b]) == (d > 0)
            cross = la["on_topic"] != lb["on_topic"]
            n[cross] += 1
            ok[cross] += right
            na, nb = named(recs[a]), named(recs[b])
            ok_name += ((na > nb) == (d > 0)) if na != nb else right
            ok_verdict += ((la["on_topic"] > lb["on_topic"]) == (d > 0)) if cross else right
    total = sum(n)
    if not total:
        sys.exit("no pairs for %s" % choice)
    print("%s: %d pairs, reward model %.3f (equally relevant %.3f of %d, cross-relevance %.3f of %d)"
          % (choice, total, sum(ok) / total, ok[0] / max(n[0], 1), n[0], ok[1] / max(n[1], 1), n[1]))
    print("  pairs decided by the concept's name where exactly one answer names it: %.3f" % (ok_name / total))
    named_all = [named(r) for r in recs]
    best = max((sum(((scores[a] + lam * named_all[a]) > (scores[b] + lam * named_all[b])) == w
                    for a, b, w in pairs) / total, lam)
               for lam in (0, 0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8))
    print("  score + %g for naming the concept (bonus chosen on these pairs): %.3f" % (best[1], best[0]))
    print("  cross-relevance pairs decided by the labelers' verdict: %.3f" % (ok_verdict / total))


if __name__ == "__main__":
    main()
