//! The loadtest binary: parses the command line and picks a runtime.

use std::process::ExitCode;

use clap::Parser;
use loadtest::cli::{Cli, dispatch};

/// The gateway's allocator, so `serve-trivial` (the bare baseline of `benches/wrk/run.sh`) and
/// the embedded gateway run on the same allocator as the `gateway` binary.
#[global_allocator]
static ALLOCATOR: alloc_mimalloc::MiMalloc = alloc_mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = cli.command.threads();
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}
