#!/usr/bin/env bash
# One command: vsa-index vs faiss on the same data.
#   benches/compare/run.sh [N] [QUERIES] [DIM]
# DIM 1280 (default up to 2M items): 1280-d synthetic embeddings reduced by the encoder;
# DIM 256 (default above 2M): the reduced vectors generated directly (10M × 1280 floats do not
# fit in memory). Needs ~12 GiB RAM and ~6 GiB disk at 1M × 1280, ~17 GiB RAM and ~11 GiB disk
# at 10M × 256. HNSW_N (default 1M; 0 skips it) sets how many items faiss's HNSW is built on.
# SWEEP_N (default: all N; 0 skips it) sets the items of the code-length sweep (64–512 bits).
# The real-embedding run needs the evalset at ../shared (beside the repository).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
Q=${2:-200}
DIM=${3:-$([ "$N" -gt 2000000 ] && echo 256 || echo 1280)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=$CARGO_TARGET_DIR/index-compare  # ignored by git
EVALSET=${EVALSET:-../shared/evalsets/clipart-public-v1}
if [ ! -x benches/.venv/bin/python ]; then
  python3 -m venv benches/.venv
  benches/.venv/bin/pip install -q faiss-cpu==1.15.1 numpy==2.3.5 onnxruntime==1.31.1 Pillow==12.0.0
fi
cargo build --release -q -p vsa-benches --bin index_compare
"$CARGO_TARGET_DIR/release/index_compare" --n "$N" --queries "$Q" --dim "$DIM" --out "$OUT" \
  ${SWEEP_N:+--sweep-n "$SWEEP_N"}
benches/.venv/bin/python benches/compare/compare_faiss.py "$OUT"
rm -f "$OUT/items.f32"
if [ -f models/efficientnet_lite0.onnx ] && [ -d "$EVALSET/catalog" ] && [ "${REAL:-1}" = 1 ]; then
  benches/.venv/bin/python benches/compare/embed.py models/efficientnet_lite0.onnx \
    "$EVALSET/catalog" "$OUT"
  "$CARGO_TARGET_DIR/release/index_compare" --real "$OUT/real.f32" --out "$OUT"
fi
