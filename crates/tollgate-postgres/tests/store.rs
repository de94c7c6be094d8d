//! `PostgresStore` against a real PostgreSQL of the test's own (see `tollgate_postgres::testing`).

use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::{RevocationEvent, UnixMillis};
use tollgate_postgres::testing::{PostgresServer, client};
use tollgate_postgres::{PostgresOptions, PostgresStore, PostgresTarget};
use tollgate_store::testing::{self, NOW, access_token, assert_every_record_kind};
use tollgate_store::{Outbox, Record, Store};

fn options() -> PostgresOptions {
    PostgresOptions::default()
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
}

async fn open(target: &PostgresTarget) -> PostgresStore {
    PostgresStore::connect(target.clone(), options())
        .await
        .expect("connect")
}

fn revoke(jti: &str) -> Vec<Record> {
    vec![Record::Revocation(RevocationEvent::Token {
        jti: jti.into(),
        expires_at: UnixMillis(9_000_000),
    })]
}

#[tokio::test]
async fn keeps_the_store_contract() {
    let server = PostgresServer::start();
    testing::check_store(|| {
        let server = &server;
        async move { open(&server.create_database().await).await }
    })
    .await;
    testing::check_outbox(|| {
        let server = &server;
        async move { open(&server.create_database().await).await }
    })
    .await;
}

/// Replicas' coordination: issue instants from the database's clock, exact counts under
/// concurrent issuance, the refresh compare-and-set, the shared throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_shared_store_contract() {
    let server = PostgresServer::start();
    testing::check_shared_store(|| {
        let server = &server;
        async move { open(&server.create_database().await).await }
    })
    .await;
}

/// Two stores on one database are two replicas: a count at one sees what the other issued, and
/// a rotation at one is a replay at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_database_coordinate_as_replicas() {
    let server = PostgresServer::start();
    let target = server.create_database().await;
    let a: Arc<dyn Store> = Arc::new(open(&target).await);
    let b: Arc<dyn Store> = Arc::new(open(&target).await);
    let c: Arc<dyn Store> = Arc::new(open(&target).await);
    testing::counts_are_exact_across(vec![a.clone(), b.clone()], c).await;
    // The refresh token `a` issued is rotated once, whichever replica asks first.
    testing::rotation_is_compare_and_set(a).await;
}

#[tokio::test]
async fn a_reopened_store_keeps_everything() {
    let server = PostgresServer::start();
    let target = server.target();
    let store = open(&target).await;
    store.commit(testing::every_record_kind()).await.unwrap();
    store.write_behind(revoke("behind")).unwrap();
    store.flush().await.unwrap();
    let mark = tollgate_store::OutboxPosition {
        epoch: "e1".into(),
        published_through: 3,
    };
    store.outbox_mark(mark.clone()).await.unwrap();
    drop(store);

    let store = open(&target).await;
    let mut loaded = store.load(NOW).await.unwrap();
    let behind = revoke("behind").remove(0);
    let Record::Revocation(behind) = behind else {
        unreachable!()
    };
    assert!(loaded.revocations.contains(&behind));
    loaded.revocations.retain(|e| e != &behind);
    assert_every_record_kind(loaded);
    assert_eq!(store.outbox_status().await.unwrap().position, mark);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opening_together_migrate_once() {
    let server = PostgresServer::start();
    let target = server.create_database().await;
    let opening: Vec<_> = (0..6)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move { PostgresStore::connect(target, options()).await })
        })
        .collect();
    for store in opening {
        store.await.unwrap().expect("every store opens");
    }
    // And again, on a database already migrated.
    open(&target).await;
    let rows = client(&target)
        .await
        .query("SELECT version FROM schema_version", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 3, "the newest schema version");
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let server = PostgresServer::start();
    let target = server.create_database().await;
    open(&target).await;
    client(&target)
        .await
        .execute("UPDATE schema_version SET version = 99", &[])
        .await
        .unwrap();
    let error = PostgresStore::connect(target, options())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown schema version 99"), "{error}");
}

#[tokio::test]
async fn a_wrong_password_is_one_clear_line_without_the_password() {
    let server = PostgresServer::start();
    let target = server.target();
    // Trust authentication accepts any password, so ask for a user that does not exist instead,
    // and check the password never shows.
    let url = target.to_string().replace("tollgate@", "nobody:hunter2@");
    let error = PostgresStore::connect(PostgresTarget::new(&url).unwrap(), options())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("nobody"), "{error}");
    assert!(
        !error.contains("hunter2") && !error.contains('\n'),
        "{error}"
    );
}

#[tokio::test]
async fn a_password_is_required_and_a_wrong_one_refused() {
    let server = PostgresServer::start_private_with_password("right-password");
    let store = open(&server.target()).await;
    store.commit(revoke("with-password")).await.unwrap();
    let wrong = server.target().with_password(Some("wrong-password".into()));
    let error = PostgresStore::connect(wrong, options())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(
        !error.contains("wrong-password") && !error.contains('\n'),
        "{error}"
    );
}

