//! The `naast` command line: parses arguments, starts tracing, and hands over to the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// mimalloc rather than glibc's malloc: measured faster catch-up and a lower, steadier RSS
// under the event log's many short-lived record buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// naast: one shared timeline of care plans, goals and agreements for a family, its supporter
/// and its care providers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure throughput and latency; prints one JSON object per line.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Subcommand)]
enum BenchTarget {
    /// The event log: durable appends, catch-up, stream reads.
    Eventlog(naast_server::bench::EventlogArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NAAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench {
            target: BenchTarget::Eventlog(args),
        } => naast_server::bench::eventlog(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("naast: {e}");
            ExitCode::FAILURE
        }
    }
}
