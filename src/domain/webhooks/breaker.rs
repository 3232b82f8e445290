//! Per-destination fairness for webhook deliveries, on one node: at most `concurrency` sends at once to
//! one destination (`host:port`), and a circuit breaker that, after `threshold` timeouts in a row,
//! postpones deliveries to that destination for a cool-down instead of letting them occupy workers for a
//! whole timeout each. A receiver that never answers thus holds at most `concurrency` workers, and only
//! until its breaker opens; other tenants' receivers are served meanwhile.
//!
//! After the cool-down one delivery goes through (the others still wait on the concurrency cap); a
//! timeout reopens the breaker at once, any answer (even an error status) closes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lock;

#[derive(Default)]
struct Destination {
    in_flight: usize,
    consecutive_timeouts: u32,
    open_until: Option<Instant>,
}

/// Why a delivery may not be sent now, and when to look again.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The breaker is open: the destination timed out `timeouts` times in a row.
    Open { wait: Duration, timeouts: u32 },
    /// `concurrency` deliveries to the destination are being sent.
    Busy,
}

pub struct Breakers {
    concurrency: usize,
    threshold: u32,
    cooldown: Duration,
    /// Only counters: the map a panicking holder left is still usable (`crate::lock`).
    destinations: Arc<Mutex<HashMap<String, Destination>>>,
}

/// A send slot for one destination, given back when dropped (even if the send is cancelled).
pub struct Slot {
    destination: String,
    destinations: Arc<Mutex<HashMap<String, Destination>>>,
    settled: bool,
}

impl Breakers {
    pub fn new(concurrency: usize, threshold: u32, cooldown: Duration) -> Self {
        Self {
            concurrency: concurrency.max(1),
            threshold,
            cooldown,
            destinations: Arc::default(),
        }
    }

    /// A slot to send to `destination` now, or why not.
    pub fn acquire(&self, destination: &str) -> Result<Slot, Refusal> {
        let mut map = lock(&self.destinations);
        let d = map.entry(destination.to_owned()).or_default();
        let now = Instant::now();
        if let Some(until) = d.open_until {
            if until > now {
                return Err(Refusal::Open {
                    wait: until - now,
                    timeouts: d.consecutive_timeouts,
                });
            }
            d.open_until = None;
        }
        if d.in_flight >= self.concurrency {
            return Err(Refusal::Busy);
        }
        d.in_flight += 1;
        Ok(Slot {
            destination: destination.to_owned(),
            destinations: self.destinations.clone(),
            settled: false,
        })
    }

    /// Records the outcome of the send made with `slot`: whether it timed out. Returns whether this
    /// timeout opened the breaker.
    pub fn settle(&self, mut slot: Slot, timed_out: bool) -> bool {
        slot.settled = true;
        let mut map = lock(&self.destinations);
        let Some(d) = map.get_mut(&slot.destination) else {
            return false;
        };
        d.in_flight = d.in_flight.saturating_sub(1);
        if !timed_out {
            d.consecutive_timeouts = 0;
            return false;
        }
        d.consecutive_timeouts = d.consecutive_timeouts.saturating_add(1);
        if self.threshold > 0 && d.consecutive_timeouts >= self.threshold {
            d.open_until = Some(Instant::now() + self.cooldown);
            return true;
        }
        false
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut map = lock(&self.destinations);
        if let Some(d) = map.get_mut(&self.destination) {
            d.in_flight = d.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_and_a_slot_comes_back_when_dropped() {
        let b = Breakers::new(1, 3, Duration::from_secs(30));
        let slot = b.acquire("a:443").unwrap();
        assert_eq!(b.acquire("a:443").err(), Some(Refusal::Busy));
        assert!(
            b.acquire("b:443").is_ok(),
            "another destination is not held up"
        );
        drop(slot);
        assert!(b.acquire("a:443").is_ok());
    }

    #[test]
    fn timeouts_in_a_row_open_the_breaker_and_an_answer_closes_it() {
        let b = Breakers::new(4, 2, Duration::from_millis(50));
        let slot = b.acquire("a:443").unwrap();
        assert!(!b.settle(slot, true));
        let slot = b.acquire("a:443").unwrap();
        assert!(!b.settle(slot, false), "an answer resets the count");
        let slot = b.acquire("a:443").unwrap();
        assert!(!b.settle(slot, true));
        let slot = b.acquire("a:443").unwrap();
        assert!(b.settle(slot, true), "the second timeout in a row opens it");
        assert!(matches!(
            b.acquire("a:443").err(),
            Some(Refusal::Open { timeouts: 2, .. })
        ));
        std::thread::sleep(Duration::from_millis(60));
        let slot = b.acquire("a:443").unwrap();
        assert!(
            b.settle(slot, true),
            "a timeout after the cool-down reopens it"
        );
    }
}
