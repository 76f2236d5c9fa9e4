//! Tests of the PostgreSQL engine against a real server: `TESSERA_TEST_PG_URL` names one
//! (scripts/test starts a scratch cluster and sets it; `eval "$(scripts/pg-scratch start)"`
//! does the same by hand). Each test gets a database of its own. Without the variable these
//! tests say so and pass, unless `TESSERA_REQUIRE_PG` is set (scripts/test sets it, so they
//! never skip there).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::PostgresStore;
use crate::store::settings::{StoreConfig, StoreEngine, check_url};
use crate::store::{Standing, StoreError, TokenStore};

/// The server to test against, or `None` (skip) when none is configured.
pub(crate) fn server_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("TESSERA_REQUIRE_PG").is_some() => {
            panic!("TESSERA_REQUIRE_PG is set but TESSERA_TEST_PG_URL is not: run scripts/test")
        }
        _ => {
            eprintln!("skipped: no PostgreSQL (set TESSERA_TEST_PG_URL, see scripts/pg-scratch)");
            None
        }
    }
}

/// Runs `f` on a throwaway current-thread runtime (for test set-up).
fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `url` with its database replaced by `db`.
fn with_db(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// Creates an empty database and returns the `[store]` settings that name it.
pub(crate) fn fresh_database() -> Option<StoreConfig> {
    static N: AtomicU64 = AtomicU64::new(0);
    let base = server_url()?;
    let db = format!(
        "tessera_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        Timestamp::now().as_millisecond() % 1_000_000
    );
    block(async {
        let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("connect to TESSERA_TEST_PG_URL");
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    });
    let (url, sslmode) = check_url(&with_db(&base, &db)).unwrap();
    Some(StoreConfig {
        engine: StoreEngine::Postgres,
        url,
        sslmode,
        ca_file: None,
        pool_size: 4,
        password_from_env: None,
        password_key: tessera_backends::KeyPath::new("tessera/store/password").unwrap(),
    })
}

/// A new handle on the database of `config`.
pub(crate) fn open(config: &StoreConfig) -> Arc<dyn TokenStore> {
    Arc::new(PostgresStore::open(config, None).unwrap())
}

/// Runs SQL as the server's superuser on the database of `config`.
fn admin(config: &StoreConfig, sql: &str) {
    let url = config.url.clone().unwrap();
    block(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = driver.await;
    });
}

fn live(jti: &str) -> crate::store::TokenRecord {
    crate::store::contract::live(jti, "ci", Timestamp::now())
}

#[test]
fn several_processes_migrating_at_once_agree_on_one_schema() {
    let Some(config) = fresh_database() else {
        return;
    };
    let stores: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|_| s.spawn(|| open(&config))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let report = stores[0].report().unwrap();
    assert_eq!(report.schema_version, super::SCHEMA_VERSION);
    assert_eq!(report.engine, "postgres");
    assert_eq!(report.rows.get("tokens"), Some(&0));
    // Opening again runs nothing and changes nothing.
    stores[1].record(&live("a")).unwrap();
    let again = open(&config);
    assert_eq!(again.report().unwrap().rows.get("tokens"), Some(&1));
}

