#!/usr/bin/env bash
# mope tokenize prints exactly the reference ids (from the
# testdata/tokenizers/*.expected.json files) on one line, adds BOS only when
# the vocabulary says so, and parses special tokens only with --special.
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"
T=$SHARED/testdata/tokenizers

# ids of the case whose text is exactly $2 in expected file $1, space-separated
ref_ids() {
  local line
  line=$(grep -F "{\"text\": \"$2\", \"ids\": [" "$1" | head -n 1)
  [ -n "$line" ] || { echo "FAIL: no reference case '$2' in $1" >&2; exit 1; }
  sed -E 's/.*"ids": \[([^]]*)\].*/\1/; s/,//g' <<<"$line"
}

check() { # vocab expected text [extra flags...]
  local vocab=$1 exp=$2 text=$3
  shift 3
  "$MOPE" tokenize -m "$T/$vocab" --no-bos "$@" "$text" >"$WORK/out"
  expect_eq "$vocab: one line" "$(wc -l <"$WORK/out")" "1"
  expect_eq "$vocab: '$text'" "$(cat "$WORK/out")" "$(ref_ids "$T/$exp" "$text")"
}

check vocab-llama-spm.gguf llama-spm.expected.json "Hello world"
check vocab-llama-spm.gguf llama-spm.expected.json "I'm"
check vocab-llama3-bpe.gguf llama3-bpe.expected.json "Hello, world!"
check vocab-llama3-bpe.gguf llama3-bpe.expected.json "café résumé naïve façade"
check vocab-qwen-bpe.gguf qwen-bpe.expected.json "The quick brown fox jumps over the lazy dog."
check vocab-gpt2-bpe.gguf gpt2-bpe.expected.json "It's John's book, isn't it? They're sure we've seen what you'll do, I'd say."
# special tokens become single ids only with --special
check vocab-llama3-bpe.gguf llama3-bpe.special.expected.json "<|begin_of_text|>Hello world<|end_of_text|>" --special
check vocab-gpt2-bpe.gguf gpt2-bpe.special.expected.json "Hello world<|endoftext|>" --special
"$MOPE" tokenize -m "$T/vocab-gpt2-bpe.gguf" "<|endoftext|>" >"$WORK/out"
if grep -qw 50256 "$WORK/out"; then echo "FAIL: <|endoftext|> parsed as special without --special" >&2; exit 1; fi

# BOS: Llama-2 and Llama-3 add it (ids 1 and 128000), Qwen does not
expect_eq "llama-spm with BOS" "$("$MOPE" tokenize -m "$T/vocab-llama-spm.gguf" "Hello world")" \
  "1 $(ref_ids "$T/llama-spm.expected.json" "Hello world")"
expect_eq "llama3 with BOS" "$("$MOPE" tokenize -m "$T/vocab-llama3-bpe.gguf" "I'm")" \
  "128000 $(ref_ids "$T/llama3-bpe.expected.json" "I'm")"
expect_eq "qwen without BOS" "$("$MOPE" tokenize -m "$T/vocab-qwen-bpe.gguf" "I'm")" \
  "$(ref_ids "$T/qwen-bpe.expected.json" "I'm")"

# -f reads the file byte for byte; -- allows a text starting with '-'
printf 'Hello world' >"$WORK/in.txt"
expect_eq "-f" "$("$MOPE" tokenize -m "$T/vocab-llama-spm.gguf" --no-bos -f "$WORK/in.txt")" "15043 3186"
expect_eq "--" "$("$MOPE" tokenize -m "$T/vocab-gpt2-bpe.gguf" -- "-x")" "$("$MOPE" tokenize -m "$T/vocab-gpt2-bpe.gguf" --no-bos -- "-x")"
# an empty text is no ids (an empty line), or just BOS
expect_eq "empty" "$("$MOPE" tokenize -m "$T/vocab-llama-spm.gguf" "")" "1"
echo "tokenize: ok"
