//! The results: one record per run, printed as a table on stdout and written as JSON.

use std::path::Path;

use serde::{Serialize, Serializer};

use crate::floor::{Bracket, Floor};
use crate::workload::Shape;

/// Everything one `flowgate-bench` invocation measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub settings: Settings,
    /// The floor measured at the start; each run has its own ([`Run::floor_us`]).
    pub floor: Floor,
    /// Each with its [`Run::problems`], so that tools reading the JSON (`scripts/pairs.py`)
    /// judge a run as this does.
    #[serde(serialize_with = "with_problems")]
    pub runs: Vec<Run>,
    pub idle: Option<Idle>,
    /// The targets, judged on this report's runs ([`Report::targets`]).
    pub targets: Vec<Verdict>,
    /// Runs skipped and why, and anything else a reader of the numbers should know.
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub smoke: bool,
    pub seconds: f64,
    pub rounds: u32,
    pub connections: usize,
    pub cpus: usize,
    /// Encrypted requests a second the sealed pools were made for.
    pub meta_max_rate: f64,
}

/// The rate a paced run was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateOf {
    /// Half of the plain step's peak, measured just before: the latency target's run.
    HalfPeak,
    /// The rate the Meta step reached, just before, with the plain step: what a request
    /// costs the servers at that rate with no envelope.
    MetaStep,
}

/// What was run, for telling the runs apart when judging the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The in-process no-hop handler.
    Baseline,
    /// A bare gRPC hop in process.
    Hop,
    Flowgate {
        meta: bool,
        store: &'static str,
        replicas: usize,
    },
    Pywa,
}

/// One timed run against one server set-up.
#[derive(Debug, Serialize)]
pub struct Run {
    pub name: String,
    /// Which round of `--rounds` (from 1).
    pub round: usize,
    pub kind: Kind,
    pub workload: Shape,
    /// Requests per second asked for (open loop); `None`: as fast as answered.
    pub target_rate: Option<f64>,
    /// Which rate `target_rate` is.
    pub rate_of: Option<RateOf>,
    pub requests: u64,
    pub requests_per_second: f64,
    /// Whole journeys (or single steps) completed per second.
    pub jobs_per_second: f64,
    pub latency_ms: Latency,
    /// Open loop: the load generator's own lateness, which `latency_ms` includes.
    pub pacing: Option<Pacing>,
    pub cpu_us_per_request: PerRole<f64>,
    /// The floor measured just before and just after the timed window.
    pub floor_us: Bracket,
    /// Total CPU per request divided by the mean of `floor_us`.
    pub cpu_to_rsa_floor: f64,
    pub peak_rss_kib: PerRole<u64>,
    pub non_2xx: u64,
    pub wrong_answers: u64,
    pub failed_connections: u64,
    /// A sealed pool ran out before the window ended (the run was cut short).
    pub pool_exhausted: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// How an open-loop run kept its schedule. A request's latency runs from its scheduled
/// time, so that an answer that comes late also counts against the requests it holds
/// up; but the load generator shares the machine's cores and its timer ticks in
/// milliseconds, so it sends some requests late on its own, and that is in the
/// latency too.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pacing {
    /// How late the generator sent the requests scheduled ahead of the moment a
    /// connection took them, at p50 and p99; `None` when none was.
    pub late_ms: Option<Latency>,
    /// Requests already due when a connection was free to take them (every connection
    /// busy), as a share of all requests.
    pub behind_share: f64,
}

/// A figure for the gateway and the flow service apart, and in all. A server that is
/// one process set (pywa, the in-process baseline) has only the total.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PerRole<T> {
    pub gateway: Option<T>,
    pub flow_service: Option<T>,
    pub total: Option<T>,
}

/// The gateway's memory with no load, and holding many idle keep-alive TLS connections.
#[derive(Debug, Serialize)]
pub struct Idle {
    pub gateway_rss_idle_kib: u64,
    pub connections_requested: usize,
    pub connections_held: usize,
    pub gateway_rss_holding_kib: u64,
    pub kib_per_connection: f64,
}

