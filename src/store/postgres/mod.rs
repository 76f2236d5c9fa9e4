//! The token store on PostgreSQL, shared by any number of `tessera serve` replicas and CLIs.
//!
//! Layout: `connect.rs` (settings, TLS, pool, errors), `schema.rs` (ordered migration steps,
//! version table, advisory lock), one file per group of tables (`tokens.rs`, `counters.rs`,
//! `sessions.rs`, `keys.rs`, `exchange.rs`),
//! `listen.rs` (the answer cache and its `LISTEN/NOTIFY` listener), `import.rs` (copying an
//! SQLite store in).
//!
//! The bridge between the synchronous [`TokenStore`] trait and the async driver: the engine
//! owns a small tokio runtime of its own (two threads, [`PostgresStore::run`]). A call sends
//! its future there and waits for the answer on a plain channel; on a worker thread of the
//! caller's multi-threaded runtime the wait is wrapped in `block_in_place`, so the caller's
//! other tasks move to another thread instead of stalling, and the wait can never deadlock
//! on the caller's runtime (the work does not run there). Every call is bounded by
//! [`CALL_TIMEOUT`] on top of the pool's and the server's own time limits.

mod connect;
mod counters;
mod exchange;
pub(crate) mod import;
mod keys;
mod lazy;
mod listen;
mod schema;
mod sessions;
mod tokens;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use jiff::Timestamp;
use secrecy::SecretString;

use listen::Answers;

use crate::store::settings::StoreConfig;
use crate::store::{
    ApiKeyRecord, CounterUpdate, IssueError, KeyChange, KeyCreated, KeyUse, SessionRecord,
    Standing, StoreError, StoreReport, StoredKeyState, TokenRecord, TokenState, TokenStore, ms,
};

pub(crate) use lazy::PgOpener;
pub(crate) use schema::SCHEMA_VERSION;

/// The longest one store call may take, whatever happens to the database.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the calls share: the pool, the address, the answer cache.
#[derive(Debug)]
pub(crate) struct Shared {
    pool: Pool,
    location: String,
    answers: Arc<Answers>,
}

impl Shared {
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| connect::pool_error(&self.location, e))
    }

    fn err(&self, e: tokio_postgres::Error) -> StoreError {
        connect::db_error(&self.location, &e)
    }

    /// After a committed write that notified `payloads`: drops the answers they name in the
    /// cache of every handle of this process on the same database at once, so that one
    /// process sees its own writes through any handle without waiting for the notification
    /// (other processes get it through `LISTEN` within the bound).
    fn changed(&self, payloads: &[&str]) {
        let mut caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
        caches.retain(|(_, w)| w.strong_count() > 0);
        for (location, answers) in caches.iter() {
            if *location == self.location
                && let Some(answers) = answers.upgrade()
            {
                for p in payloads {
                    answers.invalidate(p);
                }
            }
        }
    }
}

/// The answer caches of the open handles of this process, by database location.
static CACHES: std::sync::Mutex<Vec<(String, std::sync::Weak<Answers>)>> =
    std::sync::Mutex::new(Vec::new());

/// The PostgreSQL engine. Callers open it through [`crate::store::open`].
pub struct PostgresStore {
    shared: Arc<Shared>,
    target: connect::Target,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// Set once the listener runs (started by the first `check`: a CLI that never checks a
    /// token never opens a second connection).
    listening: OnceLock<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Allowed anywhere, also inside another runtime (a plain drop would panic there).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl PostgresStore {
    /// Connects to the database `config` names (with `password`, if any), and brings its
    /// schema up to date (safe when several processes start at once).
    pub fn open(config: &StoreConfig, password: Option<&SecretString>) -> Result<Self, StoreError> {
        let target = connect::Target::new(config, password)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tessera-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable {
                location: target.location.clone(),
                message: format!("cannot start the store's threads: {e}"),
                hint: "the system is out of threads or memory",
            })?;
        let pool = {
            let _entered = runtime.enter();
            target.pool(config.pool_size)?
        };
        let answers = Arc::new(Answers::default());
        CACHES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((target.location.clone(), Arc::downgrade(&answers)));
        let store = PostgresStore {
            shared: Arc::new(Shared {
                pool,
                location: target.location.clone(),
                answers,
            }),
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            target,
            listening: OnceLock::new(),
        };
        store.run(|sh| async move {
            let mut client = sh.client().await?;
            schema::migrate(&mut client, &sh.location).await.map(drop)
        })?;
        Ok(store)
    }

