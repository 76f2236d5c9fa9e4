//! The limit on failed password checks (`server.login_attempts_per_minute`, N below).
//!
//! Only failures count: an attempt is charged when it starts (so that a burst of parallel
//! guesses cannot all pass before the first one fails) and refunded when the password was
//! right, so a client that logs in correctly on every request (the Docker CLI does, on every
//! push) is never limited.
//!
//! - **Per client address**: N failed checks per minute (a bucket of N that refills at N per
//!   minute), whatever the account. IPv6 addresses are grouped by /64, the block one host or
//!   one customer usually gets; an IPv4-mapped IPv6 address counts as the IPv4 address.
//! - **Per account**: failed checks against one account name from every address together, N
//!   per minute. Past that the account is *under attack*; it is never locked. Instead, every
//!   (account, address) pair that has failed against it backs off: it waits `60/N` s after its
//!   first failure, twice that after the second, and so on up to [`MAX_BACKOFF`], before its
//!   next attempt. An address that has not failed against the account (the real user, typing
//!   the right password) is not slowed down, so an attacker cannot lock the real user out
//!   from another address; a guesser spread over many addresses gets a few guesses per
//!   address per quarter of an hour instead of N per minute each.
//! - A successful check refunds its charge and clears its pair's back-off.
//!
//! Keys are the socket peer address (never a forwarded header) and a SHA-256 digest of the
//! account name (a password typed into the username field is not kept).
//!
//! The counts live in the token store ([`TokenStore::update_counters`]), not in this process,
//! so that several replicas behind a load balancer share them: a guesser spread over the
//! replicas gets N failures per minute in all, not N per replica. One check is one atomic
//! read-modify-write of three counters (the address, the account, the pair); times are wall
//! clock milliseconds, shared by the replicas. A counter not written for an hour is forgotten
//! and pruned by the store, which bounds what it keeps (the in-memory store also caps the
//! number of counters).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use jiff::Timestamp;

use crate::store::{Counter, StoreError, TokenStore};

/// The longest back-off of one (account, address) pair.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A pair that has not failed for this long starts over (the store forgets counters not
/// written for as long).
const PAIR_MEMORY: Duration = crate::store::COUNTER_MEMORY;

/// A client address as the limiter sees it: IPv4, or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Net {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Net {
    fn of(ip: IpAddr) -> Net {
        match ip {
            IpAddr::V4(a) => Net::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Net::V4(v4.octets()),
                None => Net::V6(prefix64(a)),
            },
        }
    }

    /// The counter key part of this address.
    fn key(&self) -> String {
        match self {
            Net::V4(o) => format!("4:{}", hex::encode(o)),
            Net::V6(o) => format!("6:{}", hex::encode(o)),
        }
    }
}

fn prefix64(a: Ipv6Addr) -> [u8; 8] {
    let o = a.octets();
    [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
}

/// The login rate limiter: its setting; the counts are in the store.
#[derive(Debug, Clone, Copy)]
pub struct RateLimiter {
    per_minute: u32,
}

/// A password check the limiter let through; it counts as a failure unless
/// [`RateLimiter::succeeded`] is called with it.
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    /// The counter keys: address, account, pair.
    keys: Option<[String; 3]>,
}

/// Why [`RateLimiter::begin`] did not let a check through.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Too many failures: wait this many seconds.
    #[error("too many failed logins; retry in {0} s")]
    Wait(u64),
    /// The store that keeps the counts cannot answer (fail closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The counter keys of `account` from `ip`: address, account, pair.
fn keys(account: &str, ip: IpAddr) -> [String; 3] {
    let account = hex::encode(super::digest(account.as_bytes()));
    let net = Net::of(ip).key();
    [
        format!("login/addr/{net}"),
        format!("login/account/{account}"),
        format!("login/pair/{account}/{net}"),
    ]
}

/// The pure arithmetic of the limiter, run by the store on the counters it read.
#[derive(Debug, Clone, Copy)]
struct Rules {
    per_minute: u32,
    now: i64,
}

impl Rules {
    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    /// Refills of one bucket per millisecond.
    fn rate_ms(&self) -> f64 {
        self.capacity() / 60_000.0
    }

    /// The fill of a bucket counter, refilled up to now (a missing one is full).
    fn fill(&self, bucket: Option<Counter>) -> f64 {
        match bucket {
            None => self.capacity(),
            Some(b) => {
                let elapsed = self.now.saturating_sub(b.at_ms).max(0) as f64;
                (b.value + elapsed * self.rate_ms()).min(self.capacity())
            }
        }
    }