/// A run whose floor moved more than this fraction of its mean between the two
/// measurements is marked with both: the machine's speed changed during it, and its ratio
/// is less certain.
const FLOOR_DRIFT_MARK: f64 = 0.15;

impl Run {
    /// Whether anything went wrong (an error answer, a failed connection, no request
    /// at all): a smoke run fails on it.
    pub fn has_errors(&self) -> bool {
        !self.errors().is_empty()
    }

    /// What makes this run no measure: its errors ([`Run::has_errors`]), and a sealed
    /// pool that ran out (the run was cut short). Empty for a good run.
    pub fn problems(&self) -> Vec<String> {
        let mut found = self.errors();
        if self.pool_exhausted {
            found.push("its sealed requests ran out".to_owned());
        }
        found
    }

    fn errors(&self) -> Vec<String> {
        let mut found = Vec::new();
        if self.non_2xx + self.wrong_answers > 0 {
            found.push(format!(
                "{} non-2xx and {} wrong answers",
                self.non_2xx, self.wrong_answers
            ));
        }
        if self.failed_connections > 0 {
            found.push(format!("failed connections: {}", self.failed_connections));
        }
        if self.requests == 0 {
            found.push("no requests".to_owned());
        }
        found
    }
}

/// The runs, each with its `problems` beside its fields.
fn with_problems<S: Serializer>(runs: &[Run], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Judged<'a> {
        #[serde(flatten)]
        run: &'a Run,
        problems: Vec<String>,
    }
    serializer.collect_seq(runs.iter().map(|run| Judged {
        run,
        problems: run.problems(),
    }))
}

impl Report {
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    /// `name`, and after it the run's round (` #2`) when there are several.
    fn in_round(&self, mut name: String, run: &Run) -> String {
        if self.settings.rounds > 1 {
            name += &format!(" #{}", run.round);
        }
        name
    }

    /// The table: one line per run, CPU in µs per request and as a multiple of the floor.
    pub fn table(&self) -> String {
        let mut out = format!(
            "RSA-2048 OAEP-SHA256 decrypt (aws-lc-rs, 1 core): {:.0} µs/op at the start; \
             each run's ×RSA is to the mean of the floor measured just before and just \
             after it (floor µs)\n\
             {} keep-alive HTTPS connections, {} s per run{}, {} CPUs\n\n",
            self.floor.rsa_decrypt_us,
            self.settings.connections,
            self.settings.seconds,
            match self.settings.rounds {
                1 => String::new(),
                rounds => format!(", {rounds} rounds (#)"),
            },
            self.settings.cpus,
        );
        out += &format!(
            "{:<50} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>8} {:>6} {:>12} {:>7} {:>5}\n",
            "run",
            "req/s",
            "p50 ms",
            "p99 ms",
            "gw µs",
            "svc µs",
            "tot µs",
            "floor µs",
            "×RSA",
            "RSS MiB",
            "non2xx",
            "wrong"
        );
        for run in &self.runs {
            let name = match (run.target_rate, run.rate_of) {
                (Some(rate), Some(RateOf::MetaStep)) => {
                    format!("{} @{rate:.0}/s (Meta's)", run.name)
                }
                (Some(rate), _) => format!("{} @{rate:.0}/s", run.name),
                (None, _) => format!("{} ({})", run.name, run.workload.label()),
            };
            let name = self.in_round(name, run);
            let cpu = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}"));
            let mib =
                |v: Option<u64>| v.map_or("—".into(), |v| format!("{:.0}", v as f64 / 1024.0));
            let rss = match (run.peak_rss_kib.gateway, run.peak_rss_kib.flow_service) {
                (Some(g), Some(s)) => format!("{}+{}", mib(Some(g)), mib(Some(s))),
                _ => mib(run.peak_rss_kib.total),
            };
            let mut marks = String::new();
            if run.pool_exhausted {
                marks += " (pool ran out)";
            }
            if run.floor_us.drift() > FLOOR_DRIFT_MARK {
                marks += &format!(
                    " (floor {:.0} → {:.0} µs)",
                    run.floor_us.before_us, run.floor_us.after_us
                );
            }
            out += &format!(
                "{:<50} {:>8.0} {:>8.1} {:>8.1} {:>7} {:>7} {:>7} {:>8.0} {:>6.2} {:>12} {:>7} {:>5}{marks}\n",
                name,
                run.requests_per_second,
                run.latency_ms.p50,
                run.latency_ms.p99,
                cpu(run.cpu_us_per_request.gateway),
                cpu(run.cpu_us_per_request.flow_service),
                cpu(run.cpu_us_per_request.total),
                run.floor_us.mean_us(),
                run.cpu_to_rsa_floor,
                rss,
                run.non_2xx,
                run.wrong_answers + run.failed_connections,
            );
        }
        if let Some(idle) = &self.idle {
            out += &format!(
                "\ngateway RSS idle: {:.1} MiB; holding {} idle keep-alive TLS connections \
                 (of {} asked): {:.1} MiB ({:.1} KiB per connection)\n",
                idle.gateway_rss_idle_kib as f64 / 1024.0,
                idle.connections_held,
                idle.connections_requested,
                idle.gateway_rss_holding_kib as f64 / 1024.0,
                idle.kib_per_connection,
            );
        }
        if !self.targets.is_empty() {
            out += "\ntargets:\n";
        }
        for verdict in &self.targets {
            let mark = match verdict.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "—",
            };
            out += &format!(
                "  {:<56} {:<8} {}\n",
                verdict.target,
                mark,
                verdict
                    .measured
                    .as_deref()
                    .unwrap_or("not measured in this run")
            );
        }
        for run in &self.runs {
            if let (Some(rate), Some(pacing)) = (run.target_rate, run.pacing) {
                let name = self.in_round(run.name.clone(), run);
                out += &format!("note: {}\n", pacing.describe(&name, rate));
            }
        }
        for note in &self.notes {
            out += &format!("note: {note}\n");
        }
        out
    }
}

