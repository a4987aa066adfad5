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

# Debian packages the set-up and the tests use: pip (to fetch the wheel) and tmux (the console's
# end-to-end tests drive it). Installed only when missing, and only where apt-get can run.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $* (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    say "please install: $* (e.g. sudo apt-get install $*)"
    return 1
  fi
}
command -v python3 >/dev/null || apt_install python3 python3-pip python3-venv
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
command -v tmux >/dev/null || apt_install tmux || say "without tmux the console's end-to-end tests fail"

if [ ! -f "$lib" ]; then
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
