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
//! account name (a password typed into the username field is not kept). Each table holds at
//! most [`MAX_TRACKED`] entries; beyond that, entries that have recovered are dropped first,
//! then the least recently used quarter.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most entries per table (addresses, accounts, pairs).
const MAX_TRACKED: usize = 10_000;
/// The longest back-off of one (account, address) pair.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A pair that has not failed for this long starts over.
const PAIR_MEMORY: Duration = Duration::from_secs(60 * 60);

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
}

fn prefix64(a: Ipv6Addr) -> [u8; 8] {
    let o = a.octets();
    [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
}

type Account = [u8; 32];

/// A token bucket of failures: `tokens` left, refilled at `per_minute` per minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Failures of one (account, address) pair.
#[derive(Debug, Clone, Copy)]
struct Pair {
    failures: u32,
    last: Instant,
}

#[derive(Debug, Default)]
struct Tables {
    addresses: HashMap<Net, Bucket>,
    accounts: HashMap<Account, Bucket>,
    pairs: HashMap<(Account, Net), Pair>,
}

/// The login rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    tables: Mutex<Tables>,
}

/// A password check the limiter let through; it counts as a failure unless
/// [`RateLimiter::succeeded`] is called with it.
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    key: Option<(Account, Net)>,
}

impl RateLimiter {
    /// `per_minute` failed checks per address and per account per minute; 0 turns the limit
    /// off.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            tables: Mutex::new(Tables::default()),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    /// Refills of one bucket per second.
    fn rate(&self) -> f64 {
        self.capacity() / 60.0
    }

    /// The bucket for `key`, refilled up to `now`.
    fn bucket<'a, K: Hash + Eq + Copy>(
        &self,
        table: &'a mut HashMap<K, Bucket>,
        key: K,
        now: Instant,
    ) -> &'a mut Bucket {
        let (capacity, rate) = (self.capacity(), self.rate());
        if table.len() >= MAX_TRACKED && !table.contains_key(&key) {
            table.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < capacity
            });
            evict_oldest(table, |b| b.updated);
        }
        let b = table.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.updated = now;
        b
    }

    /// The back-off a pair with `failures` failures waits after its last one.
    fn backoff(&self, failures: u32) -> Duration {
        let base = 60.0 / self.capacity();
        let factor = 2f64.powi(i32::try_from(failures.saturating_sub(1).min(20)).unwrap_or(20));
        Duration::from_secs_f64((base * factor).min(MAX_BACKOFF.as_secs_f64()))
    }

    /// Asks to check a password of `account` from `ip` at `now`: an [`Attempt`] (charged as a
    /// failure until it succeeds), or `Err(seconds)` to wait before trying again.
    pub fn begin(&self, account: &str, ip: IpAddr, now: Instant) -> Result<Attempt, u64> {
        if self.per_minute == 0 {
            return Ok(Attempt { key: None });
        }
        let account = super::digest(account.as_bytes());
        let net = Net::of(ip);
        let mut guard = match self.tables.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        let tables = &mut *guard;
        let rate = self.rate();
        let address = self.bucket(&mut tables.addresses, net, now);
        if address.tokens < 1.0 {
            return Err(seconds((1.0 - address.tokens) / rate));
        }
        let under_attack = self.bucket(&mut tables.accounts, account, now).tokens < 1.0;
        if let Some(pair) = tables.pairs.get(&(account, net)) {
            if now.saturating_duration_since(pair.last) > PAIR_MEMORY {
                tables.pairs.remove(&(account, net));
            } else if under_attack {
                let until = pair.last + self.backoff(pair.failures);
                if until > now {
                    return Err(seconds((until - now).as_secs_f64()));
                }
            }
        }
        // Charge the attempt as a failure now; `succeeded` refunds it.
        let floor = -self.capacity();
        let address = self.bucket(&mut tables.addresses, net, now);
        address.tokens -= 1.0;
        let acct = self.bucket(&mut tables.accounts, account, now);
        acct.tokens = (acct.tokens - 1.0).max(floor);
        if tables.pairs.len() >= MAX_TRACKED && !tables.pairs.contains_key(&(account, net)) {
            tables
                .pairs
                .retain(|_, p| now.saturating_duration_since(p.last) <= PAIR_MEMORY);
            evict_oldest(&mut tables.pairs, |p| p.last);
        }
        let pair = tables.pairs.entry((account, net)).or_insert(Pair {
            failures: 0,
            last: now,
        });
        pair.failures = pair.failures.saturating_add(1);
        pair.last = now;
        Ok(Attempt {
            key: Some((account, net)),
        })
    }

    /// The password of `attempt` was right: refunds its charge and clears its back-off.
    pub fn succeeded(&self, attempt: Attempt, now: Instant) {
        let Some((account, net)) = attempt.key else {
            return;
        };
        let mut guard = match self.tables.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        let tables = &mut *guard;
        let capacity = self.capacity();
        let address = self.bucket(&mut tables.addresses, net, now);
        address.tokens = (address.tokens + 1.0).min(capacity);
        let acct = self.bucket(&mut tables.accounts, account, now);
        acct.tokens = (acct.tokens + 1.0).min(capacity);
        tables.pairs.remove(&(account, net));
    }
}