    /// The back-off a pair with `failures` failures waits after its last one.
    fn backoff(&self, failures: u32) -> Duration {
        let base = 60.0 / self.capacity();
        let factor = 2f64.powi(i32::try_from(failures.saturating_sub(1).min(20)).unwrap_or(20));
        Duration::from_secs_f64((base * factor).min(MAX_BACKOFF.as_secs_f64()))
    }

    /// `begin` on the counters [address, account, pair]: 0 when the attempt is let through
    /// (and charged), else the seconds to wait (nothing is written).
    fn begin(&self, rows: &mut [Option<Counter>]) -> u64 {
        let [address, account, pair] = rows else {
            return 1;
        };
        let rate = self.rate_ms() * 1000.0;
        let addr_fill = self.fill(*address);
        if addr_fill < 1.0 {
            return seconds((1.0 - addr_fill) / rate);
        }
        let acct_fill = self.fill(*account);
        let under_attack = acct_fill < 1.0;
        if let Some(p) = *pair {
            if self.now.saturating_sub(p.at_ms) > PAIR_MEMORY.as_millis() as i64 {
                *pair = None;
            } else if under_attack {
                let failures = p.value.max(0.0) as u32;
                let until = p.at_ms + self.backoff(failures).as_millis() as i64;
                if until > self.now {
                    return seconds((until - self.now) as f64 / 1000.0);
                }
            }
        }
        // Charge the attempt as a failure now; `succeeded` refunds it.
        let floor = -self.capacity();
        *address = Some(Counter {
            value: addr_fill - 1.0,
            at_ms: self.now,
        });
        *account = Some(Counter {
            value: (acct_fill - 1.0).max(floor),
            at_ms: self.now,
        });
        let failures = pair.map_or(0.0, |p| p.value);
        *pair = Some(Counter {
            value: (failures + 1.0).min(f64::from(u32::MAX)),
            at_ms: self.now,
        });
        0
    }

    /// `succeeded` on the counters [address, account, pair]: refunds and clears the pair.
    fn succeeded(&self, rows: &mut [Option<Counter>]) -> u64 {
        let [address, account, pair] = rows else {
            return 0;
        };
        for bucket in [address, account] {
            *bucket = Some(Counter {
                value: (self.fill(*bucket) + 1.0).min(self.capacity()),
                at_ms: self.now,
            });
        }
        *pair = None;
        0
    }
}

impl RateLimiter {
    /// `per_minute` failed checks per address and per account per minute; 0 turns the limit
    /// off.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter { per_minute }
    }

    /// Asks to check a password of `account` from `ip` at `now`: an [`Attempt`] (charged as a
    /// failure until it succeeds), or [`Refused`] (wait, or the store cannot count). Writes
    /// to `store`: call it off the async threads.
    pub fn begin(
        &self,
        store: &dyn TokenStore,
        account: &str,
        ip: IpAddr,
        now: Timestamp,
    ) -> Result<Attempt, Refused> {
        if self.per_minute == 0 {
            return Ok(Attempt { keys: None });
        }
        let keys = keys(account, ip);
        let rules = Rules {
            per_minute: self.per_minute,
            now: now.as_millisecond(),
        };
        match store.update_counters(&keys, now, Box::new(move |rows| rules.begin(rows)))? {
            0 => Ok(Attempt { keys: Some(keys) }),
            wait => Err(Refused::Wait(wait)),
        }
    }

    /// The password of `attempt` was right: refunds its charge and clears its back-off.
    pub fn succeeded(
        &self,
        store: &dyn TokenStore,
        attempt: Attempt,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let Some(keys) = attempt.keys else {
            return Ok(());
        };
        let rules = Rules {
            per_minute: self.per_minute,
            now: now.as_millisecond(),
        };
        store.update_counters(&keys, now, Box::new(move |rows| rules.succeeded(rows)))?;
        Ok(())
    }
}

