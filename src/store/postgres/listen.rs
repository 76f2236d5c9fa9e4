//! The per-process answer cache of [`TokenStore::check`](crate::store::TokenStore::check),
//! kept correct by `LISTEN/NOTIFY`.
//!
//! Every write that can turn a "valid" answer into another (a revocation by id and of the
//! descendants, a cut-off, a record that is revoked, derived or single-use, a single-use
//! mark) sends `NOTIFY tessera_store` in its transaction, with the token id as payload, or
//! `*` for "everything" (cut-offs, long lines). One listener connection per process receives
//! them and drops the matching answers.
//!
//! The bound that holds even when notifications are lost: an answer is used only while the
//! listener is *synced*: it completed a round trip (`SELECT 1`, every [`PING_EVERY`]) that
//! started less than [`TRUST_FOR`] ago, and every notification received before that round
//! trip's answer was applied. PostgreSQL delivers a notification to a listening session
//! before the answer to any query the session sends after the notifying commit, so a
//! revocation committed more than [`TRUST_FOR`] ago has always been applied, or the cache is
//! not used at all. When the listener disconnects (the database restarts, its backend is
//! terminated, the network fails) every answer is dropped at once and the store asks the
//! database on every call until the listener is back and synced: nothing is resynced,
//! because nothing cached survives.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::connect::Target;
use crate::store::StoreError;

/// The `application_name` of the listener's connection.
pub(super) const LISTENER_NAME: &str = "tessera-listener";
/// The channel every writer notifies.
pub(super) const CHANNEL: &str = "tessera_store";
/// How often the listener proves it is alive and up to date.
const PING_EVERY: Duration = Duration::from_millis(200);
/// How long after the start of its last successful round trip the listener is trusted.
/// Revocation reaches every replica within this (plus one round trip) even when
/// notifications are lost.
pub(super) const TRUST_FOR: Duration = Duration::from_millis(800);
/// A round trip of the listener slower than this counts as a lost connection.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Most answers kept; past that the cache is emptied.
const MAX_ANSWERS: usize = 100_000;
/// How long the listener waits before reconnecting after a failure.
const RECONNECT_AFTER: Duration = Duration::from_millis(250);

/// What [`Answers::trouble`] says before the listener's first connection.
pub(super) const NOT_YET: &str = "not connected yet";

/// The answers, and what the listener knows.
#[derive(Debug)]
pub(super) struct Answers {
    base: Instant,
    /// Bumped by every notification and disconnection, under the `map` lock: an answer
    /// computed across a bump is not kept.
    epoch: AtomicU64,
    /// Nanoseconds since `base` at which the last successful round trip of the listener
    /// started, or 0 when it is not synced.
    synced_at: AtomicU64,
    /// "Valid" answers: token id → (subject, issue time in ms) it was asked with.
    map: Mutex<HashMap<String, (String, i64)>>,
    /// Why the listener is not connected, when it is not (for `/health`).
    down: Mutex<Option<String>>,
}

impl Default for Answers {
    fn default() -> Self {
        Answers {
            // In the past, so that any recent instant is after it.
            base: Instant::now()
                .checked_sub(Duration::from_secs(3600))
                .unwrap_or_else(Instant::now),
            epoch: AtomicU64::new(0),
            synced_at: AtomicU64::new(0),
            map: Mutex::new(HashMap::new()),
            down: Mutex::new(Some(NOT_YET.into())),
        }
    }
}

impl Answers {
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether cached answers may be used now.
    fn synced(&self) -> bool {
        let at = self.synced_at.load(Ordering::Acquire);
        at != 0 && self.nanos(Instant::now()).saturating_sub(at) < TRUST_FOR.as_nanos() as u64
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, i64)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached "valid" answer for this question, or the epoch to hand to
    /// [`Answers::remember`] after asking the database (`None`: do not keep the answer).
    pub(super) fn lookup(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
    ) -> Result<(), Option<u64>> {
        if !self.synced() {
            return Err(None);
        }
        let map = self.map();
        let epoch = self.epoch.load(Ordering::Acquire);
        match map.get(jti) {
            Some((s, i)) if s == subject && *i == issued_at => Ok(()),
            _ => Err(Some(epoch)),
        }
    }

    /// Keeps a "valid" answer computed after [`Answers::lookup`] returned `epoch`, unless a
    /// notification or a disconnection came in between.
    pub(super) fn remember(&self, epoch: u64, jti: &str, subject: &str, issued_at: i64) {
        let mut map = self.map();
        if self.epoch.load(Ordering::Acquire) != epoch || !self.synced() {
            return;
        }
        if map.len() >= MAX_ANSWERS {
            map.clear();
        }
        map.insert(jti.to_owned(), (subject.to_owned(), issued_at));
    }

