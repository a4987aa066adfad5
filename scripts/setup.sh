#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine with Rust for vsa:
#   1. ONNX Runtime: the shared library shipped inside the PyPI `onnxruntime` wheel, fetched with
#      `pip download --no-deps` (no other network) and unpacked into the git-ignored `.ort/lib/`,
#      where the `vsa` binary finds it without any environment variable.
#   2. A release build of the workspace (one profile for everything, tests included).
# Idempotent: a second run only checks and rebuilds what changed.
set -euo pipefail

ORT_VERSION="1.31.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ort_dir="$root/.ort/lib"
lib="$ort_dir/libonnxruntime.so.$ORT_VERSION"

say() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -f "$lib" ]; then
  command -v python3 >/dev/null || { say "python3 is needed to fetch the onnxruntime wheel (apt-get install python3-pip)"; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  say "fetching onnxruntime==$ORT_VERSION wheel from PyPI (library only, no install)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 \
    -d "$tmp" "onnxruntime==$ORT_VERSION"
  wheel="$(ls "$tmp"/onnxruntime-*.whl)"
  mkdir -p "$ort_dir"
  python3 - "$wheel" "$ort_dir" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/libonnxruntime") and ".so" in base:
            with z.open(name) as src, open(os.path.join(out, base), "wb") as dst:
                dst.write(src.read())
PY
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ort_dir/libonnxruntime.so"
  say "ONNX Runtime $ORT_VERSION installed in $ort_dir"
else
  say "ONNX Runtime $ORT_VERSION already in $ort_dir"
fi

if [ "${VSA_SETUP_SKIP_BUILD:-0}" != "1" ]; then
  say "building vsa (release)"
  cargo build --release --locked --workspace --all-targets
fi
