//! Thread counts on the command line: `0` for one thread per CPU, or a count.

/// Most threads a setting takes: a bound on a typo, far above any machine's CPUs.
pub const MAX_THREADS: usize = 1024;

/// Reads a thread count, `0` (one per CPU) to [`MAX_THREADS`], as given: `0` stays
/// `0`, for the caller to count the CPUs with [`cpus`] or to read as it must.
pub fn thread_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n <= MAX_THREADS => Ok(n),
        _ => Err(format!(
            "expected a whole number from 0 (one per CPU) to {MAX_THREADS}"
        )),
    }
}

/// The CPUs this process may use, counted as tokio would count them but without
/// reading `TOKIO_WORKER_THREADS`: one variable of ours sets the threads, not two.
/// One where they cannot be read, as tokio does.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts() {
        for (text, count) in [("0", 0), ("1", 1), (" 3 ", 3), ("1024", 1024)] {
            assert_eq!(thread_count(text), Ok(count), "{text:?}");
        }
        for text in ["", "many", "-1", "1025", "2.5"] {
            let error = thread_count(text).unwrap_err();
            assert!(
                error.contains("0 (one per CPU) to 1024"),
                "{text:?}: {error}"
            );
        }
    }
}
