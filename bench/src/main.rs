//! `flowgate-bench`: flowgate's release binaries, driven from outside through their
//! environment, measured side by side with the floors under them and with pywa.
//!
//! In order, in each round (`--rounds`): the in-process no-hop baseline (`baseline`)
//! and the bare hops (`hop`); flowgate plain with SQLite, then a constant-rate run at
//! half of that peak, and its journey; flowgate plain with PostgreSQL, and with two
//! flow-service replicas on one PostgreSQL; flowgate in Meta mode, then the plain step
//! paced at the Meta step's rate (`plain-at-meta`); pywa (`pywa`). Then
//! the gateway's memory idle and holding many idle connections. The RSA floor
//! (`floor`) is measured at the start and around every run. The set-ups are in `scenarios`, started through `servers`; the load
//! generator is `load` with requests from `workload` (sealed by `seal`); CPU and
//! memory come from `procs`; `report` prints the table and writes the JSON.
//!
//! `scripts/bench.sh` builds the binaries, starts a throwaway PostgreSQL, and runs this.

mod baseline;
mod cert;
mod floor;
mod hop;
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

use crate::floor::Floor;
use crate::load::Pace;
use crate::report::{RateOf, Report, Run, Settings};
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
    /// Run every selected run this many times, one round after the other; each target
    /// measured per run is judged on the median of the rounds (the idle connections are
    /// held once, after the last round; error answers count in every round).
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
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
    /// Encrypted requests are sealed beforehand for at most this many per second (a
    /// faster run uses them up, ends early and is flagged "pool ran out"). By default
    /// one and a half times what the machine's cores can decrypt at the floor measured
    /// at the start (each encrypted request costs the gateway one RSA decryption), at
    /// most 40,000.
    #[arg(long, env = "BENCH_META_MAX_RATE")]
    meta_max_rate: Option<f64>,
    /// The JSON results file.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Only these runs (comma-separated): baseline, hop, plain, journey, postgres, meta,
    /// plain-at-meta (needs meta), pywa, rate (needs plain), idle. The RSA floor is
    /// always measured.
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',', value_parser = RUNS)]
    only: Vec<String>,
    /// The store of the flow service in the plain, Meta, paced and idle runs: `sqlite`
    /// (a fresh file per run) or `memory` (no database: the gateway is what is
    /// measured).
    #[arg(long, env = "BENCH_STORE", default_value = "sqlite", value_parser = ["sqlite", "memory"])]
    store: String,
}

/// The names `--only` takes.
const RUNS: [&str; 10] = [
    "baseline",
    "hop",
    "plain",
    "journey",
    "postgres",
    "meta",
    "plain-at-meta",
    "pywa",
    "rate",
    "idle",
];

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
    check_only(&args.only)?;
    let seconds = args.seconds.unwrap_or(if args.smoke { 2.0 } else { 10.0 });
    let duration = Duration::from_secs_f64(seconds);
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
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
        "servers log at warn (RUST_LOG overrides): no log line per request, each request \
         still traced (exported only if OTEL_* variables say so); uvicorn's access log is \
         off; pywa does not check X-Hub-Signature-256 on flow requests"
            .to_owned(),
    ];

    let floor_window = Duration::from_secs_f64(if args.smoke { 0.15 } else { 1.0 });
    let mut bench = Bench::new(
        binaries,
        dir.path(),
        floor::Meter::new()?,
        floor_window,
        duration,
        args.connections,
    )?;
    let mut runs = Vec::new();

    if !args.only.is_empty() {
        notes.push(format!("only: {}", args.only.join(", ")));
    }
    let (store, store_name) = match args.store.as_str() {
        "memory" => {
            notes.push(
                "the memory store: the targets on flowgate's runs are judged on SQLite runs \
                 only, so they are not judged here"
                    .into(),
            );
            (Store::Memory, "memory")
        }
        _ => (Store::Sqlite, "SQLite"),
    };
    for round in 1..=args.rounds as usize {
        if args.rounds > 1 {
            eprintln!("round {round} of {} …", args.rounds);
        }
        bench.round = round;
        runs.extend(one_round(&mut bench, &args, &store, store_name, &mut notes).await?);
    }
    // Each round notes what it skipped; once is enough.
    let mut seen = std::collections::HashSet::new();
    notes.retain(|note| seen.insert(note.clone()));

    let idle = if args.smoke || args.idle_connections == 0 || !wanted(&args, "idle") {
        None
    } else {
        eprintln!("holding {} idle connections …", args.idle_connections);
        let (idle, note) = bench
            .idle_connections(&store, args.idle_connections)
            .await?;
        notes.extend(note);
        Some(idle)
    };

    let report = Report {
        settings: Settings {
            smoke: args.smoke,
            seconds,
            rounds: args.rounds,
            connections: args.connections,
            cpus: cpus(),
            meta_max_rate: meta_max_rate(&args, &bench.floor),
        },
        floor: bench.floor,
        // A smoke run's numbers (of debug binaries, for a couple of seconds) mean
        // nothing, so it judges no target.
        targets: if args.smoke {
            Vec::new()
        } else {
            Report::targets(&runs, idle.as_ref())
        },
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

/// The machine's cores, as the load generator and the report count them.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many encrypted requests a second the sealed pools are made for: `--meta-max-rate`,
/// else 1.5 × one RSA decryption per core at `floor` (the gateway cannot answer faster;
/// the half again is for the machine's speed drifting during the runs), at most
/// [`META_RATE_CAP`].
fn meta_max_rate(args: &Args, floor: &Floor) -> f64 {
    args.meta_max_rate.unwrap_or_else(|| {
        (1.5 * cpus() as f64 * 1e6 / floor.rsa_decrypt_us)
            .ceil()
            .min(META_RATE_CAP)
    })
}

/// The most sealed requests a second made by default: a pool is held in memory whole
/// (about 1 KiB a request), and a machine with many cores would otherwise seal millions.
const META_RATE_CAP: f64 = 40_000.0;

/// Refuses an `--only` list naming a paced run without the run its rate comes from,
/// which would otherwise be skipped without a word.
fn check_only(only: &[String]) -> anyhow::Result<()> {
    let named = |run: &str| only.iter().any(|o| o == run);
    for (paced, source) in [("rate", "plain"), ("plain-at-meta", "meta")] {
        if named(paced) && !named(source) {
            anyhow::bail!("--only {paced} needs {source}: its rate is taken from that run");
        }
    }
    Ok(())
}

/// The plain step (`name`) paced at `rate`, which is `of`.
async fn paced(
    bench: &mut Bench,
    name: &str,
    store: &Store,
    rate: f64,
    of: RateOf,
) -> anyhow::Result<Run> {
    let mut run = bench
        .flowgate(name, store, 1, Shape::Step, None, Pace::Rate(rate.max(1.0)))
        .await?;
    run.rate_of = Some(of);
    Ok(run)
}

/// Whether `--only` selects `run` (everything, without it).
fn wanted(args: &Args, run: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| o == run)
}

