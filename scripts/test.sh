#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up (ONNX Runtime + one release build), format
# and lint checks, then every test of the workspace in the release profile (the same build the
# set-up made, so nothing compiles twice). `.ci/run` calls exactly this.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

./scripts/setup.sh
for component in rustfmt clippy; do
  tool=$([ "$component" = rustfmt ] && echo fmt || echo clippy)
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    echo "[test] cargo $tool is missing: installing the $component component" >&2
    rustup component add "$component"
  fi
done
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --locked --workspace --no-fail-fast
else
  cargo test --release --locked --workspace --no-fail-fast
fi