    /// A notification (or a write of this process): drops the answer of that token id, or
    /// all of them for `*`.
    pub(super) fn invalidate(&self, payload: &str) {
        let mut map = self.map();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if payload == "*" {
            map.clear();
        } else {
            map.remove(payload);
        }
    }

    /// The listener is gone: nothing cached may be used any more.
    fn disconnected(&self, why: String) {
        let mut map = self.map();
        self.synced_at.store(0, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.clear();
        drop(map);
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    fn connected(&self, round_trip_started: Instant) {
        self.synced_at
            .store(self.nanos(round_trip_started), Ordering::Release);
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Why the database cannot be reached, as the listener last saw it; `None` when it is
    /// connected and synced.
    pub(super) fn trouble(&self) -> Option<String> {
        if self.synced() {
            return None;
        }
        Some(
            self.down
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "the database has not answered for a second".into()),
        )
    }

    /// Number of answers kept (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map().len()
    }
}

/// The listener: connects, `LISTEN`s, pings, applies notifications, and reconnects for ever
/// (until the store is dropped, which drops the runtime this task runs on).
pub(super) async fn run(target: Target, answers: std::sync::Arc<Answers>) {
    loop {
        let why = match listen_once(&target, &answers).await {
            Ok(()) => "the listener connection ended".to_owned(),
            Err(e) => e.reason(),
        };
        answers.disconnected(why.clone());
        tracing::warn!(error = %why, "token store notifications lost; answering from the database until reconnected");
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn listen_once(target: &Target, answers: &Answers) -> Result<(), StoreError> {
    // Named apart from the pool's connections, so an operator (or a fault test) can find it.
    let mut pg = target.pg.clone();
    pg.application_name(LISTENER_NAME);
    let (client, mut connection) = pg
        .connect(target.tls.clone())
        .await
        .map_err(|e| super::connect::db_error(&target.location, &e))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // Drives the connection and forwards notifications, in the order they arrive.
    let driver = tokio::spawn(async move {
        loop {
            let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
            match message {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "listener connection failed");
                    return;
                }
                None => return,
            }
        }
    });
    let location = &target.location;
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| super::connect::db_error(location, &e))?;
        loop {
            let started = Instant::now();
            match tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(super::connect::db_error(location, &e)),
                Err(_) => {
                    return Err(StoreError::Unavailable {
                        location: location.clone(),
                        message: "the database did not answer the listener in time".into(),
                        hint: super::connect::HINT_DOWN,
                    });
                }
            }
            // Every notification sent before the answer is in the channel now.
            loop {
                match rx.try_recv() {
                    Ok(payload) => answers.invalidate(&payload),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            answers.connected(started);
            let next = tokio::time::sleep(PING_EVERY);
            tokio::pin!(next);
            loop {
                tokio::select! {
                    _ = &mut next => break,
                    payload = rx.recv() => match payload {
                        Some(p) => answers.invalidate(&p),
                        None => return Ok(()),
                    },
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_used_unless_synced_and_a_notification_wins_a_race() {
        let a = Answers::default();
        assert_eq!(a.lookup("j", "s", 1), Err(None), "not synced yet");
        a.connected(Instant::now());
        let epoch = a.lookup("j", "s", 1).unwrap_err().unwrap();
        a.remember(epoch, "j", "s", 1);
        assert_eq!(a.lookup("j", "s", 1), Ok(()));
        assert!(a.lookup("j", "other", 1).is_err(), "another subject");
        // A notification between the question and the answer: not kept.
        let epoch = a.lookup("k", "s", 1).unwrap_err().unwrap();
        a.invalidate("zzz");
        a.remember(epoch, "k", "s", 1);
        assert!(a.lookup("k", "s", 1).is_err());
        a.invalidate("j");
        assert!(a.lookup("j", "s", 1).is_err());
        let epoch = a.lookup("j", "s", 1).unwrap_err().unwrap();
        a.remember(epoch, "j", "s", 1);
        a.invalidate("*");
        assert_eq!(a.len(), 0);
        let epoch = a.lookup("j", "s", 1).unwrap_err().unwrap();
        a.remember(epoch, "j", "s", 1);
        a.disconnected("gone".into());
        assert_eq!(a.len(), 0);
        assert_eq!(a.lookup("j", "s", 1), Err(None));
        assert_eq!(a.trouble().as_deref(), Some("gone"));
    }

    #[test]
    fn a_listener_that_has_not_synced_for_the_bound_is_not_trusted() {
        let a = Answers::default();
        a.connected(Instant::now() - TRUST_FOR);
        assert_eq!(a.lookup("j", "s", 1), Err(None));
        assert!(a.trouble().is_some());
    }
}
