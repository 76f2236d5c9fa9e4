//! Per-address limit on password checks: a token bucket per client IP that holds
//! `per_minute` attempts and refills at `per_minute` per minute.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once; beyond that, full buckets are forgotten first.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A login rate limiter keyed by the socket peer address (never a forwarded header).
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` attempts per address per minute; 0 turns the limit off.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `ip` at `now`: `Ok(())` when allowed, else `Err(seconds)` until
    /// the next attempt will be.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0; // tokens per second
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < capacity
            });
            if buckets.len() >= MAX_TRACKED {
                // Under a flood of distinct addresses: start over rather than grow without end.
                buckets.clear();
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
            Err(wait.as_secs().max(1) + u64::from(wait.subsec_nanos() > 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allows_the_burst_then_refuses_with_a_wait() {
        let l = RateLimiter::new(3);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip("10.0.0.1"), t).is_ok());
        }
        let wait = l.check(ip("10.0.0.1"), t).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        // Another address has its own bucket.
        assert!(l.check(ip("10.0.0.2"), t).is_ok());
        // After the refill time one more attempt is allowed.
        assert!(l.check(ip("10.0.0.1"), t + Duration::from_secs(20)).is_ok());
        assert!(
            l.check(ip("10.0.0.1"), t + Duration::from_secs(20))
                .is_err()
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let l = RateLimiter::new(0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert!(l.check(ip("::1"), t).is_ok());
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let l = RateLimiter::new(5);
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            let _ = l.check(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_TRACKED);
    }
}
