#!/usr/bin/env bash
# Every command, given bad input, exits non-zero (1 for a bad file, 2 for bad
# usage) with a message on stderr, and never crashes.
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"
T=$SHARED/testdata/tokenizers
V=$T/vocab-llama-spm.gguf

"$MOPE" model-init -o "$WORK/m.gguf" >/dev/null
head -c 100000 "$WORK/m.gguf" >"$WORK/trunc_model.gguf"   # header intact, tensor data cut
head -c 5000 "$V" >"$WORK/trunc_vocab.gguf"                # cut inside the token array
head -c 3 "$V" >"$WORK/tiny.gguf"
printf 'not a gguf file at all, just some text\n' >"$WORK/text.gguf"
: >"$WORK/empty.gguf"
printf 'hello\n' >"$WORK/t.txt"
M=$WORK/m.gguf
BAD_FILES=("$WORK/missing.gguf" "$WORK/trunc_model.gguf" "$WORK/trunc_vocab.gguf" "$WORK/tiny.gguf"
           "$WORK/text.gguf" "$WORK/empty.gguf" "$WORK")

# missing, truncated, not-GGUF files and a directory: runtime errors (exit 1)
for f in "${BAD_FILES[@]}"; do
  fails_cleanly "$MOPE" info "$f"; expect_eq "info $f" "$LAST_RC" 1
  fails_cleanly "$MOPE" tokenize -m "$f" "hi"
  fails_cleanly "$MOPE" logits -m "$f" --ids "1 2" -o "$WORK/o.bin"
  fails_cleanly "$MOPE" perplexity -m "$f" -f "$WORK/t.txt"
  fails_cleanly "$MOPE" generate -m "$f" -p "hi" -n 2
  fails_cleanly "$MOPE" model-init -o "$WORK/x.gguf" --vocab-from "$f"
done
fails_cleanly "$MOPE" info "$WORK/missing.gguf"
expect_grep "names the file" "missing.gguf" "$WORK/fc.err"
[ ! -e "$WORK/o.bin" ] || { echo "FAIL: a failed logits run left its output" >&2; exit 1; }

# a vocabulary-only file is not a model
for cmd in generate logits perplexity; do
  case $cmd in
    generate) fails_cleanly "$MOPE" generate -m "$V" -p "hello" ;;
    logits) fails_cleanly "$MOPE" logits -m "$V" --ids "1 2" -o "$WORK/o.bin" ;;
    perplexity) fails_cleanly "$MOPE" perplexity -m "$V" -f "$WORK/t.txt" ;;
  esac
  expect_grep "$cmd on a vocab-only file" "vocab-only" "$WORK/fc.err"
done

# unknown flags and missing arguments: usage errors (exit 2)
for cmd in info tokenize logits perplexity generate model-init; do
  fails_cleanly "$MOPE" "$cmd" --bogus-flag
  expect_eq "$cmd --bogus-flag exit" "$LAST_RC" 2
  expect_grep "$cmd names the flag" "bogus-flag" "$WORK/fc.err"
  fails_cleanly "$MOPE" "$cmd"
  "$MOPE" "$cmd" --help >"$WORK/help"
  expect_grep "$cmd --help" "usage: mope $cmd" "$WORK/help"
done
fails_cleanly "$MOPE" nosuchcommand
fails_cleanly "$MOPE"
fails_cleanly "$MOPE" tokenize -m "$V"                     # no text
fails_cleanly "$MOPE" tokenize -m                            # option without value
fails_cleanly "$MOPE" tokenize -m "$V" one two               # two texts
fails_cleanly "$MOPE" tokenize -m "$V" -f "$WORK/missing.txt"
fails_cleanly "$MOPE" info "$V" "$V"

# malformed and out-of-range --ids, bad numbers
for ids in "1 x 3" "" " , " "1.5" "-1" "512" "99999999999999999999" "1 2 3abc" "0x10"; do
  fails_cleanly "$MOPE" logits -m "$M" --ids "$ids" -o "$WORK/o.bin"
  expect_eq "--ids '$ids' exit" "$LAST_RC" 2
done
fails_cleanly "$MOPE" logits -m "$M" -p "hi" --ids "1" -o "$WORK/o.bin"   # both inputs
fails_cleanly "$MOPE" logits -m "$M" --ids "1"                           # no output
fails_cleanly "$MOPE" logits -m "$M" --ids "1" -o "$WORK/no/such/dir/o.bin"
for bad in "-n -1" "-n abc" "--temp -1" "--temp nan" "--top-p 1.5" "--min-p -0.1" "--top-k x" \
           "--repeat-penalty 0" "--no-repeat-ngram -3" "--seed -5" "-t 0" "--template vicuna"; do
  # shellcheck disable=SC2086
  fails_cleanly "$MOPE" generate -m "$M" -p "hi" $bad
  expect_eq "generate $bad exit" "$LAST_RC" 2
done
fails_cleanly "$MOPE" generate -m "$M" -p "hi" --system "s"       # --system without --chat
fails_cleanly "$MOPE" generate -m "$M" -p "$(printf 'the sea %.0s' $(seq 200))"   # longer than ctx 256
expect_grep "prompt too long" "context length" "$WORK/fc.err"
fails_cleanly "$MOPE" perplexity -m "$M" -f "$WORK/t.txt"          # fewer tokens than one chunk
fails_cleanly "$MOPE" perplexity -m "$M" -f "$WORK/t.txt" -c 100000
fails_cleanly "$MOPE" perplexity -m "$M" -f "$WORK/t.txt" -c 2
fails_cleanly "$MOPE" perplexity -m "$M" -f "$WORK/missing.txt"
for bad in "--dim 60 --heads 8" "--heads 4 --kv-heads 3" "--type q9_9" "--arch gpt2" "--vocab 10" \
           "--type q4_k" "--vocab 600 --vocab-from $V" "--layers 0"; do
  # shellcheck disable=SC2086
  fails_cleanly "$MOPE" model-init -o "$WORK/x.gguf" $bad
done
fails_cleanly "$MOPE" model-init                                  # no -o
fails_cleanly "$MOPE" model-init -o "$WORK/no/such/dir/x.gguf"
echo "bad_input: ok"