impl Pacing {
    /// One line on how the run at `rate` kept its schedule.
    fn describe(&self, name: &str, rate: f64) -> String {
        let late = match self.late_ms {
            Some(Latency { p50, p99 }) => {
                format!("sent {p50:.1} ms late at p50 and {p99:.1} ms at p99 by the load generator")
            }
            None => "no request scheduled ahead".to_owned(),
        };
        format!(
            "{name} @{rate:.0}/s: {late}, which its latencies include; {:.1} % of requests \
             due before a connection was free",
            self.behind_share * 100.0
        )
    }
}

/// One target of the benchmark's issue, judged on one report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub target: &'static str,
    /// The value judged (with several rounds, their median), in the target's unit;
    /// `None` when not measured.
    pub value: Option<f64>,
    /// Each round's value, in order (one for a target measured once).
    pub per_round: Vec<f64>,
    /// The target's limit: `value` must be at most it, or for pywa's rate at least it.
    pub limit: f64,
    /// `value` and what it was computed from, as the table shows it; `None`: the runs
    /// it needs were not part of this report.
    pub measured: Option<String>,
    pub met: Option<bool>,
}

impl Verdict {
    fn not_measured(target: &'static str, limit: f64) -> Self {
        Self {
            target,
            value: None,
            per_round: Vec::new(),
            limit,
            measured: None,
            met: None,
        }
    }

    fn once(target: &'static str, bound: Bound, value: f64, measured: String) -> Self {
        Self {
            target,
            value: Some(value),
            per_round: vec![value],
            limit: bound.limit(),
            measured: Some(measured),
            met: Some(bound.holds(value)),
        }
    }
}

/// Which side of its limit a target's value must be on.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    fn limit(self) -> f64 {
        match self {
            Bound::AtMost(limit) | Bound::AtLeast(limit) => limit,
        }
    }

    fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtMost(limit) => value <= limit,
            Bound::AtLeast(limit) => value >= limit,
        }
    }
}

/// One round's value for a target, and how it was computed.
struct Reading {
    value: f64,
    detail: String,
}

