#!/usr/bin/env bash
# One command: vsa-index vs faiss on the same data. Usage: benches/compare/run.sh [N] [QUERIES]
# Needs ~12 GiB RAM and ~6 GiB disk at N = 1M (the 1280-d float vectors for IndexFlatIP).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
Q=${2:-200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=$CARGO_TARGET_DIR/index-compare  # ignored by git
if [ ! -x benches/.venv/bin/python ]; then
  python3 -m venv benches/.venv
  benches/.venv/bin/pip install -q faiss-cpu==1.15.1 numpy==2.3.5 onnxruntime==1.31.1 Pillow==12.0.0
fi
cargo build --release -q -p vsa-benches --bin index_compare
"$CARGO_TARGET_DIR/release/index_compare" --n "$N" --queries "$Q" --out "$OUT"
benches/.venv/bin/python benches/compare/compare_faiss.py "$OUT"
if [ -f models/efficientnet_lite0.onnx ]; then
  benches/.venv/bin/python benches/compare/embed.py models/efficientnet_lite0.onnx \
    /work/shared/evalsets/clipart-public-v1/catalog "$OUT"
  "$CARGO_TARGET_DIR/release/index_compare" --real "$OUT/real.f32" --out "$OUT"
fi
rm -f "$OUT/items.f32"
