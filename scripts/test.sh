#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up (ONNX Runtime + one release build), format
# and lint checks, then every test of the workspace in the release profile (the same build the
# set-up made, so nothing compiles twice). `.ci/run` calls exactly this.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --locked --workspace --no-fail-fast
else
  cargo test --release --locked --workspace --no-fail-fast
fi
