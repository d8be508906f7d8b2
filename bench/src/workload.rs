//! What is sent: the sign-up flow's requests, each with a fresh flow token so no stored
//! outcome can answer it, in plain JSON or sealed as WhatsApp does, and what a right
//! answer looks like.
//!
//! A *job* is what one connection does before taking the next: one request (the
//! sign-up step, `data_exchange` on `WELCOME_SCREEN` with a valid email) or the whole
//! sign-up journey of one token (`INIT`, the step, the completing `data_exchange` on
//! `CONFIRMATION_SCREEN`). Plain jobs are built on demand (formatting a string costs
//! nothing next to a request); sealed jobs are built before the timed window, so the
//! load generator's own RSA work does not compete with the server's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use crate::seal::{Opener, Sealer};

/// The welcome text of the `signup` flow (`flow-service/src/flows/signup.rs`).
pub const WELCOME_MESSAGE: &str = "Welcome! Enter your email address to sign up.";

/// One HTTP request and how to check its answer.
#[derive(Debug, Clone)]
pub struct Step {
    pub body: Bytes,
    /// `X-Hub-Signature-256`, for sealed requests.
    pub signature: Option<String>,
    /// Opens the encrypted answer of a sealed request.
    pub opener: Option<Opener>,
    pub expect: Expect,
}

/// A right answer: this screen, and this value at this JSON pointer.
#[derive(Debug, Clone)]
pub struct Expect {
    pub screen: &'static str,
    pub pointer: &'static str,
    pub value: String,
}

impl Expect {
    /// Whether a decrypted (or plain) answer body is the expected one.
    pub fn matches(&self, answer: &[u8]) -> bool {
        let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
            return false;
        };
        answer["screen"] == self.screen
            && answer.pointer(self.pointer).and_then(Value::as_str) == Some(self.value.as_str())
    }
}

/// One request, or a token's whole journey.
pub type Job = Vec<Step>;

/// The sign-up step alone, or the whole journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Step,
    Journey,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::Step => "step",
            Shape::Journey => "journey",
        }
    }
}

/// A source of unique jobs, shared by every connection of a run.
#[derive(Debug)]
pub struct Workload {
    shape: Shape,
    /// Makes tokens unique across runs that share a store.
    run: String,
    /// Plain: the next job number. Sealed: unused.
    counter: AtomicU64,
    /// Sealed jobs, built beforehand, and the next one to hand out.
    pool: Option<(Arc<Vec<Job>>, AtomicUsize)>,
}

impl Workload {
    /// Plain JSON jobs, built on demand.
    pub fn plain(shape: Shape, run: &str) -> Self {
        Self {
            shape,
            run: run.to_owned(),
            counter: AtomicU64::new(0),
            pool: None,
        }
    }

    /// Jobs from a pool sealed beforehand (see [`seal_pool`]). Servers that keep no
    /// state in common may share one pool.
    pub fn sealed(shape: Shape, pool: Arc<Vec<Job>>) -> Self {
        Self {
            shape,
            run: String::new(),
            counter: AtomicU64::new(0),
            pool: Some((pool, AtomicUsize::new(0))),
        }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The next unique job; `None` once a sealed pool is used up.
    pub fn next_job(&self) -> Option<Job> {
        match &self.pool {
            Some((jobs, next)) => jobs.get(next.fetch_add(1, Ordering::Relaxed)).cloned(),
            None => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                Some(plain_job(payloads(self.shape, &self.run, n)))
            }
        }
    }

    /// Whether a sealed pool ran out before the timed window ended.
    pub fn exhausted(&self) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|(jobs, next)| next.load(Ordering::Relaxed) >= jobs.len())
    }
}

/// `jobs` sealed jobs of `shape`, with tokens unique to `run`.
/// Sealed on every core: nothing else runs yet.
pub fn seal_pool(shape: Shape, run: &str, sealer: &Sealer, jobs: usize) -> Arc<Vec<Job>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = (jobs as u64).div_ceil(threads);
    let pool = std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let numbers = t * chunk..((t + 1) * chunk).min(jobs as u64);
                scope.spawn(move || {
                    numbers
                        .map(|n| seal_job(sealer, payloads(shape, run, n)))
                        .collect::<Vec<Job>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().expect("sealing does not panic"))
            .collect()
    });
    Arc::new(pool)
}

/// An `INIT` with a token of its own: the readiness probe, answered by every server.
pub fn probe(sealer: Option<&Sealer>, run: &str) -> Step {
    let token = format!("{run}-probe");
    let payload = (
        json!({"version": "3.0", "action": "INIT", "flow_token": token}),
        init_expect(),
    );
    match sealer {
        Some(sealer) => seal_job(sealer, vec![payload]).remove(0),
        None => plain_job(vec![payload]).remove(0),
    }
}

/// The payloads of job `n` and their expected answers.
fn payloads(shape: Shape, run: &str, n: u64) -> Vec<(Value, Expect)> {
    let token = format!("{run}-{n}");
    let email = format!("user{n}@example.com");
    let step = (
        json!({"version": "3.0", "action": "data_exchange", "screen": "WELCOME_SCREEN",
               "data": {"email": email}, "flow_token": token}),
        Expect {
            screen: "CONFIRMATION_SCREEN",
            pointer: "/data/user_email",
            value: email.clone(),
        },
    );
    match shape {
        Shape::Step => vec![step],
        Shape::Journey => vec![
            (
                json!({"version": "3.0", "action": "INIT", "flow_token": token}),
                init_expect(),
            ),
            step,
            (
                json!({"version": "3.0", "action": "data_exchange",
                       "screen": "CONFIRMATION_SCREEN", "data": {"email": email},
                       "flow_token": token}),
                Expect {
                    screen: "SUCCESS",
                    pointer: "/data/extension_message_response/params/flow_token",
                    value: token,
                },
            ),
        ],
    }
}

fn init_expect() -> Expect {
    Expect {
        screen: "WELCOME_SCREEN",
        pointer: "/data/welcome_message",
        value: WELCOME_MESSAGE.to_owned(),
    }
}

fn plain_job(payloads: Vec<(Value, Expect)>) -> Job {
    payloads
        .into_iter()
        .map(|(payload, expect)| Step {
            body: Bytes::from(payload.to_string()),
            signature: None,
            opener: None,
            expect,
        })
        .collect()
}

fn seal_job(sealer: &Sealer, payloads: Vec<(Value, Expect)>) -> Job {
    payloads
        .into_iter()
        .map(|(payload, expect)| {
            let sealed = sealer.seal(&payload);
            Step {
                body: Bytes::from(sealed.body),
                signature: Some(sealed.signature),
                opener: Some(sealed.opener),
                expect,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_jobs_are_unique_and_check_their_answers() {
        let workload = Workload::plain(Shape::Journey, "t");
        let first = workload.next_job().unwrap();
        let second = workload.next_job().unwrap();
        assert_eq!(first.len(), 3);
        assert_ne!(first[0].body, second[0].body);
        let step = &first[1].expect;
        assert!(step.matches(
            br#"{"screen":"CONFIRMATION_SCREEN","data":{"user_email":"user0@example.com"}}"#
        ));
        assert!(
            !step.matches(
                br#"{"screen":"WELCOME_SCREEN","data":{"user_email":"user0@example.com"}}"#
            )
        );
        assert!(!step.matches(b"not json"));
    }
}
