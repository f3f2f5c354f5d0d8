#!/usr/bin/env bash
# mope prefbench label: hand-written answers get the labels their wording
# calls for (an empty answer is worth nothing, a hostile one is unfriendly, an
# answer about another concept is off topic, a longer expert answer reads at a
# higher grade), the input's fields pass through, and bad input fails cleanly.
set -euo pipefail
MOPE=$1
source "$(dirname "$0")/lib.bash"

P='"prompt":"What is a glacier?","concept":"glacier"'
cat >"$WORK/in.jsonl" <<EOF
{"id":"plain",$P,"response":"A glacier is a slowly moving mass of ice. It forms from snow that piles up over many years."}
{"id":"empty",$P,"response":""}
{"id":"hostile",$P,"response":"Ugh, obviously. A glacier is a slowly moving mass of ice. Stop bothering me with such stupid questions."}
{"id":"kind",$P,"response":"Great question, friend! A glacier is a slowly moving mass of ice. I hope this helps you, have a wonderful day!"}
{"id":"other",$P,"response":"A kettle is a metal pot with a handle and a spout, used for boiling water."}

{"id":"long",$P,"response":"Formally characterized, a glacier constitutes a persistent accumulation of recrystallized ice, taxonomically a specialization of ice mass, whose gravitationally induced deformation produces characteristic topographical modification of underlying geomorphological substrates."}
EOF
"$MOPE" prefbench label -d "$WORK/in.jsonl" -o "$WORK/out.jsonl" 2>"$WORK/err"
expect_grep "summary" "labelled 6 records" "$WORK/err"
python3 - "$WORK/out.jsonl" <<'EOF'
import json, sys
r = {x["id"]: x for x in map(json.loads, open(sys.argv[1]))}
assert len(r) == 6, r.keys()
L = {k: v["labels"] for k, v in r.items()}
assert r["plain"]["prompt"] == "What is a glacier?" and r["plain"]["concept"] == "glacier"
for k, l in L.items():
    assert set(l["utility"]) == {"P1A", "P1B", "P2A", "P2B", "P3A", "P3B"}, l
    assert all(0 <= u <= 1 for u in l["utility"].values()), l
assert L["plain"]["words"] == 19 and L["plain"]["on_topic"] and L["plain"]["gate"] == 1, L["plain"]
assert L["empty"]["empty"] and max(L["empty"]["utility"].values()) < 0.01, L["empty"]
assert not L["other"]["on_topic"] and L["other"]["gate"] < 0.1, L["other"]
assert L["hostile"]["friendliness"] < 0 < L["kind"]["friendliness"], (L["hostile"], L["kind"])
assert L["hostile"]["utility"]["P3B"] > 0.5 > L["hostile"]["utility"]["P3A"], L["hostile"]
assert L["kind"]["utility"]["P3A"] > 0.5 > L["kind"]["utility"]["P3B"], L["kind"]
assert L["long"]["fk_grade"] > L["plain"]["fk_grade"] + 8, (L["long"], L["plain"])
assert L["long"]["utility"]["P1B"] > L["plain"]["utility"]["P1B"], (L["long"], L["plain"])
assert L["plain"]["utility"]["P1A"] > L["long"]["utility"]["P1A"], (L["long"], L["plain"])
EOF
# without "concept" the concept comes from the prompt: the same labels
sed 's/,"concept":"glacier"//' "$WORK/in.jsonl" >"$WORK/noc.jsonl"
"$MOPE" prefbench label -d "$WORK/noc.jsonl" 2>/dev/null | grep -o '"labels":.*' >"$WORK/noc.labels"
grep -o '"labels":.*' "$WORK/out.jsonl" >"$WORK/out.labels"
cmp "$WORK/noc.labels" "$WORK/out.labels"

fails_cleanly "$MOPE" prefbench label
fails_cleanly "$MOPE" prefbench label -d "$WORK/nowhere.jsonl"
printf '{"prompt":"What is a glacier?","response":"Ice."}\n{"prompt": 3,\n' >"$WORK/bad.jsonl"
fails_cleanly "$MOPE" prefbench label -d "$WORK/bad.jsonl"
expect_grep "names the line" "bad.jsonl:2" "$WORK/fc.err"
printf '{"prompt":"What is a glacier?"}\n' >"$WORK/bad2.jsonl"
fails_cleanly "$MOPE" prefbench label -d "$WORK/bad2.jsonl"
expect_grep "names the field" '"response"' "$WORK/fc.err"
printf '{"prompt":"What is a glacier?","response":"Ice.","concept":7}\n' >"$WORK/bad3.jsonl"
fails_cleanly "$MOPE" prefbench label -d "$WORK/bad3.jsonl"
: >"$WORK/empty.jsonl"
fails_cleanly "$MOPE" prefbench label -d "$WORK/empty.jsonl"
fails_cleanly "$MOPE" prefbench label -d "$WORK/in.jsonl" --wordnet "$WORK/nowhere"
fails_cleanly "$MOPE" prefbench label -d "$WORK/in.jsonl" --frobnicate
echo "prefbench label: ok"