impl Reading {
    fn ratio(value: f64) -> Self {
        Self {
            value,
            detail: String::new(),
        }
    }
}

/// What a per-round target's value is shown in.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// A ratio.
    Times,
    Ms,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Unit::Times => format!("{value:.2} ×"),
            Unit::Ms => format!("{value:.1} ms"),
        }
    }
}

/// A target judged per round: its name, its limit, its unit, and its value in one
/// round's runs.
type PerRound = (&'static str, Bound, Unit, fn(&[&Run]) -> Option<Reading>);

/// The targets, as the issue states them (ratios within one run; plain and Meta on the
/// default store, SQLite, with one flow service). A ratio between two runs compares
/// each run's CPU in units of its own floor, since the machine's speed drifts between
/// them.
const PER_ROUND: [PerRound; 8] = [
    (
        "Meta step: CPU ≤ 1.5 × floor",
        Bound::AtMost(1.5),
        Unit::Times,
        |runs| floor_ratio(flowgate(runs, true, Shape::Step)?),
    ),
    (
        "Meta journey: CPU ≤ 1.5 × floor",
        Bound::AtMost(1.5),
        Unit::Times,
        |runs| floor_ratio(flowgate(runs, true, Shape::Journey)?),
    ),
    (
        "plain step: CPU ≤ 0.5 × floor",
        Bound::AtMost(0.5),
        Unit::Times,
        |runs| floor_ratio(flowgate(runs, false, Shape::Step)?),
    ),
    (
        "plain journey: CPU ≤ 0.5 × floor",
        Bound::AtMost(0.5),
        Unit::Times,
        |runs| floor_ratio(flowgate(runs, false, Shape::Journey)?),
    ),
    (
        "gateway share: ≤ 2.5 × the no-hop handler",
        Bound::AtMost(2.5),
        Unit::Times,
        |runs| {
            let plain = flowgate(runs, false, Shape::Step)?;
            let baseline = of_kind(runs, Kind::Baseline)?;
            let gateway = plain.cpu_us_per_request.gateway?;
            let base = baseline.cpu_us_per_request.total?;
            let (plain_floor, base_floor) = (plain.floor_us.mean_us(), baseline.floor_us.mean_us());
            Some(Reading {
                value: (gateway / plain_floor) / (base / base_floor).max(f64::MIN_POSITIVE),
                detail: format!(
                    "{gateway:.0} µs at floor {plain_floor:.0}; {base:.0} µs at floor {base_floor:.0}"
                ),
            })
        },
    ),
    (
        "pywa: ≥ 4 × its req/s on the encrypted step",
        Bound::AtLeast(4.0),
        Unit::Times,
        |runs| {
            let (meta, pywa) = (
                flowgate(runs, true, Shape::Step)?,
                of_kind(runs, Kind::Pywa)?,
            );
            Some(Reading {
                value: meta.requests_per_second / pywa.requests_per_second.max(f64::MIN_POSITIVE),
                detail: cut_short(meta).into(),
            })
        },
    ),
    (
        "pywa: ≤ ⅓ of its CPU per request",
        Bound::AtMost(1.0 / 3.0),
        Unit::Times,
        |runs| {
            let (meta, pywa) = (
                flowgate(runs, true, Shape::Step)?,
                of_kind(runs, Kind::Pywa)?,
            );
            Some(Reading {
                value: meta.cpu_to_rsa_floor / pywa.cpu_to_rsa_floor.max(f64::MIN_POSITIVE),
                detail: format!(
                    "{:.2} against {:.2} × floor",
                    meta.cpu_to_rsa_floor, pywa.cpu_to_rsa_floor
                ),
            })
        },
    ),
    (
        "p99 ≤ 10 ms at half of peak",
        Bound::AtMost(10.0),
        Unit::Ms,
        |runs| {
            let run = runs
                .iter()
                .find(|run| run.rate_of == Some(RateOf::HalfPeak) && run.kind == judged(false))?;
            Some(Reading::ratio(run.latency_ms.p99))
        },
    ),
];

const ERRORS: &str = "no non-2xx (or wrong) answers in any run";
const IDLE: &str = "gateway RSS ≤ 30 MiB idle";
const HOLDING: &str = "gateway RSS ≤ 150 MiB holding 10,000 idle connections";
const IDLE_RSS_MAX_MIB: f64 = 30.0;
const HOLDING_RSS_MAX_MIB: f64 = 150.0;
const HOLDING_CONNECTIONS: usize = 10_000;

/// The flowgate set-up the targets are for: plain or Meta, on the default store
/// (SQLite), with one flow service.
fn judged(meta: bool) -> Kind {
    Kind::Flowgate {
        meta,
        store: "sqlite",
        replicas: 1,
    }
}

/// The closed-loop run of `shape` on the [`judged`] set-up.
fn flowgate<'a>(runs: &[&'a Run], meta: bool, shape: Shape) -> Option<&'a Run> {
    runs.iter()
        .find(|run| run.kind == judged(meta) && run.workload == shape && run.target_rate.is_none())
        .copied()
}

