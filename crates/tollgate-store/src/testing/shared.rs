//! The contract of a store shared by several replicas (one whose [`Store::shared`] is a
//! [`SharedStore`]): run [`check_shared_store`] against it, besides
//! [`check_store`](super::check_store) and [`check_outbox`](super::check_outbox).
//!
//! Each check takes the store as the issuer holds it, an `Arc<dyn Store>`, and reaches its
//! coordination through [`Store::shared`].

use super::outbox_of;
use crate::{
    AccessTokenRecord, Record, RefreshTokenRecord, Rotation, Settled, SharedStore, Stamp, Store,
    ThrottlePolicy,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};

const MINUTE: Duration = Duration::from_secs(60);

/// Records for an access token `jti` of (`tenant`, `subject`, `client`) issued at the stamped
/// instant for a minute, with a refresh token of its grant when `refresh` is given.
fn stamp(jti: &str, owner: (&str, &str, &str), grant: Option<&str>, refresh: Option<u8>) -> Stamp {
    let (jti, grant) = (jti.to_owned(), grant.map(str::to_owned));
    let (tenant, subject, client) = (owner.0.to_owned(), owner.1.to_owned(), owner.2.to_owned());
    Box::new(move |at: UnixMillis| {
        let mut records = vec![Record::AccessToken(AccessTokenRecord {
            jti: jti.clone(),
            grant_id: grant.clone(),
            tenant: tenant.clone(),
            subject: subject.clone(),
            client_id: client.clone(),
            issued_at: at,
            expires_at: at.saturating_add(MINUTE),
        })];
        if let Some(id) = refresh {
            records.push(Record::RefreshToken(RefreshTokenRecord {
                hash: [id; 32],
                grant_id: grant.clone().unwrap_or_else(|| format!("grant-{id}")),
                client_id: client.clone(),
                subject: subject.clone(),
                tenant: tenant.clone(),
                scope: "openid".into(),
                issued_at: at,
                expires_at: at.saturating_add(MINUTE),
                rotated: false,
            }));
        }
        records
    })
}

/// The store's coordination, which a shared store must hand out.
fn shared_of(store: &Arc<dyn Store>) -> Arc<dyn SharedStore> {
    store
        .clone()
        .shared()
        .expect("the store does not say it is shared (Store::shared is None)")
}

const POLICY: ThrottlePolicy = ThrottlePolicy {
    free_failures: 3,
    base_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(8),
    forget_after: Duration::from_secs(60),
};

/// Issue instants come from the store's clock, move forward, and the records stamped with them
/// are stored durably.
pub async fn issuance_is_stamped_by_the_store(store: Arc<dyn Store>) {
    let shared = shared_of(&store);
    let before = UnixMillis::from(std::time::SystemTime::now());
    let first = shared
        .commit_issued(stamp("a", ("/", "alice", "web"), None, None))
        .await
        .expect("commit_issued");
    let second = shared
        .commit_issued(stamp("b", ("/", "alice", "web"), None, None))
        .await
        .expect("commit_issued");
    assert!(
        second >= first,
        "issue instants went backwards: {first:?} then {second:?}"
    );
    // The store's clock, not some fixed value (a minute of skew allowed either way).
    assert!(
        first.0 > before.0 - 60_000 && first.0 < before.0 + 60_000,
        "the issue instant {first:?} is not the store's clock (now is about {before:?})"
    );
    let loaded = store.load(first).await.expect("load");
    let stamped = loaded
        .access_tokens
        .iter()
        .find(|t| t.jti == "a")
        .expect("a token from commit_issued is stored");
    assert_eq!(stamped.issued_at, first, "stored with the instant returned");
}

/// Of two rotations of one refresh token, exactly one wins; the other sees reuse. An undone
/// rotation can be won again; an unknown token is unknown.
pub async fn rotation_is_compare_and_set(store: Arc<dyn Store>) {
    let store = shared_of(&store);
    store
        .commit_issued(stamp("r", ("/", "alice", "web"), Some("g-9"), Some(9)))
        .await
        .expect("commit_issued");
    let found = store.refresh_token(&[9; 32]).await.expect("refresh_token");
    assert!(
        found
            .as_ref()
            .is_some_and(|r| !r.rotated && r.grant_id == "g-9"),
        "the refresh token is found, not rotated: {found:?}"
    );
    let race = |store: Arc<dyn SharedStore>| async move { store.rotate_refresh(&[9; 32]).await };
    let (a, b) = tokio::join!(
        tokio::spawn(race(store.clone())),
        tokio::spawn(race(store.clone()))
    );
    let outcomes = [
        a.expect("join").expect("rotate"),
        b.expect("join").expect("rotate"),
    ];
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Rotated(_)))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Reused(_)))
        .count();
    assert_eq!(
        (won, reused),
        (1, 1),
        "two concurrent rotations: {outcomes:?}"
    );
    store.unrotate_refresh(&[9; 32]).await.expect("unrotate");
    assert!(
        matches!(
            store.rotate_refresh(&[9; 32]).await.expect("rotate"),
            Rotation::Rotated(_)
        ),
        "an undone rotation can be won again"
    );
    assert_eq!(
        store.rotate_refresh(&[42; 32]).await.expect("rotate"),
        Rotation::Unknown
    );
    assert_eq!(store.refresh_token(&[42; 32]).await.expect("lookup"), None);
}

