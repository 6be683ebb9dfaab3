//! Building the examples from integration tests (shared by the example tests).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => manifest.join(dir),
        None => manifest.join("target"),
    }
}

/// Builds every example once (same features and profile as this test
/// binary) and returns the directory holding the binaries.
pub fn build_examples() -> Result<PathBuf, String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--examples", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if cfg!(feature = "fallback") {
        cmd.args(["--features", "fallback"]);
    }
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("`cargo build --examples` failed: {status}"));
    }
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    Ok(target_dir().join(profile).join("examples"))
}