fn of_kind<'a>(runs: &[&'a Run], kind: Kind) -> Option<&'a Run> {
    runs.iter().find(|run| run.kind == kind).copied()
}

fn floor_ratio(run: &Run) -> Option<Reading> {
    Some(Reading {
        value: run.cpu_to_rsa_floor,
        detail: cut_short(run).into(),
    })
}

/// Says so when a run's sealed pool ran out before its window ended.
fn cut_short(run: &Run) -> &'static str {
    if run.pool_exhausted {
        "pool ran out"
    } else {
        ""
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

impl Report {
    /// Judges every target on `runs` (of every round) and `idle`. A target measured in
    /// several rounds is judged on the median of its rounds' values; the errors target
    /// on every run of every round.
    pub fn targets(runs: &[Run], idle: Option<&Idle>) -> Vec<Verdict> {
        let mut rounds: Vec<usize> = runs.iter().map(|run| run.round).collect();
        rounds.dedup();
        let by_round: Vec<Vec<&Run>> = rounds
            .iter()
            .map(|round| runs.iter().filter(|run| run.round == *round).collect())
            .collect();

        let mut verdicts: Vec<Verdict> = PER_ROUND
            .iter()
            .map(|(target, bound, unit, read)| {
                let readings: Vec<Reading> =
                    by_round.iter().filter_map(|runs| read(runs)).collect();
                let per_round: Vec<f64> = readings.iter().map(|r| r.value).collect();
                let (value, measured) = match readings.as_slice() {
                    [] => return Verdict::not_measured(target, bound.limit()),
                    [one] => (one.value, format_reading(one, *unit)),
                    many => {
                        let middle = median(&mut per_round.clone());
                        let each: Vec<String> =
                            many.iter().map(|r| format_reading(r, *unit)).collect();
                        (
                            middle,
                            format!(
                                "median {} of {}: {}",
                                unit.show(middle),
                                many.len(),
                                each.join(", ")
                            ),
                        )
                    }
                };
                Verdict {
                    target,
                    value: Some(value),
                    per_round,
                    limit: bound.limit(),
                    measured: Some(measured),
                    met: Some(bound.holds(value)),
                }
            })
            .collect();

        verdicts.push(if runs.is_empty() {
            Verdict::not_measured(ERRORS, 0.0)
        } else {
            // A run that answered nothing counts too, as it does for the smoke.
            let bad: u64 = runs
                .iter()
                .map(|run| {
                    run.non_2xx
                        + run.wrong_answers
                        + run.failed_connections
                        + u64::from(run.requests == 0)
                })
                .sum();
            Verdict::once(ERRORS, Bound::AtMost(0.0), bad as f64, bad.to_string())
        });

        match idle {
            Some(idle) => {
                let mib = |kib: u64| kib as f64 / 1024.0;
                let (idle_mib, holding_mib) = (
                    mib(idle.gateway_rss_idle_kib),
                    mib(idle.gateway_rss_holding_kib),
                );
                verdicts.push(Verdict::once(
                    IDLE,
                    Bound::AtMost(IDLE_RSS_MAX_MIB),
                    idle_mib,
                    format!("{idle_mib:.1} MiB"),
                ));
                verdicts.push(if idle.connections_held >= HOLDING_CONNECTIONS {
                    Verdict::once(
                        HOLDING,
                        Bound::AtMost(HOLDING_RSS_MAX_MIB),
                        holding_mib,
                        format!("{holding_mib:.1} MiB"),
                    )
                } else {
                    Verdict {
                        measured: Some(format!("only {} connections held", idle.connections_held)),
                        ..Verdict::not_measured(HOLDING, HOLDING_RSS_MAX_MIB)
                    }
                });
            }
            None => verdicts.extend([
                Verdict::not_measured(IDLE, IDLE_RSS_MAX_MIB),
                Verdict::not_measured(HOLDING, HOLDING_RSS_MAX_MIB),
            ]),
        }
        verdicts
    }
}

fn format_reading(reading: &Reading, unit: Unit) -> String {
    let value = unit.show(reading.value);
    if reading.detail.is_empty() {
        value
    } else {
        format!("{value} ({})", reading.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: Kind, shape: Shape, total_us: f64, floor_us: f64) -> Run {
        Run {
            name: "run".into(),
            round: 1,
            kind,
            workload: shape,
            target_rate: None,
            rate_of: None,
            requests: 1000,
            requests_per_second: 1000.0,
            jobs_per_second: 1000.0,
            latency_ms: Latency { p50: 1.0, p99: 2.0 },
            pacing: None,
            cpu_us_per_request: PerRole {
                gateway: None,
                flow_service: None,
                total: Some(total_us),
            },
            floor_us: Bracket {
                before_us: floor_us,
                after_us: floor_us,
            },
            cpu_to_rsa_floor: total_us / floor_us,
            peak_rss_kib: PerRole::default(),
            non_2xx: 0,
            wrong_answers: 0,
            failed_connections: 0,
            pool_exhausted: false,
        }
    }

    fn flowgate(meta: bool, store: &'static str) -> Kind {
        Kind::Flowgate {
            meta,
            store,
            replicas: 1,
        }
    }

    fn verdict<'a>(verdicts: &'a [Verdict], prefix: &str) -> &'a Verdict {
        verdicts
            .iter()
            .find(|v| v.target.starts_with(prefix))
            .unwrap_or_else(|| panic!("no target {prefix}"))
    }

    #[test]
    fn a_paced_run_says_how_it_kept_its_schedule() {
        let mut pacing = Pacing {
            late_ms: Some(Latency {
                p50: 0.64,
                p99: 1.26,
            }),
            behind_share: 0.004,
        };
        assert_eq!(
            pacing.describe("flowgate plain, SQLite", 4101.2),
            "flowgate plain, SQLite @4101/s: sent 0.6 ms late at p50 and 1.3 ms at p99 by \
             the load generator, which its latencies include; 0.4 % of requests due before \
             a connection was free"
        );
        (pacing.late_ms, pacing.behind_share) = (None, 1.0);
        assert!(
            pacing
                .describe("run", 10.0)
                .starts_with("run @10/s: no request scheduled ahead, ")
        );
        assert!(
            pacing
                .describe("run", 10.0)
                .ends_with("100.0 % of requests due before a connection was free")
        );
    }

    #[test]
    fn each_target_is_judged_on_its_own_runs() {
        let mut plain = run(flowgate(false, "sqlite"), Shape::Step, 200.0, 500.0);
        plain.cpu_us_per_request.gateway = Some(100.0);
        let mut meta = run(flowgate(true, "sqlite"), Shape::Step, 800.0, 500.0);
        meta.requests_per_second = 2000.0;
        let mut half_peak = run(flowgate(false, "sqlite"), Shape::Step, 300.0, 500.0);
        half_peak.target_rate = Some(500.0);
        half_peak.rate_of = Some(RateOf::HalfPeak);
        half_peak.latency_ms.p99 = 12.0;
        // The plain step at the Meta step's rate: no target reads it.
        let mut at_meta_rate = run(flowgate(false, "sqlite"), Shape::Step, 400.0, 500.0);
        at_meta_rate.target_rate = Some(2000.0);
        at_meta_rate.rate_of = Some(RateOf::MetaStep);
        at_meta_rate.latency_ms.p99 = 3.0;
        let runs = vec![
            // First, so that a target reading the closed-loop run or the latency
            // target reading the wrong paced run cannot take them.
            at_meta_rate,
            half_peak,
            // The baseline ran while the machine was twice as fast: 20 µs at a floor of
            // 250 µs is 40 µs at the plain run's floor, so the share is 2.5, not 5.
            run(Kind::Baseline, Shape::Step, 20.0, 250.0),
            plain,
            run(flowgate(false, "sqlite"), Shape::Journey, 300.0, 500.0),
            // Only SQLite with one flow service counts for the plain targets.
            run(flowgate(false, "postgres"), Shape::Journey, 100.0, 500.0),
            meta,
            run(flowgate(true, "sqlite"), Shape::Journey, 700.0, 500.0),
            run(Kind::Pywa, Shape::Step, 1000.0, 500.0),
        ];
        let verdicts = Report::targets(&runs, None);

        let meta_step = verdict(&verdicts, "Meta step");
        assert_eq!(meta_step.met, Some(false));
        assert_eq!(meta_step.measured.as_deref(), Some("1.60 ×"));
        assert_eq!(
            (meta_step.value, meta_step.limit, &meta_step.per_round[..]),
            (Some(1.6), 1.5, &[1.6][..])
        );
        assert_eq!(verdict(&verdicts, "Meta journey").met, Some(true));
        assert_eq!(verdict(&verdicts, "plain step").met, Some(true));
        let journey = verdict(&verdicts, "plain journey");
        assert_eq!(
            (journey.met, journey.measured.as_deref()),
            (Some(false), Some("0.60 ×"))
        );
        let share = verdict(&verdicts, "gateway share");
        assert_eq!(share.met, Some(true), "{share:?}");
        assert!(share.measured.as_deref().unwrap().starts_with("2.50 ×"));
        assert_eq!(
            verdict(&verdicts, "pywa: ≥ 4").measured.as_deref(),
            Some("2.00 ×")
        );
        assert_eq!(verdict(&verdicts, "pywa: ≥ 4").met, Some(false));
        assert_eq!(verdict(&verdicts, "pywa: ≤").met, Some(false));
        let p99 = verdict(&verdicts, "p99");
        assert_eq!((p99.met, p99.value), (Some(false), Some(12.0)));
        assert_eq!(verdict(&verdicts, "no non-2xx").met, Some(true));
        assert_eq!(verdict(&verdicts, "gateway RSS ≤ 30").met, None);
    }

    #[test]
    fn missing_runs_and_too_few_connections_are_not_judged() {
        let verdicts = Report::targets(
            &[run(flowgate(false, "memory"), Shape::Step, 50.0, 500.0)],
            Some(&Idle {
                gateway_rss_idle_kib: 12 * 1024,
                connections_requested: 10_000,
                connections_held: 800,
                gateway_rss_holding_kib: 20 * 1024,
                kib_per_connection: 10.0,
            }),
        );
        // The memory store is not the default store: no plain verdict from it.
        assert_eq!(verdict(&verdicts, "plain step").met, None);
        assert_eq!(verdict(&verdicts, "gateway share").met, None);
        assert_eq!(verdict(&verdicts, "gateway RSS ≤ 30").met, Some(true));
        let holding = verdict(&verdicts, "gateway RSS ≤ 150");
        assert_eq!(holding.met, None);
        assert_eq!(
            holding.measured.as_deref(),
            Some("only 800 connections held")
        );
    }

    #[test]
    fn an_error_answer_anywhere_fails_the_errors_target() {
        let mut bad = run(flowgate(false, "postgres"), Shape::Step, 50.0, 500.0);
        bad.non_2xx = 3;
        let mut silent = run(Kind::Pywa, Shape::Step, 50.0, 500.0);
        silent.requests = 0;
        let good = || run(Kind::Baseline, Shape::Step, 50.0, 500.0);
        let verdicts = Report::targets(&[good(), bad, silent], None);
        let errors = verdict(&verdicts, "no non-2xx");
        assert_eq!(
            (errors.met, errors.measured.as_deref()),
            (Some(false), Some("4"))
        );
        let verdicts = Report::targets(&[good()], None);
        assert_eq!(verdict(&verdicts, "no non-2xx").met, Some(true));
    }

    #[test]
    fn a_run_cut_short_says_so() {
        let mut meta = run(flowgate(true, "sqlite"), Shape::Step, 700.0, 500.0);
        meta.pool_exhausted = true;
        let verdicts = Report::targets(&[meta], None);
        assert_eq!(
            verdict(&verdicts, "Meta step").measured.as_deref(),
            Some("1.40 × (pool ran out)")
        );
    }

    #[test]
    fn each_run_is_written_with_its_problems() {
        let good = run(Kind::Baseline, Shape::Step, 50.0, 500.0);
        let mut answered_badly = run(flowgate(false, "sqlite"), Shape::Step, 50.0, 500.0);
        answered_badly.non_2xx = 3;
        answered_badly.failed_connections = 1;
        let mut wrong = run(flowgate(false, "sqlite"), Shape::Journey, 50.0, 500.0);
        wrong.wrong_answers = 2;
        let mut silent = run(Kind::Pywa, Shape::Step, 50.0, 500.0);
        silent.requests = 0;
        let mut cut_short = run(flowgate(true, "sqlite"), Shape::Step, 700.0, 500.0);
        cut_short.pool_exhausted = true;
        // A pool run out makes no measure, but is no error answer: a smoke run passes.
        let errors: Vec<bool> = [&good, &answered_badly, &wrong, &silent, &cut_short]
            .iter()
            .map(|run| run.has_errors())
            .collect();
        assert_eq!(errors, [false, true, true, true, false]);
        let report = Report {
            settings: Settings {
                smoke: false,
                seconds: 1.0,
                rounds: 1,
                connections: 1,
                cpus: 2,
                meta_max_rate: 1.0,
            },
            floor: Floor {
                rsa_decrypt_us: 500.0,
                operations: 1,
            },
            runs: vec![good, answered_badly, wrong, silent, cut_short],
            idle: None,
            targets: Vec::new(),
            notes: Vec::new(),
        };
        let json = serde_json::to_value(&report).unwrap();
        let problems: Vec<&serde_json::Value> = json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| &run["problems"])
            .collect();
        assert_eq!(
            problems,
            [
                &serde_json::json!([]),
                &serde_json::json!(["3 non-2xx and 0 wrong answers", "failed connections: 1"]),
                &serde_json::json!(["0 non-2xx and 2 wrong answers"]),
                &serde_json::json!(["no requests"]),
                &serde_json::json!(["its sealed requests ran out"]),
            ]
        );
        // The run's own fields are still there, beside it.
        assert_eq!(json["runs"][4]["pool_exhausted"], true);
        assert_eq!(json["runs"][1]["non_2xx"], 3);
    }

    #[test]
    fn several_rounds_are_judged_on_their_median() {
        let mut runs = Vec::new();
        for (round, total) in [(1, 800.0), (2, 700.0), (3, 760.0)] {
            let mut meta = run(flowgate(true, "sqlite"), Shape::Step, total, 500.0);
            meta.round = round;
            runs.push(meta);
        }
        let verdicts = Report::targets(&runs, None);
        let meta_step = verdict(&verdicts, "Meta step");
        // 1.60, 1.40 and 1.52: the median, 1.52, is over the line.
        assert_eq!(meta_step.met, Some(false));
        assert_eq!(
            meta_step.measured.as_deref(),
            Some("median 1.52 × of 3: 1.60 ×, 1.40 ×, 1.52 ×")
        );
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
