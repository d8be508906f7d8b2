//! `flowgate-bench`: flowgate's release binaries, driven from outside through their
//! environment, measured side by side with the floors under them and with pywa.
//!
//! In order: the RSA floor (`floor`); the in-process no-hop baseline (`baseline`);
//! flowgate plain with SQLite, with PostgreSQL, and with two flow-service replicas on
//! one PostgreSQL; flowgate in Meta mode; pywa (`pywa`); a constant-rate run at half
//! of flowgate's plain peak; the gateway's memory idle and holding many idle
//! connections. The set-ups are in `scenarios`, started through `servers`; the load
//! generator is `load` with requests from `workload` (sealed by `seal`); CPU and
//! memory come from `procs`; `report` prints the table and writes the JSON.
//!
//! `scripts/bench.sh` builds the binaries, starts a throwaway PostgreSQL, and runs this.

mod baseline;
mod cert;
mod floor;
mod load;
mod procs;
mod pywa;
mod report;
mod scenarios;
mod seal;
mod servers;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::load::Pace;
use crate::report::{Report, Settings};
use crate::scenarios::{Bench, Store};
use crate::servers::Binaries;
use crate::workload::Shape;

#[derive(Debug, Parser)]
#[command(about = "Side-by-side performance benchmark of flowgate's release binaries")]
struct Args {
    /// A couple of seconds per run, no pywa, no idle connections; fails on any error
    /// answer.
    #[arg(long)]
    smoke: bool,
    /// Length of each timed run (default 10, 2 with --smoke).
    #[arg(long, env = "BENCH_SECONDS")]
    seconds: Option<f64>,
    /// Keep-alive HTTPS connections per run.
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// Idle keep-alive connections the gateway is asked to hold; 0 skips it.
    #[arg(long, env = "BENCH_IDLE_CONNECTIONS", default_value_t = 10_000)]
    idle_connections: usize,
    /// Where `flowgate-gateway` and `flow-service` are (default: next to this binary).
    #[arg(long, env = "BENCH_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// A PostgreSQL for the PostgreSQL runs; without it they are skipped.
    #[arg(long, env = "FLOWGATE_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Skip pywa.
    #[arg(long, env = "BENCH_NO_PYWA")]
    no_pywa: bool,
    /// The virtualenv pywa is installed into.
    #[arg(long, env = "BENCH_VENV", default_value = "target/bench-venv")]
    venv: PathBuf,
    /// The directory of the pywa app (`app.py`).
    #[arg(long, default_value = "bench/pywa")]
    pywa_app: PathBuf,
    /// Encrypted requests are sealed beforehand for at most this many per second.
    #[arg(long, env = "BENCH_META_MAX_RATE", default_value_t = 2500.0)]
    meta_max_rate: f64,
    /// The JSON results file.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-load")
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(bench(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("flowgate-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; `Ok(false)` when a smoke run saw an error answer.
async fn bench(args: Args) -> anyhow::Result<bool> {
    let seconds = args.seconds.unwrap_or(if args.smoke { 2.0 } else { 10.0 });
    let duration = Duration::from_secs_f64(seconds);
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .to_owned(),
    };
    let binaries = Binaries::in_dir(&bin_dir)?;
    let dir = tempfile::Builder::new()
        .prefix("flowgate-bench")
        .tempdir()?;
    let mut notes = vec![
        "CPU from /proc utime+stime over each timed window; the baseline's is its own \
         threads' in this process"
            .to_owned(),
        "servers log at warn (RUST_LOG overrides); uvicorn's access log is off; pywa does \
         not check X-Hub-Signature-256 on flow requests"
            .to_owned(),
    ];

    eprintln!("measuring the RSA floor …");
    let floor = floor::measure(Duration::from_secs_f64(if args.smoke { 0.3 } else { 2.0 }))?;
    let mut bench = Bench::new(binaries, dir.path(), floor, duration, args.connections)?;
    let mut runs = Vec::new();

    runs.push(bench.baseline().await?);

    let sqlite = Store::Sqlite;
    let plain_peak = bench
        .flowgate(
            "flowgate plain, SQLite",
            &sqlite,
            1,
            Shape::Step,
            None,
            Pace::ClosedLoop,
        )
        .await?;
    let half_peak = plain_peak.requests_per_second / 2.0;
    runs.push(plain_peak);
    runs.push(
        bench
            .flowgate(
                "flowgate plain, SQLite",
                &sqlite,
                1,
                Shape::Journey,
                None,
                Pace::ClosedLoop,
            )
            .await?,
    );

    match &args.postgres_url {
        Some(url) => {
            let postgres = Store::Postgres(url.clone());
            for (name, replicas) in [
                ("flowgate plain, PostgreSQL", 1),
                ("flowgate plain, PostgreSQL ×2 svc", 2),
            ] {
                for shape in [Shape::Step, Shape::Journey] {
                    runs.push(
                        bench
                            .flowgate(name, &postgres, replicas, shape, None, Pace::ClosedLoop)
                            .await?,
                    );
                }
            }
        }
        None => notes.push("PostgreSQL runs skipped: FLOWGATE_BENCH_POSTGRES_URL is unset".into()),
    }

    let step_pool = bench.seal_pool(Shape::Step, args.meta_max_rate);
    let journey_pool = bench.seal_pool(Shape::Journey, args.meta_max_rate);
    for (shape, pool) in [(Shape::Step, &step_pool), (Shape::Journey, &journey_pool)] {
        runs.push(
            bench
                .flowgate(
                    "flowgate Meta, SQLite",
                    &sqlite,
                    1,
                    shape,
                    Some(pool.clone()),
                    Pace::ClosedLoop,
                )
                .await?,
        );
    }

    if args.smoke || args.no_pywa {
        notes.push("pywa skipped".into());
    } else {
        // pywa keeps no state, so it may take the same sealed requests.
        runs.push(bench.pywa(&args.venv, &args.pywa_app, step_pool).await?);
    }

    runs.push(
        bench
            .flowgate(
                "flowgate plain, SQLite",
                &sqlite,
                1,
                Shape::Step,
                None,
                Pace::Rate(half_peak.max(1.0)),
            )
            .await?,
    );

    let idle = if args.smoke || args.idle_connections == 0 {
        None
    } else {
        eprintln!("holding {} idle connections …", args.idle_connections);
        let (idle, note) = bench.idle_connections(args.idle_connections).await?;
        notes.extend(note);
        Some(idle)
    };

    let report = Report {
        settings: Settings {
            smoke: args.smoke,
            seconds,
            connections: args.connections,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        floor,
        runs,
        idle,
        notes,
    };
    print!("{}", report.table());
    report.write_json(&args.out)?;
    eprintln!("results written to {}", args.out.display());
    let failed: Vec<&str> = report
        .runs
        .iter()
        .filter(|run| run.has_errors())
        .map(|run| run.name.as_str())
        .collect();
    if args.smoke && !failed.is_empty() {
        eprintln!("flowgate-bench: error answers in: {}", failed.join(", "));
        return Ok(false);
    }
    Ok(true)
}
