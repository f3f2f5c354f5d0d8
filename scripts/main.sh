#!/usr/bin/env bash
# The main job.  Until the PrefBench bundle exists (models/prefbench/), it
# builds mope, writes a small random-weight llama model with `mope model-init`
# and streams a generation from it.  Extra arguments go to `mope generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target mope
model=build/demo-random.gguf
[ -f "$model" ] || ./build/mope model-init -o "$model" --dim 256 --layers 4 --heads 8 --kv-heads 4 \
    --ff 768 --ctx 512 --type q8_0 --seed 1
./build/mope generate -m "$model" -p "The glacier" -n 48 --seed 7 "$@"
