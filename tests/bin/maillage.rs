//! The `maillage` program built inside the test package, so that process-level tests always
//! run a fresh binary (`CARGO_BIN_EXE_maillage-under-test`) whatever `cargo test` selects.
//! It is the binary's own entry point, not a stand-in.

fn main() -> std::process::ExitCode {
    maillage_node::cli::main()
}