/// Whole seconds to wait, rounded up, at least 1.
fn seconds(secs: f64) -> u64 {
    let d = Duration::from_secs_f64(secs.max(0.0));
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A limiter with its own in-memory store.
    struct L(RateLimiter, MemoryStore);

    impl L {
        fn new(per_minute: u32) -> L {
            L(RateLimiter::new(per_minute), MemoryStore::new())
        }
        fn begin(&self, account: &str, ip: IpAddr, t: Timestamp) -> Result<Attempt, u64> {
            self.0.begin(&self.1, account, ip, t).map_err(|e| match e {
                Refused::Wait(s) => s,
                Refused::Store(e) => panic!("{e}"),
            })
        }
        fn succeeded(&self, a: Attempt, t: Timestamp) {
            self.0.succeeded(&self.1, a, t).unwrap()
        }
    }

    fn fail(l: &L, account: &str, from: &str, t: Timestamp) -> Result<(), u64> {
        l.begin(account, ip(from), t).map(drop)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn successes_never_count() {
        let l = L::new(3);
        let t = Timestamp::now();
        for _ in 0..50 {
            let a = l.begin("deploy", ip("10.0.0.1"), t).unwrap();
            l.succeeded(a, t);
        }
    }

    #[test]
    fn failures_per_address_then_a_wait() {
        let l = L::new(3);
        let t = Timestamp::now();
        for i in 0..3 {
            assert!(fail(&l, &format!("user{i}"), "10.0.0.1", t).is_ok());
        }
        let wait = fail(&l, "other", "10.0.0.1", t).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        // Another address has its own bucket.
        assert!(fail(&l, "other", "10.0.0.2", t).is_ok());
        // After the refill time one more attempt is allowed.
        let later = t + secs(20);
        assert!(fail(&l, "x", "10.0.0.1", later).is_ok());
        assert!(fail(&l, "y", "10.0.0.1", later).is_err());
    }

    #[test]
    fn one_ipv6_64_is_one_address_and_mapped_ipv4_is_ipv4() {
        let l = L::new(3);
        let t = Timestamp::now();
        for i in 1..=3 {
            assert!(fail(&l, "deploy", &format!("2001:db8:1:2::{i:x}"), t).is_ok());
        }
        assert!(fail(&l, "a", "2001:db8:1:2:ffff:ffff:ffff:ffff", t).is_err());
        assert!(fail(&l, "a", "2001:db8:1:3::1", t).is_ok(), "another /64");
        for _ in 0..3 {
            assert!(fail(&l, "b", "192.0.2.7", t).is_ok());
        }
        assert!(fail(&l, "b", "::ffff:192.0.2.7", t).is_err());
    }

    #[test]
    fn an_account_under_attack_slows_failing_pairs_not_the_real_user() {
        let l = L::new(3);
        let t = Timestamp::now();
        // Failures against `deploy` from many addresses: the account is under attack.
        for i in 1..=3 {
            assert!(fail(&l, "deploy", &format!("198.51.100.{i}"), t).is_ok());
        }
        // A failing pair now waits 20 s (60/3) after its failure, then twice as long.
        let wait = fail(&l, "deploy", "198.51.100.1", t).unwrap_err();
        assert_eq!(wait, 20);
        let t1 = t + secs(20);
        assert!(fail(&l, "deploy", "198.51.100.1", t1).is_ok());
        let wait = fail(&l, "deploy", "198.51.100.1", t1).unwrap_err();
        assert_eq!(wait, 40);
        // Another account from the same failing address is not slowed by `deploy`'s pairs.
        assert!(fail(&l, "someone", "198.51.100.2", t).is_ok());
        // The real user, from an address that has not failed, logs in at once, repeatedly.
        for _ in 0..10 {
            let a = l.begin("deploy", ip("203.0.113.9"), t1).unwrap();
            l.succeeded(a, t1);
        }
        // The back-off is capped.
        let rules = Rules {
            per_minute: 3,
            now: 0,
        };
        assert_eq!(rules.backoff(100), MAX_BACKOFF);
    }

    #[test]
    fn zero_means_no_limit() {
        let l = L::new(0);
        let t = Timestamp::now();
        for _ in 0..1000 {
            assert!(fail(&l, "deploy", "::1", t).is_ok());
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let l = L::new(5);
        let t = Timestamp::now();
        for i in 0..40_050u32 {
            let _ = l.begin(&format!("u{i}"), IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(l.1.counter_count() <= 30_000, "{}", l.1.counter_count());
    }

    #[test]
    fn two_limiters_on_one_store_count_together() {
        // Two replicas: each has its own limiter, the store is shared.
        let store = MemoryStore::new();
        let (a, b) = (RateLimiter::new(3), RateLimiter::new(3));
        let t = Timestamp::now();
        for (i, l) in [a, b, a].iter().enumerate() {
            assert!(
                l.begin(&store, &format!("u{i}"), ip("10.0.0.1"), t).is_ok(),
                "attempt {i}"
            );
        }
        assert!(matches!(
            b.begin(&store, "u9", ip("10.0.0.1"), t),
            Err(Refused::Wait(_))
        ));
    }

    #[test]
    fn a_forgotten_pair_starts_over() {
        let l = L::new(3);
        let t = Timestamp::now();
        for i in 1..=3 {
            assert!(fail(&l, "deploy", &format!("198.51.100.{i}"), t).is_ok());
        }
        assert!(fail(&l, "deploy", "198.51.100.1", t).is_err());
        let much_later = t + PAIR_MEMORY + secs(1);
        assert!(fail(&l, "deploy", "198.51.100.1", much_later).is_ok());
    }
}
