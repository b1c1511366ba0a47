//! `chat-loadgen`: see `docs/benchmarks.md` and `chat-loadgen --help`.

use clap::Parser;
use loadgen::cli::Args;
use std::process::ExitCode;

/// Exit code of a run that measured but found duplicates, gaps, losses or failed clients.
const INCORRECT: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(loadgen::run::run(args)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("chat-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report.table());
    if let Some(path) = json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|text| std::fs::write(&path, text + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("chat-loadgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    // The runtime may hold sockets still closing: do not wait for them.
    runtime.shutdown_background();
    if report.correct() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INCORRECT)
    }
}