/// A cutoff counts the live tokens in its scope that nothing refused yet (another issuer's
/// cutoffs refuse none of them), records itself in the outbox, and a second identical cutoff
/// counts nothing.
pub async fn cutoffs_count_what_they_turn(store: Arc<dyn Store>) {
    let (shared, outbox) = (shared_of(&store), outbox_of(&store));
    let org = ("/Org", "alice", "web");
    let sub = ("/Org/Sub", "bob", "web");
    let other = ("/Other", "carol", "cli");
    let mut last = UnixMillis(0);
    for (jti, owner, grant, refresh) in [
        ("t1", org, None, None),
        ("t2", sub, None, None),
        ("t3", other, None, None),
        ("by-jti", org, None, None),
        ("by-grant", org, Some("g-1"), Some(1)),
        ("fam", sub, Some("g-2"), Some(2)),
    ] {
        last = shared
            .commit_issued(stamp(jti, owner, grant, refresh))
            .await
            .expect("commit_issued");
    }
    store
        .commit(vec![
            Record::Revocation(RevocationEvent::Token {
                jti: "by-jti".into(),
                expires_at: last.saturating_add(MINUTE),
            }),
            Record::Revocation(RevocationEvent::Grant {
                grant_id: "g-1".into(),
                expires_at: last.saturating_add(MINUTE),
            }),
        ])
        .await
        .expect("commit revocations");
    // Another issuer's cutoffs, on every scope and later than every token, refuse none of this
    // store's tokens: they change no count below.
    let theirs = [
        CutoffScope::All,
        CutoffScope::Tenant("/Org".into()),
        CutoffScope::Subject("carol".into()),
        CutoffScope::Client("cli".into()),
    ];
    store
        .commit(
            theirs
                .into_iter()
                .map(|scope| {
                    Record::Revocation(RevocationEvent::cutoff(
                        Some(super::OTHER_ISSUER),
                        scope,
                        last.saturating_add(MINUTE),
                    ))
                })
                .collect(),
        )
        .await
        .expect("commit another issuer's cutoffs");
    // Nothing issued before the epoch.
    let none = shared
        .cut_off(&CutoffScope::All, Some(UnixMillis(1)))
        .await
        .expect("cut_off");
    assert_eq!(none.count, 0, "a cutoff before every token counts none");
    assert_eq!(none.issued_before, UnixMillis(1));
    // The tenant /Org covers /Org/Sub: t1, t2, fam (access) and g-2's refresh token.
    let tenant = shared
        .cut_off(&CutoffScope::Tenant("/Org".into()), None)
        .await
        .expect("cut_off");
    assert!(tenant.issued_before > last, "cut at the store's now");
    assert_eq!(
        tenant.count, 4,
        "t1, t2, fam and its refresh token: by-jti and g-1's are already refused"
    );
    let again = shared
        .cut_off(&CutoffScope::Tenant("/Org/Sub".into()), None)
        .await
        .expect("cut_off");
    assert_eq!(again.count, 0, "all of /Org/Sub was cut already");
    let client = shared
        .cut_off(&CutoffScope::Client("cli".into()), None)
        .await
        .expect("cut_off");
    assert_eq!(client.count, 1, "t3 only");
    let subject = shared
        .cut_off(&CutoffScope::Subject("alice".into()), None)
        .await
        .expect("cut_off");
    assert_eq!(subject.count, 0, "alice's tokens were cut with /Org");
    // The cutoffs are stored, numbered for the outbox.
    let outbox = outbox.outbox_read(0, 100).await.expect("outbox_read");
    let cutoffs = outbox
        .iter()
        .filter(|e| matches!(e.event, RevocationEvent::Cutoff { .. }))
        .count();
    assert_eq!(cutoffs, 5, "every cutoff is in the outbox: {outbox:?}");
}

/// Issuance racing a cutoff: the count is exactly the tokens stamped before the cut.
pub async fn counts_are_exact_under_concurrent_issuance(store: Arc<dyn Store>) {
    counts_are_exact_across(vec![store.clone(), store.clone()], store).await;
}

