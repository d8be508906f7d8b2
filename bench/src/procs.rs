//! Process sampling from Linux `/proc`: CPU time (utime + stime) and resident memory
//! (`VmRSS`, and its peak `VmHWM`) of a server process and every process it started
//! (uvicorn's workers), or of this process's threads with a given name (the in-process
//! baseline, which shares the process with the load generator).

use std::fs;
use std::time::Duration;

/// What to sample.
#[derive(Debug, Clone)]
pub enum Watched {
    /// A process and all its descendants.
    Tree(u32),
    /// The threads of this process whose name starts with this prefix.
    Threads(&'static str),
}

impl Watched {
    /// CPU time used so far (user + system).
    pub fn cpu(&self) -> Duration {
        let ticks: u64 = match self {
            Watched::Tree(pid) => tree(*pid)
                .iter()
                .filter_map(|pid| stat_ticks(&format!("/proc/{pid}/stat")))
                .sum(),
            Watched::Threads(prefix) => fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .filter(|task| {
                    fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|name| name.starts_with(prefix))
                })
                .filter_map(|task| stat_ticks(&task.path().join("stat").to_string_lossy()))
                .sum(),
        };
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
    }

    /// Peak resident memory (`VmHWM`) in KiB, summed over the tree; `None` for threads,
    /// which share the whole process's memory.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM")
    }

    /// Resident memory now (`VmRSS`) in KiB, summed over the tree.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let Watched::Tree(pid) = self else {
            return None;
        };
        Some(
            tree(*pid)
                .iter()
                .filter_map(|pid| status_field(*pid, field))
                .sum(),
        )
    }
}

/// `pid` and its descendants, found through each process's parent id.
pub fn tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // After the command name: state is field 0, the parent id field 1.
            let parent = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    found
}

/// utime + stime, in clock ticks, from a `stat` file.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = fs::read_to_string(path).ok()?;
    // After the command name (which may hold spaces): utime is field 11, stime 12.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `sysconf(_SC_CLK_TCK)`, read once through `getconf` (the crate forbids `unsafe`);
/// 100 on every common Linux when that is not possible.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The open-file limit of this process (soft), from `/proc/self/limits`.
pub fn open_file_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let me = Watched::Tree(std::process::id());
        // Spinning must show up as CPU time (within a generous bound on a busy machine).
        let start = me.cpu();
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while me.cpu() < start + Duration::from_millis(30) {
            assert!(std::time::Instant::now() < give_up, "CPU time did not move");
        }
        assert!(me.rss_kib().unwrap() > 0);
        assert!(me.peak_rss_kib().unwrap() >= me.rss_kib().unwrap() / 2);
        assert!(open_file_limit().unwrap() > 0);
    }
}
