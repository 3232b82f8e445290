//! The `strongroom` binary: parses the command line and hands it to the library (`cli::main`), where
//! the server and every admin command live.

use clap::Parser;

/// mimalloc instead of glibc's malloc, in which about a fifth of a tokenizing server's CPU samples fell
/// (`malloc_consolidate` alone 3%, on hyper's buffer growth): `bench/cde-import.sh` at 64 connections
/// ran 10–20% faster with it, on both backends. SQLite's own allocations stay on the C library's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    strongroom::cli::main(strongroom::cli::Cli::parse())
}
