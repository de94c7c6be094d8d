//! A primary with a streaming standby, both private PostgreSQL servers of the test's own: the
//! store follows a multi-host URL (`target_session_attrs=read-write`) to whichever accepts writes,
//! refuses quickly in between, and with a synchronous standby no acknowledged revocation is lost
//! when the primary dies; with an asynchronous one, one can be.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_core::{RevocationEvent, RevocationIndex, UnixMillis};
use tollgate_postgres::testing::{PostgresServer, multi_host_url};
use tollgate_postgres::{PostgresOptions, PostgresStore, PostgresTarget};
use tollgate_store::{Record, Store};

/// How long one operation may take: also the longest a request may wait during a failover.
const OPERATION: Duration = Duration::from_secs(2);

fn options() -> PostgresOptions {
    PostgresOptions::default()
        .connect_timeout(Duration::from_secs(1))
        .operation_timeout(OPERATION)
}

async fn open(url: &str) -> PostgresStore {
    PostgresStore::connect(PostgresTarget::new(url).expect("URL"), options())
        .await
        .expect("connect")
}

fn now() -> UnixMillis {
    UnixMillis::from(std::time::SystemTime::now())
}

fn revocation(jti: &str) -> Vec<Record> {
    vec![Record::Revocation(RevocationEvent::Token {
        jti: jti.into(),
        expires_at: UnixMillis(now().0 + 3_600_000),
    })]
}

/// What a replica that (re)starts on `url` refuses: its revocation index, fed from the store.
async fn replica_index(url: &str) -> RevocationIndex {
    let store = open(url).await;
    let loaded = store.load(now()).await.expect("load");
    let index = RevocationIndex::new();
    for event in &loaded.revocations {
        index.apply(event);
    }
    index
}

/// Commits `jti` until it succeeds, within `within`; every failed attempt must fail within the
/// operation timeout (a `503`, never a hang). Returns how long commits failed.
async fn commit_until_accepted(store: &PostgresStore, jti: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let attempt = Instant::now();
        match store.commit(revocation(jti)).await {
            Ok(()) => return start.elapsed(),
            Err(e) => {
                assert!(
                    attempt.elapsed() <= OPERATION + Duration::from_millis(500),
                    "a commit during the failover took {:?}: {e}",
                    attempt.elapsed()
                );
                assert!(start.elapsed() < within, "never accepted again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_url_follows_the_promoted_standby() {
    let primary = PostgresServer::start_private();
    let standby = primary.start_standby(false);
    let url = multi_host_url(&[&primary, &standby]);
    let store = open(&url).await;
    store.commit(revocation("before")).await.expect("commit");

    primary.kill();
    // The standby refuses writes until promoted: connections to it are turned down
    // (`target_session_attrs=read-write`) and commits fail at once rather than hang.
    let started = Instant::now();
    let refused = store.commit(revocation("meanwhile")).await;
    assert!(
        refused.is_err(),
        "committed with no primary (on a standby?)"
    );
    assert!(started.elapsed() <= OPERATION + Duration::from_millis(500));
    standby.promote();
    let gap = commit_until_accepted(&store, "after", Duration::from_secs(20)).await;
    eprintln!("writes refused for {gap:?} after the promotion");

    // A replica started now, on the same URL: its first host is down, the second is primary.
    let index = replica_index(&url).await;
    for jti in ["before", "after"] {
        assert!(index.is_token_revoked(jti), "{jti} missing after failover");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_synchronous_standby_no_acknowledged_revocation_is_lost() {
    let primary = PostgresServer::start_private();
    let standby = primary.start_standby(true);
    let url = multi_host_url(&[&primary, &standby]);
    let store = Arc::new(open(&url).await);
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let failures = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A burst: 8 clients revoking back to back, each remembering what was acknowledged.
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (store, acknowledged, failures, stop) = (
                store.clone(),
                acknowledged.clone(),
                failures.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let jti = format!("c{client}-{n}");
                    n += 1;
                    let attempt = Instant::now();
                    match store.commit(revocation(&jti)).await {
                        Ok(()) => {
                            acknowledged.lock().unwrap().insert(jti);
                        }
                        Err(_) => {
                            assert!(
                                attempt.elapsed() <= OPERATION + Duration::from_millis(500),
                                "a commit hung for {:?}",
                                attempt.elapsed()
                            );
                            failures.lock().unwrap().push(Instant::now());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kill = acknowledged.lock().unwrap().len();
    assert!(before_kill > 10, "the burst did not get going");
    let killed = Instant::now();
    primary.kill();
    standby.promote();
    // The burst goes on against the promoted standby.
    let resumed = Instant::now() + Duration::from_secs(20);
    loop {
        let last_failure = failures.lock().unwrap().last().copied();
        if last_failure.is_some_and(|at| at.elapsed() > Duration::from_millis(500)) {
            break;
        }
        assert!(Instant::now() < resumed, "commits never succeeded again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client panicked");
    }
    let failures = failures.lock().unwrap().clone();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let refused_for = failures
        .iter()
        .max()
        .map_or(Duration::ZERO, |last| last.duration_since(killed));
    eprintln!(
        "{} revocations acknowledged ({before_kill} before the kill), {} refused attempts, \
         refusals for {refused_for:?} after the kill",
        acknowledged.len(),
        failures.len()
    );

    let index = replica_index(&url).await;
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|jti| !index.is_token_revoked(jti))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged revocations lost: {lost:?}",
        lost.len()
    );
}

/// The trade-off, shown deterministically: the standby is away while a revocation is committed,
/// then the primary dies and the standby is promoted. An asynchronous standby let the primary
/// acknowledge it, and it is gone; a synchronous one makes the primary wait, so the revocation
/// is never acknowledged (the client hears an error: `503`), and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asynchronous_standby_can_lose_an_acknowledged_revocation_a_synchronous_one_cannot() {
    for synchronous in [false, true] {
        let primary = PostgresServer::start_private();
        let standby = primary.start_standby(synchronous);
        let url = multi_host_url(&[&primary, &standby]);
        let store = open(&url).await;
        store
            .commit(revocation("replicated"))
            .await
            .expect("commit");
        // Wait until the standby has replayed it.
        let lsn = primary.sql("SELECT pg_current_wal_lsn()");
        let deadline = Instant::now() + Duration::from_secs(10);
        while standby.sql(&format!(
            "SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
        )) != "t"
        {
            assert!(Instant::now() < deadline, "the standby never caught up");
            std::thread::sleep(Duration::from_millis(20));
        }

        standby.stop();
        let unconfirmed = store.commit(revocation("unconfirmed")).await;
        primary.kill();
        standby.start_again();
        standby.promote();
        let index = replica_index(&url).await;
        assert!(index.is_token_revoked("replicated"));
        if synchronous {
            assert!(
                unconfirmed.is_err(),
                "a synchronous primary acknowledged a commit no standby had"
            );
        } else {
            assert!(
                unconfirmed.is_ok(),
                "an asynchronous primary acknowledges at once"
            );
            assert!(
                !index.is_token_revoked("unconfirmed"),
                "the acknowledged revocation survived: the standby had it after all?"
            );
        }
    }
}
