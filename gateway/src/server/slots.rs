//! Connection slots: how many connections a listener holds open, overall and per
//! client address. A connection takes a [`Slot`] when it is accepted, before any
//! TLS work, and gives it back when it closes, whatever the reason.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::telemetry;

/// Why a connection was refused; the `reason` label of
/// `flowgate_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerAddress,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerAddress => "max_connections_per_address",
        }
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Slots {
    listener: &'static str,
    max: usize,
    /// 0: no per-address limit, and no map is kept.
    max_per_address: usize,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl Slots {
    pub fn new(listener: &'static str, max: usize, max_per_address: usize) -> Arc<Self> {
        telemetry::connections_open(listener, 0.0);
        Arc::new(Self {
            listener,
            max,
            max_per_address,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a slot for a connection from `address`, or says why there is none.
    pub fn acquire(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refusal> {
        // Only the accept loop acquires, so the count cannot grow between this
        // check and the increment; releases only make room.
        if self.open.load(Ordering::Acquire) >= self.max {
            return Err(Refusal::MaxConnections);
        }
        let address = if self.max_per_address > 0 {
            let mut per_address = self.per_address.lock().expect("slot map poisoned");
            let count = per_address.entry(address).or_insert(0);
            if *count >= self.max_per_address {
                return Err(Refusal::MaxConnectionsPerAddress);
            }
            *count += 1;
            Some(address)
        } else {
            None
        };
        self.open.fetch_add(1, Ordering::AcqRel);
        telemetry::connections_open(self.listener, 1.0);
        Ok(Slot {
            slots: self.clone(),
            address,
        })
    }
}

/// One open connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    /// Set when the per-address limit is on.
    address: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(address) = self.address {
            let mut per_address = self.slots.per_address.lock().expect("slot map poisoned");
            if let Some(count) = per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    per_address.remove(&address);
                }
            }
        }
        self.slots.open.fetch_sub(1, Ordering::AcqRel);
        telemetry::connections_open(self.slots.listener, -1.0);
    }
}

/// Logs at most one line per period about events that may come by the thousand
/// (refused connections, failing accepts), with how many there were.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Option<Instant>,
    pending: u64,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            pending: 0,
        }
    }

    /// Notes one event; when a line is due now, returns how many events it
    /// reports (this one and those held back since the last line).
    pub fn note(&mut self) -> Option<u64> {
        self.pending += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.period) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_overall_and_per_address_and_frees_on_drop() {
        let slots = Slots::new("test", 3, 2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = slots.acquire(a).unwrap();
        let _second = slots.acquire(a).unwrap();
        assert_eq!(
            slots.acquire(a).unwrap_err(),
            Refusal::MaxConnectionsPerAddress
        );
        let _third = slots.acquire(b).unwrap();
        assert_eq!(slots.acquire(b).unwrap_err(), Refusal::MaxConnections);
        assert_eq!(slots.open(), 3);
        drop(first);
        assert_eq!(slots.open(), 2);
        let _again = slots.acquire(a).unwrap();
        assert_eq!(slots.per_address.lock().unwrap()[&a], 2);
    }

    #[test]
    fn without_a_per_address_cap_no_map_is_kept() {
        let slots = Slots::new("test", 10, 0);
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..10).map(|_| slots.acquire(address).unwrap()).collect();
        assert!(slots.per_address.lock().unwrap().is_empty());
        assert_eq!(slots.acquire(address).unwrap_err(), Refusal::MaxConnections);
        drop(held);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn throttle_reports_counts_once_per_period() {
        let mut throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.note(), Some(1));
        assert_eq!(throttle.note(), None);
        assert_eq!(throttle.note(), None);
        throttle.last = Some(Instant::now() - Duration::from_secs(3601));
        // The two held back and this one.
        assert_eq!(throttle.note(), Some(3));
    }
}
