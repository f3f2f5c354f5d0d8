#!/usr/bin/env bash
# The main job: a personalised answer from the bundled PrefBench models.
#   with a PCM in the bundle:    MoPE over the six experts, weights shown per token
#   without one:                 the bundle's P2A (concise) expert
#   without a bundle at all:     a random-weight model written by `mope model-init`
#                                (gibberish by design: it shows the pipeline only)
# Extra arguments go to `mope generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target mope
bundle=models/prefbench/bundle.json
prompt="What is a glacier?"
if [ -f "$bundle" ] && grep -qE '"pcm":[[:space:]]*"' "$bundle"; then
  exec ./build/mope generate --bundle "$bundle" --pref P1A,P2A,P3A --show-weights -p "$prompt" --seed 7 "$@"
elif [ -f "$bundle" ]; then
  exec ./build/mope generate --bundle "$bundle" --expert P2A -p "$prompt" --seed 7 "$@"
fi
model=build/demo-random.gguf
[ -f "$model" ] || ./build/mope model-init -o "$model" --dim 256 --layers 4 --heads 8 --kv-heads 4 \
    --ff 768 --ctx 512 --type q8_0 --seed 1
exec ./build/mope generate -m "$model" -p "The glacier" -n 48 --seed 7 "$@"