    /// Where the database is (its URL, without a password).
    pub fn location(&self) -> &str {
        &self.shared.location
    }

    /// Runs `f` on the engine's runtime and waits for its answer (see the module comment).
    pub(crate) fn run<T, E, F, Fut>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let location = self.shared.location.clone();
        let work = f(Arc::clone(&self.shared));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let answer = match tokio::time::timeout(CALL_TIMEOUT, work).await {
                Ok(answer) => answer,
                Err(_) => Err(E::from(StoreError::Unavailable {
                    location,
                    message: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
                    hint: connect::HINT_DOWN,
                })),
            };
            let _ = tx.send(answer);
        });
        let location = &self.shared.location;
        let wait = move || {
            rx.recv().unwrap_or_else(|_| {
                Err(E::from(StoreError::Unavailable {
                    location: location.clone(),
                    message: "the store's threads stopped".into(),
                    hint: connect::HINT_DOWN,
                }))
            })
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    fn start_listener(&self) {
        self.listening.get_or_init(|| {
            self.handle.spawn(listen::run(
                self.target.clone(),
                Arc::clone(&self.shared.answers),
            ));
        });
    }
}

impl TokenStore for PostgresStore {
    fn record(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.run(|sh| async move { sh.record(&record).await })
    }

    fn record_checked(
        &self,
        record: &TokenRecord,
        parent_issued_at: Option<Timestamp>,
        max_live: usize,
    ) -> Result<(), IssueError> {
        let record = record.clone();
        self.run(|sh| async move { sh.record_checked(&record, parent_issued_at, max_live).await })
    }

    /// From the answer cache when the listener is synced (see `listen.rs`), else the
    /// database. Only "valid" answers are kept.
    fn check(
        &self,
        jti: &str,
        subject: &str,
        issued_at: Timestamp,
    ) -> Result<Standing, StoreError> {
        self.start_listener();
        let issued_at = ms(issued_at);
        let epoch = match self.shared.answers.lookup(jti, subject, issued_at) {
            Ok(()) => return Ok(Standing::Valid),
            Err(epoch) => epoch,
        };
        let (j, s) = (jti.to_owned(), subject.to_owned());
        let standing = self.run(|sh| async move { sh.check(&j, &s, issued_at).await })?;
        if let (Standing::Valid, Some(epoch)) = (standing, epoch) {
            self.shared.answers.remember(epoch, jti, subject, issued_at);
        }
        Ok(standing)
    }

    fn token_state(&self, jti: &str) -> Result<TokenState, StoreError> {
        let jti = jti.to_owned();
        self.run(|sh| async move { sh.token_state(&jti).await })
    }

    fn revoke(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.run(|sh| async move { sh.revoke(&jti, now).await })
    }

    fn revoke_subject(&self, subject: &str, now: Timestamp) -> Result<usize, StoreError> {
        let subject = subject.to_owned();
        self.run(|sh| async move { sh.revoke_subject(&subject, ms(now)).await })
    }

    fn revoke_all(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.run(|sh| async move { sh.revoke_all(ms(now)).await })
    }

    fn mark_used(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.run(|sh| async move { sh.mark_used(&jti, ms(now)).await })
    }

    fn list(&self, now: Timestamp) -> Result<Vec<TokenRecord>, StoreError> {
        self.run(|sh| async move { sh.list(ms(now)).await })
    }

    fn prune(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.run(|sh| async move { sh.prune(now).await })
    }

    fn update_counters(
        &self,
        keys: &[String],
        now: Timestamp,
        update: CounterUpdate,
    ) -> Result<u64, StoreError> {
        let keys = keys.to_vec();
        self.run(|sh| async move { sh.update_counters(keys, now, update).await })
    }

