//! `tollgate`: serves the token service from a TOML configuration, and the tools to prepare one
//! (`hash-password`, `keygen`). Everything lives in the `tollgate_server` library.

/// mimalloc instead of the system allocator: a proxied request allocates and frees dozens of
/// small buffers (headers, futures, body frames) across the runtime's worker threads, and
/// glibc's malloc spent about a tenth of the gateway's user time on them (`benches/gateway.sh`,
/// docs/performance.md, "The gateway").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tollgate_server::cli::main()
}