#[test]
fn a_newer_schema_is_refused_with_the_fix() {
    let Some(config) = fresh_database() else {
        return;
    };
    drop(open(&config));
    admin(&config, "UPDATE tessera_schema SET version = 99");
    let err = PostgresStore::open(&config, None).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[test]
fn a_database_that_is_not_running_is_unavailable_with_a_clear_reason() {
    let mut config = match fresh_database() {
        Some(c) => c,
        None => return,
    };
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.url = Some(format!("postgres://tessera@127.0.0.1:{port}/tessera"));
    let started = Instant::now();
    let err = PostgresStore::open(&config, None).unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(text.contains("reconnects by itself"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The cached answer of one handle is dropped by a revocation made through another handle of
/// the same process at once (other processes get the notification: `tests/it/replicas.rs`),
/// and the listener reports itself healthy once synced.
#[test]
fn a_revocation_elsewhere_reaches_the_cached_answer() {
    let Some(config) = fresh_database() else {
        return;
    };
    let a = open(&config);
    let b = open(&config);
    let rec = live("cached");
    a.record(&rec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.health().is_err() || {
        a.check("cached", "ci", rec.issued_at).unwrap();
        false
    } {
        assert!(Instant::now() < deadline, "listener never synced");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Answered twice: the second one from the cache.
    assert_eq!(
        a.check("cached", "ci", rec.issued_at).unwrap(),
        Standing::Valid
    );
    assert_eq!(
        a.check("cached", "ci", rec.issued_at).unwrap(),
        Standing::Valid
    );
    b.revoke("cached", Timestamp::now()).unwrap();
    let revoked_at = Instant::now();
    while a.check("cached", "ci", rec.issued_at).unwrap() != Standing::Revoked {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "not seen within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Killing the listener's connection (a lost notification channel) never leaves a stale
/// answer beyond the bound: the cache is dropped and rebuilt after reconnecting.
#[test]
fn a_lost_listener_connection_keeps_the_bound() {
    let Some(config) = fresh_database() else {
        return;
    };
    let a = open(&config);
    let b = open(&config);
    let rec = live("x");
    a.record(&rec).unwrap();
    a.check("x", "ci", rec.issued_at).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.health().is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    a.check("x", "ci", rec.issued_at).unwrap();
    // Terminate the listener, and revoke while it is gone: this notification is lost.
    admin(
        &config,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'tessera-listener' AND datname = current_database()",
    );
    b.revoke("x", Timestamp::now()).unwrap();
    let revoked_at = Instant::now();
    while a.check("x", "ci", rec.issued_at).unwrap() != Standing::Revoked {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "stale beyond 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // And it comes back by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.health().is_err() {
        assert!(Instant::now() < deadline, "listener did not reconnect");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Called from a task of a multi-threaded runtime (as the server calls it), the store
/// neither panics nor blocks the runtime's other tasks.
#[test]
fn calls_from_async_tasks_do_not_stall_the_runtime() {
    let Some(config) = fresh_database() else {
        return;
    };
    let store = open(&config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let t = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for j in 0..20 {
                    let rec = live(&format!("t{i}-{j}"));
                    store.record(&rec).unwrap();
                    store.check(&rec.jti, "ci", rec.issued_at).unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        ticker.abort();
        assert!(ticks.load(Ordering::Relaxed) > 0, "the ticker never ran");
    });
    // Dropping the store inside a runtime does not panic either.
    rt.block_on(async move { drop(store) });
}

/// `sslmode=require` with `store.ca_file`: the connection is TLS, verified against that CA;
/// without it (the system's CAs) the server's certificate is refused with the TLS hint.
#[test]
fn tls_to_the_database_is_verified_against_the_configured_ca() {
    let Some(mut config) = fresh_database() else {
        return;
    };
    let ca = match std::env::var("TESSERA_TEST_PG_CA") {
        Ok(ca) if !ca.is_empty() => ca,
        _ if std::env::var_os("TESSERA_REQUIRE_PG").is_some() => {
            panic!("TESSERA_TEST_PG_CA is not set: start the cluster with scripts/pg-scratch")
        }
        _ => return,
    };
    config.sslmode = crate::store::settings::SslMode::Require;
    config.ca_file = Some(ca.into());
    let store = PostgresStore::open(&config, None).unwrap();
    let ssl: bool = store
        .run(|sh| async move {
            let c = sh.client().await?;
            let row = c
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .map_err(|e| sh.err(e))?;
            Ok::<bool, StoreError>(row.get(0))
        })
        .unwrap();
    assert!(ssl, "the connection is not TLS");
    store.record(&live("over-tls")).unwrap();
    assert_eq!(
        store.token_state("over-tls").unwrap(),
        crate::store::TokenState::Active
    );

    config.ca_file = None;
    let err = PostgresStore::open(&config, None).unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(err.hint(), super::connect::HINT_TLS, "{err}");
}
