//! Helpers shared by the end-to-end suites.

use std::process::{Command, Output};

/// Runs the real `vsa` binary with `args` and returns its output.
pub(crate) fn vsa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsa"))
        .args(args)
        .output()
        .expect("start vsa")
}
