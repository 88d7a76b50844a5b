//! The `maillage` binary.

fn main() -> std::process::ExitCode {
    maillage_node::cli::main()
}
