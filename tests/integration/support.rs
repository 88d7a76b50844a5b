//! Helpers for Maillage's integration tests: running the `maillage` program as a process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `maillage` program, built by cargo for this test package from the binary's own entry
/// point (`maillage_node::cli::main`), so it is always fresh.
pub fn maillage_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_maillage-under-test"))
}

/// A `maillage` command ready to run, with logs quiet and a fixed locale-free environment.
pub fn maillage() -> Command {
    let mut cmd = Command::new(maillage_bin());
    cmd.env_remove("MAILLAGE_LOG").env("NO_COLOR", "1");
    cmd
}

/// Runs `maillage ARGS`, returning its output.
pub fn run(args: &[&str]) -> Output {
    match maillage().args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run maillage {args:?}: {e}"),
    }
}

/// Runs `maillage ARGS` and expects success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "maillage {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `maillage ARGS` and expects failure; returns stderr (and stdout appended).
pub fn run_err(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        !out.status.success(),
        "maillage {args:?} should have failed:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// Runs `maillage ARGS --json` and parses stdout.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let stdout = run_ok(args);
    match serde_json::from_str(&stdout) {
        Ok(v) => v,
        Err(e) => panic!("maillage {args:?} printed no JSON ({e}): {stdout}"),
    }
}

/// Creates a structure node in `dir` and returns its path as a string.
pub fn init_structure(dir: &Path) -> String {
    let node = dir.join("node");
    let node_s = node.display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &node_s,
        "--role",
        "structure",
        "--name",
        "Test",
        "--code-insee",
        "69385",
    ]);
    node_s
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        panic!("cannot write {}: {e}", path.display());
    }
    path.display().to_string()
}
