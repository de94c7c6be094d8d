//! `tollgate`: serves the token service from a TOML configuration, and the tools to prepare one
//! (`hash-password`, `keygen`). Everything lives in the `tollgate_server` library.
#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    tollgate_server::cli::main()
}
