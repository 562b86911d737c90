//! `cargo run --release -p webhook-bench -- <scenario|all> [options]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use webhook_bench::{Report, Settings, runs_on, scenarios, service};

#[derive(Parser)]
#[command(
    name = "webhook-bench",
    about = "Benchmarks the webhook service; prints one JSON object per scenario"
)]
struct Args {
    /// Scenarios: throughput, batch, fanout, fanout-filtered, latency, backlog, isolation, ratelimit, fifo, portal-reads, https, many-endpoints, tenants, cluster (PostgreSQL only), or all.
    #[arg(required = true)]
    scenarios: Vec<String>,
    /// Small counts: checks correctness (loss, errors, crashes), not speed.
    #[arg(long)]
    smoke: bool,
    /// Override the number of events.
    #[arg(long)]
    events: Option<usize>,
    /// Producer concurrency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Override the steady rate (events/s per endpoint) of latency and isolation.
    #[arg(long)]
    rate: Option<u32>,
    /// Use PostgreSQL at this URL instead of the embedded store.
    #[arg(long)]
    database_url: Option<String>,
    /// The webhook-service binary (default: next to this one, built if missing).
    #[arg(long)]
    service_bin: Option<PathBuf>,
}

fn table_row(r: &Report) -> String {
    let j = r.to_json();
    format!(
        "{:<11} {:<8} {:>9} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>5} {:>5}",
        r.scenario,
        r.store,
        r.events,
        j["ingest_per_sec"],
        j["deliveries_per_sec"],
        j["latency_ms"]["p50"],
        j["latency_ms"]["p99"],
        j["peak_rss_mb"],
        j["ceiling_per_sec"],
        j["ratio_to_ceiling"],
        j.get("cpu_per_delivery_to_ceiling")
            .map_or_else(|| "-".to_string(), ToString::to_string),
        r.lost,
        r.duplicates
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    let release = !cfg!(debug_assertions);
    let binary = match service::locate_binary(args.service_bin.as_deref(), release) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let settings = Settings {
        binary,
        database_url: args.database_url,
        smoke: args.smoke,
        events: args.events,
        concurrency: args.concurrency,
        rate: args.rate,
    };
    let names: Vec<String> = if args.scenarios.iter().any(|s| s == "all") {
        scenarios::ALL
            .iter()
            .filter(|name| runs_on(name, &settings))
            .map(|s| s.to_string())
            .collect()
    } else {
        args.scenarios
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    let mut rows = Vec::new();
    for name in &names {
        match runtime.block_on(scenarios::run(name, &settings)) {
            Ok(report) => {
                println!("{}", report.to_json());
                ok &= report.is_correct();
                rows.push(table_row(&report));
            }
            Err(e) => {
                eprintln!("scenario {name} failed: {e:#}");
                ok = false;
            }
        }
    }
    eprintln!(
        "\n{:<11} {:<8} {:>9} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>5} {:>5}",
        "scenario",
        "store",
        "events",
        "ingest/s",
        "deliver/s",
        "p50 ms",
        "p99 ms",
        "rss MB",
        "ceil/s",
        "ratio",
        "cpu/x",
        "lost",
        "dups"
    );
    for row in rows {
        eprintln!("{row}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
