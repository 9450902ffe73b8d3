//! Failed logins counted per client address in memory, over a sliding window: a
//! second line of defence behind the per-account lock-out (which lives in the
//! database and so holds across instances), against one address trying many accounts.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; past that, the stalest are forgotten first.
const MAX_TRACKED: usize = 10_000;

/// Failures per address within a window.
pub struct FailureThrottle {
    window: Duration,
    limit: usize,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureThrottle {
    /// Blocks an address once it has failed `limit` times within `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            window,
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `address` has failed too often lately.
    pub fn is_blocked(&self, address: IpAddr) -> bool {
        let now = Instant::now();
        let mut failures = self.lock();
        match failures.get_mut(&address) {
            Some(times) => {
                Self::forget_old(times, now, self.window);
                times.len() >= self.limit
            }
            None => false,
        }
    }

    /// Counts one failure from `address`.
    pub fn record_failure(&self, address: IpAddr) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&address) {
            let window = self.window;
            failures.retain(|_, times| {
                Self::forget_old(times, now, window);
                !times.is_empty()
            });
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let times = failures.entry(address).or_default();
        Self::forget_old(times, now, self.window);
        times.push_back(now);
        while times.len() > self.limit {
            times.pop_front();
        }
    }

    fn forget_old(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while times
            .front()
            .is_some_and(|time| now.duration_since(*time) >= window)
        {
            times.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_limit() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(600));
        let address: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..2 {
            throttle.record_failure(address);
        }
        assert!(!throttle.is_blocked(address));
        throttle.record_failure(address);
        assert!(throttle.is_blocked(address));
        assert!(!throttle.is_blocked(other));
    }

    #[test]
    fn failures_leave_the_window() {
        let throttle = FailureThrottle::new(1, Duration::ZERO);
        let address: IpAddr = [192, 0, 2, 1].into();
        throttle.record_failure(address);
        assert!(!throttle.is_blocked(address));
    }
}