/// Issuance at each of `issuers` (stores on one database: replicas) racing a cutoff at `cutter`:
/// the count is exactly the tokens stamped, at any of them, before the cut.
pub async fn counts_are_exact_across(issuers: Vec<Arc<dyn Store>>, cutter: Arc<dyn Store>) {
    let store = shared_of(&cutter);
    let issuers: Vec<_> = issuers.iter().map(shared_of).collect();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let issuers: Vec<_> = (0..4)
        .map(|worker| {
            let store = issuers[worker % issuers.len()].clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut instants = Vec::new();
                for n in 0..150 {
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let jti = format!("w{worker}-{n}");
                    instants.push(
                        store
                            .commit_issued(stamp(&jti, ("/", "dave", "svc"), None, None))
                            .await
                            .expect("commit_issued"),
                    );
                }
                instants
            })
        })
        .collect();
    // Cut once issuance is well under way, while most of it is still to come.
    while done.load(std::sync::atomic::Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cut = store
        .cut_off(&CutoffScope::Client("svc".into()), None)
        .await
        .expect("cut_off");
    let mut stamped = Vec::new();
    for issuer in issuers {
        stamped.extend(issuer.await.expect("join"));
    }
    let before = stamped.iter().filter(|t| **t < cut.issued_before).count() as u64;
    assert!(
        before > 0 && before < stamped.len() as u64,
        "the cut fell outside the issuance ({before} of {} before it)",
        stamped.len()
    );
    assert_eq!(
        cut.count,
        before,
        "the count is the tokens stamped before the cut ({} issued in all)",
        stamped.len()
    );
}

/// Sign-in attempts are counted before they are judged; a success starts afresh, an undecided
/// attempt is given back, and a blocked key waits.
pub async fn throttle_counts_across_callers(store: Arc<dyn Store>) {
    let store = shared_of(&store);
    let now = UnixMillis(10_000_000);
    for _ in 0..2 {
        assert_eq!(
            store.throttle_take("u", now, POLICY).await.expect("take"),
            None
        );
        store
            .throttle_settle("u", Settled::Failed, POLICY)
            .await
            .expect("settle");
    }
    // Undecided attempts do not count.
    for _ in 0..5 {
        assert_eq!(
            store.throttle_take("u", now, POLICY).await.expect("take"),
            None
        );
        store
            .throttle_settle("u", Settled::Undecided, POLICY)
            .await
            .expect("settle");
    }
    // The third counted attempt is allowed, and makes the next wait base_delay.
    assert_eq!(
        store.throttle_take("u", now, POLICY).await.expect("take"),
        None
    );
    assert_eq!(
        store.throttle_take("u", now, POLICY).await.expect("take"),
        Some(now.saturating_add(Duration::from_secs(1))),
        "blocked for a second after three counted attempts"
    );
    store
        .throttle_settle("u", Settled::Failed, POLICY)
        .await
        .expect("settle");
    let later = now.saturating_add(Duration::from_secs(1));
    assert_eq!(
        store.throttle_take("u", later, POLICY).await.expect("take"),
        None
    );
    assert_eq!(
        store.throttle_take("u", later, POLICY).await.expect("take"),
        Some(later.saturating_add(Duration::from_secs(2))),
        "the wait doubles"
    );
    store
        .throttle_settle("u", Settled::Succeeded, POLICY)
        .await
        .expect("settle");
    assert_eq!(
        store.throttle_take("u", later, POLICY).await.expect("take"),
        None,
        "a success starts afresh"
    );
    // Another key is independent; a quiet key is forgotten.
    assert_eq!(
        store.throttle_take("v", now, POLICY).await.expect("take"),
        None
    );
    for _ in 0..3 {
        let _ = store.throttle_take("w", now, POLICY).await.expect("take");
    }
    let quiet = now.saturating_add(Duration::from_secs(120));
    assert_eq!(
        store.throttle_take("w", quiet, POLICY).await.expect("take"),
        None,
        "forgotten after forget_after"
    );
}

/// Runs every check a shared store must pass, each on a fresh store from `new_store`:
/// [`issuance_is_stamped_by_the_store`], [`rotation_is_compare_and_set`],
/// [`cutoffs_count_what_they_turn`], [`counts_are_exact_under_concurrent_issuance`] and
/// [`throttle_counts_across_callers`].
pub async fn check_shared_store<S, F, Fut>(mut new_store: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    issuance_is_stamped_by_the_store(Arc::new(new_store().await)).await;
    rotation_is_compare_and_set(Arc::new(new_store().await)).await;
    cutoffs_count_what_they_turn(Arc::new(new_store().await)).await;
    counts_are_exact_under_concurrent_issuance(Arc::new(new_store().await)).await;
    throttle_counts_across_callers(Arc::new(new_store().await)).await;
}
