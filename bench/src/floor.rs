//! The floor: one RSA-2048 OAEP-SHA256 decryption with aws-lc-rs (the library the
//! gateway uses), timed on one thread. Every encrypted request costs at least this much
//! CPU, and it scales with the machine, so each run's CPU per request is also reported as
//! a multiple of it.
//!
//! The time is the thread's CPU time (`/proc/thread-self/schedstat`), like the servers'
//! CPU per request, so a moment the thread waits for a core is not counted; where that
//! file cannot be read, wall-clock time.
//!
//! A shared virtual machine's speed drifts: on the 2-core machine the README's numbers
//! come from, `openssl speed rsa2048` read 386–607 µs a decryption within one minute. A
//! floor measured once, minutes before a run, can be off by half, so every run is
//! bracketed: the floor is measured just before its timed window and just after it
//! ([`Bracket`]), and the run is compared with the mean of the two.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};
use serde::Serialize;

/// The floor as measured once.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    /// Microseconds of one decryption on one core.
    pub rsa_decrypt_us: f64,
    pub operations: u64,
}

/// The floor measured just before a run's timed window and just after it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bracket {
    pub before_us: f64,
    pub after_us: f64,
}

impl Bracket {
    /// The floor a run is compared with: the mean of the two.
    pub fn mean_us(&self) -> f64 {
        (self.before_us + self.after_us) / 2.0
    }

    /// How far apart the two are, as a fraction of their mean.
    pub fn drift(&self) -> f64 {
        (self.after_us - self.before_us).abs() / self.mean_us()
    }
}

/// A key and a wrapped AES key, made once, to time decryptions with.
pub struct Meter {
    private: OaepPrivateDecryptingKey,
    wrapped: Vec<u8>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter(RSA-2048)")
    }
}

impl Meter {
    pub fn new() -> anyhow::Result<Self> {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(unspecified)?;
        let public = OaepPublicEncryptingKey::new(private.public_key()).map_err(unspecified)?;
        let private = OaepPrivateDecryptingKey::new(private).map_err(unspecified)?;
        let mut wrapped = vec![0u8; public.ciphertext_size()];
        let wrapped = public
            .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 16], &mut wrapped, None)
            .map_err(unspecified)?
            .to_vec();
        Ok(Self { private, wrapped })
    }

    /// Decrypts the wrapped AES key over and over for about `duration` (at least ten
    /// times), on the calling thread.
    pub fn measure(&self, duration: Duration) -> anyhow::Result<Floor> {
        let mut plain = vec![0u8; self.private.min_output_size()];
        let start = Instant::now();
        let cpu_start = thread_cpu();
        let mut operations = 0u64;
        while start.elapsed() < duration || operations < 10 {
            let key = self
                .private
                .decrypt(&OAEP_SHA256_MGF1SHA256, &self.wrapped, &mut plain, None)
                .map_err(unspecified)?;
            std::hint::black_box(key);
            operations += 1;
        }
        let spent = match (cpu_start, thread_cpu()) {
            (Some(from), Some(to)) if to > from => to - from,
            // No scheduler statistics in this kernel (the file reads all zeros).
            _ => start.elapsed(),
        };
        Ok(Floor {
            rsa_decrypt_us: spent.as_secs_f64() * 1e6 / operations as f64,
            operations,
        })
    }
}

/// The calling thread's time on a CPU so far: the first field of its `schedstat`, in
/// nanoseconds.
fn thread_cpu() -> Option<Duration> {
    // The running thread's figure is brought up to date at a context switch or a
    // scheduler tick (every few ms); yielding brings it up to date now.
    std::thread::yield_now();
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn unspecified(_: aws_lc_rs::error::Unspecified) -> anyhow::Error {
    anyhow!("aws-lc-rs RSA failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bracket_compares_with_the_mean_and_reports_its_spread() {
        let bracket = Bracket {
            before_us: 400.0,
            after_us: 600.0,
        };
        assert_eq!(bracket.mean_us(), 500.0);
        assert!((bracket.drift() - 0.4).abs() < 1e-9);
    }

    #[test]
    fn the_meter_times_real_decryptions() {
        let floor = Meter::new().unwrap().measure(Duration::ZERO).unwrap();
        assert_eq!(floor.operations, 10);
        assert!(floor.rsa_decrypt_us > 0.0);
    }

    #[test]
    fn the_thread_cpu_time_grows_with_work() {
        let Some(from) = thread_cpu() else {
            return; // no /proc here: the meter falls back to wall-clock time
        };
        // Spin until the thread has been on a CPU for 20 ms; one thread cannot have
        // spent more CPU than the time that went by.
        let start = Instant::now();
        let spent = loop {
            let spent = thread_cpu().unwrap().saturating_sub(from);
            if spent >= Duration::from_millis(20) {
                break spent;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "CPU time stuck at {spent:?}"
            );
        };
        assert!(
            spent <= start.elapsed() + Duration::from_millis(1),
            "{spent:?}"
        );
    }
}
