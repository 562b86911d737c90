//! `webhook-service`: the service and its command line (see `cli/`).

mod cli;

use std::process::ExitCode;

// glibc's allocator spent ~15 % of the service's CPU under load (arena locks,
// consolidation); mimalloc's thread-local free lists avoid most of it.
// `--features system-allocator` keeps glibc's, so that heap profilers
// (valgrind's DHAT, heaptrack) see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::run(cli::parse())
}