    // --- Sessions (contract section 9): in `sessions.rs`, never cached ---

    fn session_create(&self, s: &SessionRecord, max_per_subject: usize) -> Result<(), StoreError> {
        let s = s.clone();
        self.run(|sh| async move { sh.session_create(s, max_per_subject).await })
    }

    fn session_get(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.to_owned();
        self.run(|sh| async move { sh.session_get(id, now).await })
    }

    fn session_touch(&self, id: &str, now: Timestamp, address: &str) -> Result<(), StoreError> {
        let (id, address) = (id.to_owned(), address.to_owned());
        self.run(|sh| async move { sh.session_touch(id, now, address).await })
    }

    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(|sh| async move { sh.session_delete(id).await })
    }

    fn session_delete_subject(&self, subject: &str) -> Result<usize, StoreError> {
        let subject = subject.to_owned();
        self.run(|sh| async move { sh.session_delete_subject(subject).await })
    }

    fn session_list(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let subject = subject.to_owned();
        self.run(|sh| async move { sh.session_list(subject, now).await })
    }

    // --- API keys (contract section 9): in `keys.rs`, never cached ---

    fn create_key(&self, key: &ApiKeyRecord, max_live: usize) -> Result<KeyCreated, StoreError> {
        let key = key.clone();
        self.run(|sh| async move { sh.create_key(key, max_live).await })
    }

    fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        let digest = *digest;
        self.run(|sh| async move { sh.key_by_digest(digest).await })
    }

    fn key_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let id = id.to_owned();
        self.run(|sh| async move { sh.key_by_id(id).await })
    }

    fn list_keys(&self, owner: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let owner = owner.map(str::to_owned);
        self.run(|sh| async move { sh.list_keys(owner).await })
    }

    fn set_key_state(&self, id: &str, to: StoredKeyState) -> Result<KeyChange, StoreError> {
        let id = id.to_owned();
        self.run(|sh| async move { sh.set_key_state(id, to).await })
    }

    fn rotate_key(
        &self,
        old_id: &str,
        new: &ApiKeyRecord,
        grace_until: Option<Timestamp>,
    ) -> Result<KeyChange, StoreError> {
        let (old_id, new) = (old_id.to_owned(), new.clone());
        self.run(|sh| async move { sh.rotate_key(old_id, new, grace_until).await })
    }

    fn touch_keys(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        let uses = uses.to_vec();
        self.run(|sh| async move { sh.touch_keys(uses).await })
    }

    // --- Exchanged ID tokens (contract section 11): in `exchange.rs` ---

    fn mark_id_token_exchanged(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(|sh| async move { sh.mark_id_token_exchanged(id, expires_at, now).await })
    }

    /// No round trip: what the listener (which pings every 200 ms) last saw. Before it has
    /// connected for the first time, one query.
    fn health(&self) -> Result<(), StoreError> {
        self.start_listener();
        let trouble = self.shared.answers.trouble();
        if trouble.as_deref() == Some(listen::NOT_YET) {
            // Just started: ask once.
            return self.run(|sh| async move {
                let client = sh.client().await?;
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| sh.err(e))?;
                Ok(())
            });
        }
        match trouble {
            None => Ok(()),
            Some(message) => Err(StoreError::Unavailable {
                location: self.shared.location.clone(),
                message,
                hint: connect::HINT_DOWN,
            }),
        }
    }

    fn report(&self) -> Result<StoreReport, StoreError> {
        self.run(|sh| async move {
            let client = sh.client().await?;
            let version = schema::version(&client, &sh.location).await?;
            let mut rows = std::collections::BTreeMap::new();
            for table in crate::store::REPORTED_TABLES {
                let exists: bool = client
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
                    .await
                    .map_err(|e| sh.err(e))?
                    .get(0);
                if exists {
                    let n: i64 = client
                        .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                        .await
                        .map_err(|e| sh.err(e))?
                        .get(0);
                    rows.insert((*table).to_owned(), n);
                }
            }
            Ok(StoreReport {
                engine: "postgres",
                location: sh.location.clone(),
                schema_version: version,
                known_version: SCHEMA_VERSION,
                rows,
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