#[tokio::test]
async fn unreachable_database_fails_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = PostgresTarget::new(&format!("postgresql://tollgate@127.0.0.1:{port}/x")).unwrap();
    let started = Instant::now();
    let error = PostgresStore::connect(target, options()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{error}");
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_fails_commits_quickly_and_the_store_recovers_by_itself() {
    let server = PostgresServer::start_private();
    let target = server.target();
    let store = open(&target).await;
    store.commit(revoke("before")).await.unwrap();

    server.stop();
    let started = Instant::now();
    let error = store.commit(revoke("while-down")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(!error.to_string().contains('\n'), "{error}");
    assert!(store.load(NOW).await.is_err(), "reads fail too");
    // Issuance is refused (the issuer answers 503) rather than accepted and lost.
    assert!(store.write_behind(revoke("behind")).is_err());

    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.commit(revoke("after")).await {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.write_behind(revoke("behind")).is_err() {
        assert!(Instant::now() < deadline, "write-behind never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.flush().await.unwrap();
    let loaded = store.load(NOW).await.unwrap();
    let jtis: Vec<_> = loaded
        .revocations
        .iter()
        .filter_map(|e| match e {
            RevocationEvent::Token { jti, .. } => Some(jti.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        jtis.contains(&"before") && jtis.contains(&"after") && jtis.contains(&"behind"),
        "{jtis:?}"
    );
    assert!(!jtis.contains(&"while-down"), "{jtis:?}");
    // The outbox reads recover too.
    assert_eq!(store.outbox_status().await.unwrap().pending, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_share_transactions() {
    let server = PostgresServer::start();
    let target = server.target();
    let store = Arc::new(open(&target).await);
    // While another connection locks the table the first batch waits, and every other commit
    // queues up behind it, as they do behind a slow flush.
    let mut blocker = client(&target).await;
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE access_tokens IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let before = store.transactions();
    let commits: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            let record = Record::AccessToken(access_token(&format!("t{i}"), NOW.0));
            tokio::spawn(async move { store.commit(vec![record]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.rollback().await.unwrap();
    for commit in commits {
        commit.await.unwrap().unwrap();
    }
    assert_eq!(store.load(NOW).await.unwrap().access_tokens.len(), 200);
    let transactions = store.transactions() - before;
    assert!(
        transactions < 20,
        "{transactions} transactions for 200 commits"
    );
}

#[tokio::test]
async fn a_failing_job_costs_only_itself() {
    let server = PostgresServer::start();
    let target = server.target();
    let store = Arc::new(open(&target).await);
    // A record the database refuses, as a full disk or a corrupt page would refuse one.
    client(&target)
        .await
        .batch_execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.jti = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON access_tokens
             FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .await
        .unwrap();
    let record = |jti: &str| Record::AccessToken(access_token(jti, NOW.0 + 1));
    // Queued together, so that they share a batch.
    let (a, b, c) = tokio::join!(
        store.commit(vec![record("before")]),
        store.commit(vec![record("same-job"), record("poison")]),
        store.commit(vec![record("after")]),
    );
    assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
    let error = b.unwrap_err().to_string();
    assert!(error.contains("poisoned"), "{error}");
    let mut jtis: Vec<_> = store
        .load(NOW)
        .await
        .unwrap()
        .access_tokens
        .into_iter()
        .map(|t| t.jti)
        .collect();
    jtis.sort();
    assert_eq!(jtis, ["after", "before"]);
    // The connection survived a refused record.
    store.commit(vec![record("later")]).await.unwrap();
}

#[tokio::test]
async fn purge_can_use_the_expiry_indexes() {
    let server = PostgresServer::start();
    let target = server.target();
    open(&target).await;
    let client = client(&target).await;
    // The tables are tiny here, so the planner would rightly scan them; forbid that to see that
    // an index serves the purge's condition.
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    for table in ["access_tokens", "refresh_tokens", "revocations"] {
        let plan: Vec<String> = client
            .query(
                &format!("EXPLAIN DELETE FROM {table} WHERE expires_at < 5"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains(&format!("{table}_expires_at")),
            "{table}: {plan}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_numbers_are_visible_in_order_across_stores() {
    // Two stores (two replicas) revoke concurrently while a reader follows the outbox as a relay
    // does: whatever it has passed must never gain a smaller number later.
    // (Without the outbox lock in `sql::write` this fails: the reader misses a few of the 300.)
    let server = PostgresServer::start();
    let target = server.target();
    let stores = [open(&target).await, open(&target).await];
    let writers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(s, store)| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    store.commit(revoke(&format!("s{s}-{i}"))).await.unwrap();
                }
            })
        })
        .collect();
    let reader = stores[0].clone();
    let mut seen = 0u64;
    let mut read = 0usize;
    while read < 300 {
        let entries = reader.outbox_read(seen, 50).await.unwrap();
        if let Some(last) = entries.last() {
            seen = last.seq;
        }
        read += entries.len();
        if read < 300 && writers.iter().all(|w| w.is_finished()) {
            let rest = reader.outbox_read(seen, 1000).await.unwrap();
            read += rest.len();
            break;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(read, 300, "a relay following the outbox missed revocations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overrunning_commit_fails_in_time_and_leaves_nothing_behind() {
    let server = PostgresServer::start();
    let target = server.create_database().await;
    let timeout = Duration::from_millis(500);
    let store = PostgresStore::connect(target.clone(), options().operation_timeout(timeout))
        .await
        .unwrap();
    let mut blocker = client(&target).await;
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE access_tokens IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let record = |jti: &str| vec![Record::AccessToken(access_token(jti, NOW.0 + 1))];
    let error = store.commit(record("stuck")).await.unwrap_err();
    assert!(started.elapsed() < timeout * 4, "{:?}", started.elapsed());
    assert!(error.to_string().contains("time"), "{error}");
    lock.rollback().await.unwrap();

    store.commit(record("later")).await.unwrap();
    let jtis: Vec<_> = store
        .load(NOW)
        .await
        .unwrap()
        .access_tokens
        .into_iter()
        .map(|t| t.jti)
        .collect();
    assert_eq!(jtis, ["later"], "the overrun commit was rolled back");
}

#[tokio::test]
async fn an_access_token_written_twice_in_one_batch_keeps_its_last_record() {
    let server = PostgresServer::start();
    let store = open(&server.target()).await;
    let first = access_token("twice", NOW.0 + 10);
    let last = access_token("twice", NOW.0 + 20);
    store
        .commit(vec![
            Record::AccessToken(first.clone()),
            Record::AccessToken(last.clone()),
        ])
        .await
        .unwrap();
    // And across jobs that share a batch.
    store.write_behind(vec![Record::AccessToken(last)]).unwrap();
    store
        .write_behind(vec![Record::AccessToken(first.clone())])
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.load(NOW).await.unwrap().access_tokens, vec![first]);
}

/// The count judges tenant cutoffs the same whether it writes them into the query (few) or
/// matches them through arrays (many).
#[tokio::test]
async fn counts_agree_with_few_and_many_tenant_cutoffs() {
    use tollgate_core::CutoffScope;
    use tollgate_store::{AccessTokenRecord, SharedStore, Stamp};
    let server = PostgresServer::start();
    for others in [3, 40] {
        let store = open(&server.create_database().await).await;
        for (jti, tenant) in [
            ("sub-1", "/Org/Sub"),
            ("sub-2", "/Org/Sub"),
            ("other", "/Other"),
        ] {
            let stamp: Stamp = Box::new(move |at| {
                vec![Record::AccessToken(AccessTokenRecord {
                    jti: jti.into(),
                    grant_id: None,
                    tenant: tenant.into(),
                    subject: "s".into(),
                    client_id: "c".into(),
                    issued_at: at,
                    expires_at: at.saturating_add(Duration::from_secs(60)),
                })]
            });
            store.commit_issued(stamp).await.unwrap();
        }
        // Cutoffs on unrelated tenants (one a prefix of a real one without being its ancestor),
        // and /Org, which covers /Org/Sub.
        let mut cutoffs: Vec<Record> = (0..others)
            .map(|n| {
                Record::Revocation(RevocationEvent::Cutoff {
                    scope: CutoffScope::Tenant(format!("/T{n}")),
                    issued_before: UnixMillis(i64::MAX / 2),
                })
            })
            .collect();
        for path in ["/Oth", "/Org"] {
            cutoffs.push(Record::Revocation(RevocationEvent::Cutoff {
                scope: CutoffScope::Tenant(path.into()),
                issued_before: UnixMillis(i64::MAX / 2),
            }));
        }
        store.commit(cutoffs).await.unwrap();
        let cut = store.cut_off(&CutoffScope::All, None).await.unwrap();
        assert_eq!(
            cut.count, 1,
            "only /Other's token, with {others} other cutoffs"
        );
    }
}

/// The live-token figure of replicas: counted in the database, so each replica sees the tokens
/// every other one issued; expired ones are not counted.
#[tokio::test]
async fn live_tokens_are_counted_across_replicas() {
    use tollgate_store::{LiveCount, SharedStore, testing::refresh_token};
    let server = PostgresServer::start();
    let target = server.create_database().await;
    let (issuing, counting) = (open(&target).await, open(&target).await);
    assert_eq!(counting.live_tokens().await.unwrap(), LiveCount::default());
    let now = UnixMillis::from(std::time::SystemTime::now()).0;
    issuing
        .commit(vec![
            Record::AccessToken(access_token("live-1", now + 600_000)),
            Record::AccessToken(access_token("live-2", now + 600_000)),
            Record::AccessToken(access_token("expired", now - 1_000)),
            Record::RefreshToken(refresh_token(1, now + 3_600_000)),
            Record::RefreshToken(refresh_token(2, now - 1_000)),
        ])
        .await
        .unwrap();
    assert_eq!(
        counting.live_tokens().await.unwrap(),
        LiveCount {
            access: 2,
            refresh: 1
        }
    );
}
