#!/usr/bin/env bash
# The embedder against plain Python onnxruntime + Pillow, on the same model and the same image
# files, one after the other in one run: first 12 demo-catalogue JPEGs + the 2 CC0 PNG photos.
# Creates benches/python/.venv (pinned requirements) on first use. Results: the criterion report
# (target/criterion/embed_224, whole_photo_640x480) and benches/python/last-run.json.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv=benches/python/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r benches/python/requirements.txt
fi
images=$(ls demo/catalog/*.jpg | sort | head -12; ls models/testdata/*.png | sort | head -2)
echo "== Python: onnxruntime $("$venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') + Pillow"
"$venv/bin/python" benches/python/embed_bench.py --model models/efficientnet_lite0.onnx \
  --images $images --json benches/python/last-run.json
echo "== vsa (Rust): cargo bench --bench embedder"
cargo bench -p vsa-benches --bench embedder -- --noplot 2>&1 | grep -E "^(embed_224|whole_photo)|time:|thrpt:"