/// One round of every run selected, in order; what it skips goes to `notes`.
async fn one_round(
    bench: &mut Bench,
    args: &Args,
    store: &Store,
    store_name: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    let wanted = |run: &str| wanted(args, run);

    if wanted("baseline") {
        runs.push(bench.baseline().await?);
    }
    if wanted("hop") {
        for kind in [hop::ClientKind::Tonic, hop::ClientKind::H2] {
            runs.push(bench.hop_baseline(kind).await?);
        }
    }

    let plain_name = format!("flowgate plain, {store_name}");
    if wanted("plain") {
        let plain_peak = bench
            .flowgate(&plain_name, store, 1, Shape::Step, None, Pace::ClosedLoop)
            .await?;
        let half_peak = plain_peak.requests_per_second / 2.0;
        runs.push(plain_peak);
        // Right after the peak it halves: this machine's speed can double or halve
        // within a minute, and half of an earlier peak may be all a slowed machine can
        // do (then the latency measured is a queue's).
        if wanted("rate") {
            runs.push(paced(bench, &plain_name, store, half_peak, RateOf::HalfPeak).await?);
        }
    }
    if wanted("journey") {
        runs.push(
            bench
                .flowgate(
                    &plain_name,
                    store,
                    1,
                    Shape::Journey,
                    None,
                    Pace::ClosedLoop,
                )
                .await?,
        );
    }

    match &args.postgres_url {
        _ if !wanted("postgres") => {}
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

    let meta_name = format!("flowgate Meta, {store_name}");
    let meta_rate = meta_max_rate(args, &bench.floor);
    let sealed_step =
        (wanted("meta") || wanted("pywa")).then(|| bench.seal_pool(Shape::Step, meta_rate));
    if wanted("meta") {
        let journey_pool = bench.seal_pool(Shape::Journey, meta_rate);
        let mut meta_step_rate = 0.0;
        for (shape, pool) in [
            (Shape::Step, sealed_step.clone()),
            (Shape::Journey, Some(journey_pool)),
        ] {
            let run = bench
                .flowgate(&meta_name, store, 1, shape, pool, Pace::ClosedLoop)
                .await?;
            if shape == Shape::Step {
                meta_step_rate = run.requests_per_second;
            }
            runs.push(run);
        }
        // The plain step at the rate the Meta step reached: what a request costs the
        // servers at that rate with no envelope (paced, so they idle between requests,
        // where the Meta step keeps them busy; a request costs more the less busy they are).
        if wanted("plain-at-meta") {
            runs.push(paced(bench, &plain_name, store, meta_step_rate, RateOf::MetaStep).await?);
        }
    }

    if args.smoke || args.no_pywa || !wanted("pywa") {
        notes.push("pywa skipped".into());
    } else if let Some(step_pool) = sealed_step {
        // pywa keeps no state, so it may take the same sealed requests.
        runs.push(bench.pywa(&args.venv, &args.pywa_app, step_pool).await?);
    }

    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(runs: &[&str]) -> Vec<String> {
        runs.iter().map(|run| (*run).to_owned()).collect()
    }

    #[test]
    fn a_paced_run_needs_the_run_its_rate_comes_from() {
        for fine in [
            &[][..],
            &["plain", "rate"][..],
            &["meta", "plain-at-meta"][..],
            &["meta"][..],
        ] {
            assert!(check_only(&only(fine)).is_ok(), "{fine:?}");
        }
        for (wrong, message) in [
            (&["rate"][..], "--only rate needs plain"),
            (
                &["plain", "plain-at-meta"][..],
                "--only plain-at-meta needs meta",
            ),
        ] {
            let error = check_only(&only(wrong)).unwrap_err().to_string();
            assert!(error.starts_with(message), "{wrong:?}: {error}");
        }
    }
}