/// Whole seconds to wait, rounded up, at least 1.
fn seconds(secs: f64) -> u64 {
    let d = Duration::from_secs_f64(secs.max(0.0));
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Drops the least recently used quarter of a table that is still full.
fn evict_oldest<K, V>(table: &mut HashMap<K, V>, updated: impl Fn(&V) -> Instant) {
    if table.len() < MAX_TRACKED {
        return;
    }
    let mut times: Vec<Instant> = table.values().map(&updated).collect();
    let cut = times.len() / 4;
    let (_, cutoff, _) = times.select_nth_unstable(cut);
    let cutoff = *cutoff;
    table.retain(|_, v| updated(v) > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(l: &RateLimiter, account: &str, from: &str, t: Instant) -> Result<(), u64> {
        l.begin(account, ip(from), t).map(drop)
    }

    #[test]
    fn successes_never_count() {
        let l = RateLimiter::new(3);
        let t = Instant::now();
        for _ in 0..50 {
            let a = l.begin("deploy", ip("10.0.0.1"), t).unwrap();
            l.succeeded(a, t);
        }
    }

    #[test]
    fn failures_per_address_then_a_wait() {
        let l = RateLimiter::new(3);
        let t = Instant::now();
        for i in 0..3 {
            assert!(fail(&l, &format!("user{i}"), "10.0.0.1", t).is_ok());
        }
        let wait = fail(&l, "other", "10.0.0.1", t).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        // Another address has its own bucket.
        assert!(fail(&l, "other", "10.0.0.2", t).is_ok());
        // After the refill time one more attempt is allowed.
        let later = t + Duration::from_secs(20);
        assert!(fail(&l, "x", "10.0.0.1", later).is_ok());
        assert!(fail(&l, "y", "10.0.0.1", later).is_err());
    }

    #[test]
    fn one_ipv6_64_is_one_address_and_mapped_ipv4_is_ipv4() {
        let l = RateLimiter::new(3);
        let t = Instant::now();
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
        let l = RateLimiter::new(3);
        let t = Instant::now();
        // Failures against `deploy` from many addresses: the account is under attack.
        for i in 1..=3 {
            assert!(fail(&l, "deploy", &format!("198.51.100.{i}"), t).is_ok());
        }
        // A failing pair now waits 20 s (60/3) after its failure, then twice as long.
        let wait = fail(&l, "deploy", "198.51.100.1", t).unwrap_err();
        assert_eq!(wait, 20);
        let t1 = t + Duration::from_secs(20);
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
        assert_eq!(l.backoff(100), MAX_BACKOFF);
    }

    #[test]
    fn zero_means_no_limit() {
        let l = RateLimiter::new(0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert!(fail(&l, "deploy", "::1", t).is_ok());
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let l = RateLimiter::new(5);
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            let _ = l.begin(&format!("u{i}"), IpAddr::from(i.to_be_bytes()), t);
        }
        let tables = l.tables.lock().unwrap();
        assert!(tables.addresses.len() <= MAX_TRACKED);
        assert!(tables.accounts.len() <= MAX_TRACKED);
        assert!(tables.pairs.len() <= MAX_TRACKED);
    }
}
