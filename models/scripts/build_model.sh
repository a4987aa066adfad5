#!/usr/bin/env bash
# Rebuild models/efficientnet_lite0.onnx, models/manifest.toml,
# models/testdata/reference.json and models/testdata/golden.json.
#
# Creates (or reuses) a virtual environment at models/.venv (git-ignored),
# installs the pinned requirements from PyPI and runs the exporter, which
# exports twice and fails unless both exports are byte-identical, and fails
# unless onnxruntime matches torch within 3e-5 at 224x224, 448x448 and 480x640.
#
# Usage: bash models/scripts/build_model.sh   (from anywhere)
# Env:   PYTHON=python3.11   interpreter used to create the venv (default python3)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
models_dir="$(cd "${script_dir}/.." && pwd)"
venv="${models_dir}/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "${venv}/bin/python" ]]; then
    echo "creating venv at ${venv}"
    "${python}" -m venv "${venv}"
fi

"${venv}/bin/python" -m pip install --quiet --upgrade pip
# torch from PyPI also pulls its CUDA libraries (several GB); they are not used,
# everything here runs on the CPU, but torch does not import without them.
"${venv}/bin/python" -m pip install --quiet -r "${script_dir}/requirements.txt"

"${venv}/bin/python" "${script_dir}/export_efficientnet_lite0.py" --models-dir "${models_dir}"

echo "done:"
sha256sum "${models_dir}/efficientnet_lite0.onnx"
