#!/usr/bin/env bash
# mope info: token counts of the vocab files, every key listed, and the
# tensor table and parameter count of a model written by model-init
# (hand-computed for the default shape).
set -euo pipefail
MOPE=$1 SHARED=$2
source "$(dirname "$0")/lib.bash"
T=$SHARED/testdata/tokenizers

"$MOPE" info "$T/vocab-llama3-bpe.gguf" >"$WORK/info"
expect_grep "llama3 token array" "tokenizer.ggml.tokens: arr\[string,128256\]" "$WORK/info"
expect_grep "llama3 vocabulary" "vocabulary: 128256 tokens" "$WORK/info"
expect_grep "llama3 merges" "tokenizer.ggml.merges: arr\[string,280147\]" "$WORK/info"
expect_grep "bos id" "tokenizer.ggml.bos_token_id: u32 = 128000" "$WORK/info"
expect_grep "bool" "tokenizer.ggml.add_bos_token: bool = true" "$WORK/info"
expect_grep "kv count" "metadata: 12 keys" "$WORK/info"
expect_eq "one line per key" "$(grep -c '^  [a-z]*\.[a-z_.]*: ' "$WORK/info")" "12"
expect_grep "no tensors" "tensors: 0" "$WORK/info"

"$MOPE" info "$T/vocab-llama-spm.gguf" >"$WORK/info"
expect_grep "spm vocabulary" "vocabulary: 32000 tokens" "$WORK/info"
expect_grep "spm first tokens" 'arr\[string,32000\] = \["<unk>", "<s>", "</s>", "<0x00>", ...\]' "$WORK/info"
expect_grep "spm scores" "tokenizer.ggml.scores: arr\[f32,32000\]" "$WORK/info"

# default model: embd 64, vocab 512, 2 layers, 4 heads of 16, 2 kv heads, ff 128
"$MOPE" model-init -o "$WORK/m.gguf" --seed 3 >/dev/null
"$MOPE" info "$WORK/m.gguf" >"$WORK/info"
expect_grep "tensor count" "^tensors: 21$" "$WORK/info"
# 2 x 64x512 (embedding, output) + 64 + 2 x (2 x 64 + 64x64 + 2 x 64x32 + 64x64 + 3 x 64x128)
expect_grep "parameters" "parameters: 139584 " "$WORK/info"
expect_grep "q shape" "blk.0.attn_q.weight  *f32  *\[64, 64\]  *16384$" "$WORK/info"
expect_grep "k shape" "blk.1.attn_k.weight  *f32  *\[64, 32\]  *8192$" "$WORK/info"
expect_grep "down shape" "blk.1.ffn_down.weight  *f32  *\[128, 64\]  *32768$" "$WORK/info"
expect_grep "tensor bytes" "tensor data: 558336 bytes" "$WORK/info"

"$MOPE" model-init -o "$WORK/q.gguf" --type q8_0 >/dev/null
"$MOPE" info "$WORK/q.gguf" >"$WORK/info"
# q8_0: 34 bytes per 32 weights; the 64 x 512 embedding is 34 x 2 x 512 bytes
expect_grep "q8_0 embedding" "token_embd.weight  *q8_0  *\[64, 512\]  *34816$" "$WORK/info"
expect_grep "f32 norm" "output_norm.weight  *f32  *\[64\]  *256$" "$WORK/info"
echo "info: ok"
