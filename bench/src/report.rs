//! The results: one record per run, printed as a table on stdout and written as JSON.

use std::path::Path;

use serde::Serialize;

use crate::floor::Floor;
use crate::workload::Shape;

/// Everything one `flowgate-bench` invocation measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub floor: Floor,
    pub runs: Vec<Run>,
    pub idle: Option<Idle>,
    /// Runs skipped and why, and anything else a reader of the numbers should know.
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub smoke: bool,
    pub seconds: f64,
    pub connections: usize,
    pub cpus: usize,
}

/// One timed run against one server set-up.
#[derive(Debug, Serialize)]
pub struct Run {
    pub name: String,
    pub workload: Shape,
    /// Requests per second asked for (open loop); `None`: as fast as answered.
    pub target_rate: Option<f64>,
    pub requests: u64,
    pub requests_per_second: f64,
    /// Whole journeys (or single steps) completed per second.
    pub jobs_per_second: f64,
    pub latency_ms: Latency,
    pub cpu_us_per_request: PerRole<f64>,
    /// Total CPU per request divided by one RSA-2048 decryption.
    pub cpu_to_rsa_floor: f64,
    pub peak_rss_kib: PerRole<u64>,
    pub non_2xx: u64,
    pub wrong_answers: u64,
    pub failed_connections: u64,
    /// A sealed pool ran out before the window ended (the run was cut short).
    pub pool_exhausted: bool,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
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

impl Run {
    /// Whether anything went wrong: a smoke run fails on it.
    pub fn has_errors(&self) -> bool {
        self.non_2xx + self.wrong_answers + self.failed_connections > 0 || self.requests == 0
    }
}

impl Report {
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    /// The table: one line per run, CPU in µs per request and as a multiple of the floor.
    pub fn table(&self) -> String {
        let mut out = format!(
            "RSA-2048 OAEP-SHA256 decrypt (aws-lc-rs, 1 core): {:.0} µs/op\n\
             {} keep-alive HTTPS connections, {} s per run, {} CPUs\n\n",
            self.floor.rsa_decrypt_us,
            self.settings.connections,
            self.settings.seconds,
            self.settings.cpus,
        );
        out += &format!(
            "{:<46} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>12} {:>7} {:>5}\n",
            "run",
            "req/s",
            "p50 ms",
            "p99 ms",
            "gw µs",
            "svc µs",
            "tot µs",
            "×RSA",
            "RSS MiB",
            "non2xx",
            "wrong"
        );
        for run in &self.runs {
            let name = match run.target_rate {
                Some(rate) => format!("{} @{rate:.0}/s", run.name),
                None => format!("{} ({})", run.name, run.workload.label()),
            };
            let cpu = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}"));
            let mib =
                |v: Option<u64>| v.map_or("—".into(), |v| format!("{:.0}", v as f64 / 1024.0));
            let rss = match (run.peak_rss_kib.gateway, run.peak_rss_kib.flow_service) {
                (Some(g), Some(s)) => format!("{}+{}", mib(Some(g)), mib(Some(s))),
                _ => mib(run.peak_rss_kib.total),
            };
            let exhausted = if run.pool_exhausted {
                " (pool ran out)"
            } else {
                ""
            };
            out += &format!(
                "{:<46} {:>8.0} {:>8.1} {:>8.1} {:>7} {:>7} {:>7} {:>6.2} {:>12} {:>7} {:>5}{exhausted}\n",
                name,
                run.requests_per_second,
                run.latency_ms.p50,
                run.latency_ms.p99,
                cpu(run.cpu_us_per_request.gateway),
                cpu(run.cpu_us_per_request.flow_service),
                cpu(run.cpu_us_per_request.total),
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
        for note in &self.notes {
            out += &format!("note: {note}\n");
        }
        out
    }
}
