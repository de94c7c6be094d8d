//! The contract every store must keep, as a test kit: run [`check_store`] against your own
//! [`Store`], [`check_outbox`] if it keeps an [`Outbox`], and [`check_shared_store`] if it is a
//! [`SharedStore`](crate::SharedStore) (tollgate runs them against
//! [`MemoryStore`](crate::MemoryStore), `tollgate_sqlite::SqliteStore` and
//! `tollgate_postgres::PostgresStore`).
//!
//! Available with the `test-util` feature.
//!
//! ```
//! # async fn run() {
//! use tollgate_store::{MemoryStore, testing};
//!
//! // A fresh, empty store for each check.
//! testing::check_store(|| async { MemoryStore::new() }).await;
//! testing::check_outbox(|| async { MemoryStore::new() }).await;
//! # }
//! ```
//!
//! The checks reach a store's outbox and shared coordination through [`Store::outbox`] and
//! [`Store::shared`], as the issuer and the relay do: a store (or a decorator) that does not hand
//! them out fails the kit.
//!
//! Each check panics with a message naming what the store got wrong, as a test should.

use crate::{
    AccessTokenRecord, Loaded, Outbox, OutboxPosition, Purge, Record, RefreshTokenRecord, Store,
};
use std::future::Future;
use std::sync::Arc;
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};

/// The instant the records of [`every_record_kind`] are loaded at.
pub const NOW: UnixMillis = UnixMillis(1_000_000);

/// An access token of `web`'s user `alice` in `/Org/Sub`, with a grant, issued ten minutes
/// before it expires.
pub fn access_token(jti: &str, expires_at: i64) -> AccessTokenRecord {
    AccessTokenRecord {
        jti: jti.into(),
        grant_id: Some(format!("grant-of-{jti}")),
        tenant: "/Org/Sub".into(),
        subject: "alice".into(),
        client_id: "web".into(),
        issued_at: UnixMillis(expires_at - 600_000),
        expires_at: UnixMillis(expires_at),
    }
}

/// A refresh token whose hash is `[id; 32]`, of grant `grant-<id>`, issued an hour before it
/// expires.
pub fn refresh_token(id: u8, expires_at: i64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        hash: [id; 32],
        grant_id: format!("grant-{id}"),
        client_id: "web".into(),
        subject: "alice".into(),
        tenant: "/Org".into(),
        scope: "openid profile".into(),
        issued_at: UnixMillis(expires_at - 3_600_000),
        expires_at: UnixMillis(expires_at),
        rotated: false,
    }
}

fn cutoff(scope: CutoffScope, issued_before: i64) -> Record {
    Record::Revocation(RevocationEvent::Cutoff {
        scope,
        issued_before: UnixMillis(issued_before),
    })
}

/// The issuer of the kit's issuer cutoffs.
pub const ISSUER: &str = "https://id.example.com/realms/acme";
/// Another issuer, whose users may have the same names.
pub const OTHER_ISSUER: &str = "https://login.other.example";

fn issuer_cutoff(issuer: &str, scope: CutoffScope, issued_before: i64) -> Record {
    Record::Revocation(RevocationEvent::cutoff(
        Some(issuer),
        scope,
        UnixMillis(issued_before),
    ))
}

/// Every kind of record, some of them expired at [`NOW`].
pub fn every_record_kind() -> Vec<Record> {
    let now = NOW.0;
    let no_grant = AccessTokenRecord {
        grant_id: None,
        ..access_token("no-grant", now + 1)
    };
    vec![
        Record::AccessToken(access_token("live", now + 60_000)),
        Record::AccessToken(no_grant),
        Record::AccessToken(access_token("expires-now", now)),
        Record::AccessToken(access_token("expired", now - 1)),
        Record::RefreshToken(refresh_token(1, now + 60_000)),
        Record::RefreshToken(refresh_token(2, now + 60_000)),
        Record::RefreshRotated([2; 32]),
        Record::RefreshToken(refresh_token(3, now - 1)),
        Record::Revocation(RevocationEvent::Token {
            jti: "revoked".into(),
            expires_at: UnixMillis(now + 60_000),
        }),
        // Stored revocations load even once expired: only purge forgets them.
        Record::Revocation(RevocationEvent::Grant {
            grant_id: "grant-1".into(),
            expires_at: UnixMillis(now - 1),
        }),
        cutoff(CutoffScope::All, 10),
        cutoff(CutoffScope::Tenant("/Org".into()), 20),
        cutoff(CutoffScope::Subject("alice".into()), 30),
        cutoff(CutoffScope::Client("web".into()), 40),
        cutoff(CutoffScope::Session("sid-1".into()), 50),
        issuer_cutoff(ISSUER, CutoffScope::All, 60),
        issuer_cutoff(ISSUER, CutoffScope::Tenant("/Org".into()), 65),
        issuer_cutoff(ISSUER, CutoffScope::Subject("alice".into()), 70),
        issuer_cutoff(ISSUER, CutoffScope::Client("web".into()), 75),
        issuer_cutoff(OTHER_ISSUER, CutoffScope::Session("sid-1".into()), 80),
    ]
}

/// Asserts that `loaded` (at [`NOW`]) is what [`every_record_kind`] leaves live.
pub fn assert_every_record_kind(loaded: Loaded) {
    let now = NOW.0;
    let mut records = every_record_kind();
    records.retain(|r| !matches!(r, Record::RefreshRotated(_)));
    let expected = Loaded {
        access_tokens: vec![
            access_token("live", now + 60_000),
            AccessTokenRecord {
                grant_id: None,
                ..access_token("no-grant", now + 1)
            },
            access_token("expires-now", now),
        ],
        refresh_tokens: vec![
            refresh_token(1, now + 60_000),
            RefreshTokenRecord {
                rotated: true,
                ..refresh_token(2, now + 60_000)
            },
        ],
        revocations: records
            .into_iter()
            .filter_map(|r| match r {
                Record::Revocation(event) => Some(event),
                _ => None,
            })
            .collect(),
    };
    assert_eq!(sorted(loaded), sorted(expected));
}

/// `loaded` in a canonical order: stores return rows in no particular order.
pub fn sorted(mut loaded: Loaded) -> Loaded {
    loaded.access_tokens.sort_by(|a, b| a.jti.cmp(&b.jti));
    loaded.refresh_tokens.sort_by_key(|t| t.hash);
    loaded.revocations.sort_by_key(|e| format!("{e:?}"));
    loaded
}

/// A refresh token once rotated stays rotated, even if its issuance is written again.
pub async fn rotation_sticks(store: &dyn Store) {
    let token = refresh_token(7, NOW.0 + 60_000);
    let commits = [
        Record::RefreshToken(token.clone()),
        Record::RefreshRotated(token.hash),
        Record::RefreshToken(token.clone()),
    ];
    for record in commits {
        store.commit(vec![record]).await.expect("commit");
    }
    let loaded = store.load(NOW).await.expect("the store failed");
    assert_eq!(
        loaded.refresh_tokens,
        vec![RefreshTokenRecord {
            rotated: true,
            ..token
        }]
    );
}

/// Token and grant revocations keep the latest expiry, cutoffs the latest instant, whatever
/// the order they were written in, across commits and within one.
pub async fn upserts_keep_the_maximum(store: &dyn Store) {
    let token = |expires_at| {
        Record::Revocation(RevocationEvent::Token {
            jti: "t".into(),
            expires_at: UnixMillis(expires_at),
        })
    };
    let grant = |expires_at| {
        Record::Revocation(RevocationEvent::Grant {
            grant_id: "g".into(),
            expires_at: UnixMillis(expires_at),
        })
    };
    let subject = |at| cutoff(CutoffScope::Subject("alice".into()), at);
    let all = |at| cutoff(CutoffScope::All, at);
    store
        .commit(vec![token(500), grant(300)])
        .await
        .expect("the store failed");
    store
        .commit(vec![token(300), grant(500)])
        .await
        .expect("the store failed");
    store
        .commit(vec![subject(500), subject(300), all(300), all(500)])
        .await
        .expect("the store failed");
    store
        .commit(vec![subject(400), all(400)])
        .await
        .expect("the store failed");

    let loaded = store.load(NOW).await.expect("the store failed");
    let expected = Loaded {
        revocations: vec![token(500), grant(500), subject(500), all(500)]
            .into_iter()
            .filter_map(|r| match r {
                Record::Revocation(event) => Some(event),
                _ => None,
            })
            .collect(),
        ..Loaded::default()
    };
    assert_eq!(sorted(loaded), sorted(expected));
}

/// Cutoffs of two issuers and everyone's, on the same subject, are three cutoffs: each keeps its
/// own latest instant, none replaces another, and purge judges each by its own instant.
pub async fn issuers_keep_their_cutoffs_apart(store: &dyn Store) {
    let fail = "the store failed";
    let alice = || CutoffScope::Subject("alice".into());
    let everyone = |at| cutoff(alice(), at);
    let ours = |at| issuer_cutoff(ISSUER, alice(), at);
    let theirs = |at| issuer_cutoff(OTHER_ISSUER, alice(), at);
    store
        .commit(vec![everyone(100), ours(200), theirs(300)])
        .await
        .expect(fail);
    // Lower instants change nothing; a later one moves only its own issuer's.
    store
        .commit(vec![everyone(50), ours(150), theirs(400)])
        .await
        .expect(fail);
    let events = |records: Vec<Record>| {
        records
            .into_iter()
            .filter_map(|r| match r {
                Record::Revocation(event) => Some(event),
                _ => None,
            })
            .collect()
    };
    let loaded = store.load(NOW).await.expect(fail);
    let expected = Loaded {
        revocations: events(vec![everyone(100), ours(200), theirs(400)]),
        ..Loaded::default()
    };
    assert_eq!(
        sorted(loaded),
        sorted(expected),
        "an issuer's cutoff replaced another's, or everyone's"
    );
    assert_eq!(
        store
            .purge(Purge::new(UnixMillis(0), UnixMillis(200)))
            .await
            .expect(fail),
        2
    );
    assert_eq!(
        store.load(NOW).await.expect(fail).revocations,
        events(vec![theirs(400)])
    );
}

/// An issuer's cutoff must name its issuer: stores spell every issuer as an empty one, so one
/// with an empty issuer would come back as everyone's cutoff. The commit fails, and stores
/// nothing of its other records either.
pub async fn an_issuer_cutoff_without_an_issuer_is_refused(store: &dyn Store) {
    let commit = store
        .commit(vec![
            Record::Revocation(token("t1", 9_000_000)),
            issuer_cutoff("", CutoffScope::All, 10),
        ])
        .await;
    assert!(
        commit.is_err(),
        "stored an issuer's cutoff without an issuer"
    );
    assert_eq!(
        store.load(NOW).await.expect("the store failed"),
        Loaded::default(),
        "a refused commit left records behind"
    );
}

/// Purge forgets tokens and token/grant revocations that expired strictly before its first
/// instant, cutoffs at or before its second, and counts what went.
pub async fn purge_removes_only_expired(store: &dyn Store) {
    let revoke_token = |jti: &str, expires_at| {
        Record::Revocation(RevocationEvent::Token {
            jti: jti.into(),
            expires_at: UnixMillis(expires_at),
        })
    };
    let revoke_grant = |expires_at| {
        Record::Revocation(RevocationEvent::Grant {
            grant_id: "g".into(),
            expires_at: UnixMillis(expires_at),
        })
    };
    store
        .commit(vec![
            Record::AccessToken(access_token("gone", 100)),
            Record::AccessToken(access_token("at-the-instant", 200)),
            Record::AccessToken(access_token("later", 300)),
            Record::RefreshToken(refresh_token(1, 100)),
            Record::RefreshToken(refresh_token(2, 200)),
            revoke_token("gone", 199),
            revoke_token("kept", 200),
            revoke_grant(150),
            cutoff(CutoffScope::All, 1),
            cutoff(CutoffScope::Client("web".into()), 2),
        ])
        .await
        .expect("the store failed");

    // Expired before 200; no cutoff is that old.
    assert_eq!(
        store
            .purge(Purge::new(UnixMillis(200), UnixMillis(0)))
            .await
            .expect("the store failed"),
        4
    );
    let loaded = store.load(UnixMillis(0)).await.expect("the store failed");
    let expected = Loaded {
        access_tokens: vec![
            access_token("at-the-instant", 200),
            access_token("later", 300),
        ],
        refresh_tokens: vec![refresh_token(2, 200)],
        revocations: vec![
            RevocationEvent::Token {
                jti: "kept".into(),
                expires_at: UnixMillis(200),
            },
            RevocationEvent::Cutoff {
                scope: CutoffScope::All,
                issued_before: UnixMillis(1),
            },
            RevocationEvent::Cutoff {
                scope: CutoffScope::Client("web".into()),
                issued_before: UnixMillis(2),
            },
        ],
    };
    assert_eq!(sorted(loaded), sorted(expected));
    // Cutoffs go by their own instant: the one at 1 goes, the one at 2 stays.
    assert_eq!(
        store
            .purge(Purge::new(UnixMillis(i64::MAX), UnixMillis(1)))
            .await
            .expect("the store failed"),
        5
    );
    assert_eq!(
        store
            .load(UnixMillis(0))
            .await
            .expect("the store failed")
            .revocations,
        vec![RevocationEvent::Cutoff {
            scope: CutoffScope::Client("web".into()),
            issued_before: UnixMillis(2),
        }]
    );
}

/// Written-behind records are in what `load` reads once `flush` has resolved.
pub async fn write_behind_then_flush(store: &dyn Store) {
    store
        .write_behind(every_record_kind())
        .expect("the store failed");
    store.flush().await.expect("the store failed");
    assert_every_record_kind(store.load(NOW).await.expect("the store failed"));
}

fn token(jti: &str, expires_at: i64) -> RevocationEvent {
    RevocationEvent::Token {
        jti: jti.into(),
        expires_at: UnixMillis(expires_at),
    }
}

fn mark(epoch: &str, published_through: u64) -> OutboxPosition {
    OutboxPosition {
        epoch: epoch.into(),
        published_through,
    }
}

/// The store's outbox, which it must hand out.
fn outbox_of(store: &Arc<dyn Store>) -> Arc<dyn Outbox> {
    store
        .clone()
        .outbox()
        .expect("the store keeps no outbox (Store::outbox is None)")
}

/// The outbox numbers every revocation in commit order, and only revocations; a revocation that
/// changes (a later cutoff, a longer expiry) is numbered again, a repeated one is not; marks move
/// forward within an epoch and a new epoch replaces the old one; numbers keep growing after the
/// numbered rows were purged.
pub async fn outbox_numbers_revocations(store: Arc<dyn Store>) {
    let fail = "the store failed";
    let outbox = outbox_of(&store);
    let status = outbox.outbox_status().await.expect(fail);
    assert_eq!(status.pending, 0, "a new store has an empty outbox");
    assert_eq!(status.position, OutboxPosition::default());
    store
        .commit(vec![
            Record::AccessToken(access_token("issued", 9_000_000)),
            Record::Revocation(token("t1", 9_000_000)),
        ])
        .await
        .expect(fail);
    store
        .commit(vec![
            cutoff(CutoffScope::Subject("alice".into()), 10),
            Record::Revocation(RevocationEvent::Grant {
                grant_id: "g1".into(),
                expires_at: UnixMillis(9_000_000),
            }),
        ])
        .await
        .expect(fail);
    let all = outbox.outbox_read(0, 100).await.expect(fail);
    let events: Vec<_> = all.iter().map(|e| e.event.clone()).collect();
    assert_eq!(
        events,
        vec![
            token("t1", 9_000_000),
            RevocationEvent::Cutoff {
                scope: CutoffScope::Subject("alice".into()),
                issued_before: UnixMillis(10),
            },
            RevocationEvent::Grant {
                grant_id: "g1".into(),
                expires_at: UnixMillis(9_000_000),
            },
        ],
        "the outbox holds the revocations (not issued tokens) in commit order"
    );
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "outbox numbers grow: {all:?}"
    );
    let first = all[0].seq;
    let rest = outbox.outbox_read(first, 100).await.expect(fail);
    assert_eq!(rest, all[1..].to_vec(), "reading after a number skips it");
    assert_eq!(
        outbox.outbox_read(0, 2).await.expect(fail),
        all[..2].to_vec(),
        "the limit holds"
    );
    assert_eq!(outbox.outbox_status().await.expect(fail).pending, 3);

    let last = all[2].seq;
    outbox.outbox_mark(mark("e1", last)).await.expect(fail);
    let status = outbox.outbox_status().await.expect(fail);
    assert_eq!(status.position, mark("e1", last));
    assert_eq!(status.pending, 0, "everything marked is published");
    outbox.outbox_mark(mark("e1", first)).await.expect(fail);
    assert_eq!(
        outbox.outbox_status().await.expect(fail).position,
        mark("e1", last),
        "a late, smaller mark in the same epoch is ignored"
    );

    // The same revocation again changes nothing, so there is nothing new to publish.
    store
        .commit(vec![Record::Revocation(token("t1", 9_000_000))])
        .await
        .expect(fail);
    assert!(outbox.outbox_read(last, 10).await.expect(fail).is_empty());
    // A later cutoff for the same scope must be published again.
    store
        .commit(vec![cutoff(CutoffScope::Subject("alice".into()), 20)])
        .await
        .expect(fail);
    let moved = outbox.outbox_read(last, 10).await.expect(fail);
    assert_eq!(
        moved.len(),
        1,
        "a moved cutoff is numbered again: {moved:?}"
    );
    assert!(moved[0].seq > last);
    assert_eq!(outbox.outbox_status().await.expect(fail).pending, 1);

    // A new epoch (Redis came back empty) replaces the position, even with a smaller number.
    outbox.outbox_mark(mark("e2", 0)).await.expect(fail);
    let status = outbox.outbox_status().await.expect(fail);
    assert_eq!(status.position, mark("e2", 0));
    assert_eq!(
        status.pending, 3,
        "everything stored is pending in a new epoch"
    );

    // Purging every numbered row must not let numbers start over below a published mark.
    let high = moved[0].seq;
    outbox.outbox_mark(mark("e2", high)).await.expect(fail);
    store
        .purge(Purge::new(UnixMillis(i64::MAX), UnixMillis(i64::MAX)))
        .await
        .expect(fail);
    store
        .commit(vec![Record::Revocation(token("t2", 9_000_000))])
        .await
        .expect(fail);
    let after_purge = outbox.outbox_read(high, 10).await.expect(fail);
    assert_eq!(
        after_purge
            .iter()
            .map(|e| e.event.clone())
            .collect::<Vec<_>>(),
        vec![token("t2", 9_000_000)],
        "a revocation after a purge is numbered above every earlier one"
    );
}

/// Runs every check of the store contract, each against a fresh store from `new_store`:
///
/// - every kind of record written in one commit is read back by `load`, the expired ones
///   excepted ([`every_record_kind`], [`assert_every_record_kind`]);
/// - a rotated refresh token stays rotated even if its issuance is written again;
/// - revocations keep the latest expiry and cutoffs the latest instant, in any order;
/// - every issuer's cutoffs and each issuer's stay apart ([`issuers_keep_their_cutoffs_apart`]),
///   and an issuer's cutoff without an issuer is refused;
/// - `purge` forgets exactly what expired before its instant and the cutoffs old enough, and
///   counts it;
/// - written-behind records are loaded once `flush` has resolved.
pub async fn check_store<S, F, Fut>(mut new_store: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let store = new_store().await;
    store
        .commit(every_record_kind())
        .await
        .expect("commit every kind of record");
    assert_every_record_kind(store.load(NOW).await.expect("load"));
    rotation_sticks(&new_store().await).await;
    upserts_keep_the_maximum(&new_store().await).await;
    issuers_keep_their_cutoffs_apart(&new_store().await).await;
    an_issuer_cutoff_without_an_issuer_is_refused(&new_store().await).await;
    purge_removes_only_expired(&new_store().await).await;
    write_behind_then_flush(&new_store().await).await;
}

/// The outbox carries cutoffs of one issuer and of a session as it carries everyone's, each
/// numbered, in commit order; a later instant for one issuer is numbered again, without
/// touching another issuer's.
pub async fn outbox_carries_every_cutoff(store: Arc<dyn Store>) {
    let fail = "the store failed";
    let outbox = outbox_of(&store);
    let session = || CutoffScope::Session("sid-1".into());
    let alice = || CutoffScope::Subject("alice".into());
    let commits = [
        cutoff(session(), 10),
        issuer_cutoff(ISSUER, alice(), 20),
        issuer_cutoff(OTHER_ISSUER, alice(), 30),
        issuer_cutoff(ISSUER, CutoffScope::All, 40),
    ];
    for record in commits.iter().cloned() {
        store.commit(vec![record]).await.expect(fail);
    }
    let published = |entries: Vec<crate::OutboxEntry>| -> Vec<Record> {
        entries
            .into_iter()
            .map(|e| Record::Revocation(e.event))
            .collect()
    };
    let all = outbox.outbox_read(0, 100).await.expect(fail);
    assert_eq!(published(all.clone()), commits.to_vec(), "{all:?}");
    let last = all.last().map_or(0, |e| e.seq);
    store
        .commit(vec![issuer_cutoff(ISSUER, alice(), 50)])
        .await
        .expect(fail);
    assert_eq!(
        published(outbox.outbox_read(last, 100).await.expect(fail)),
        vec![issuer_cutoff(ISSUER, alice(), 50)],
        "a moved issuer cutoff is numbered again, alone"
    );
}

/// A store nobody else uses holds its publisher lease, and keeps it when asked again (a relay
/// asks before every round): its relay is never left standing by.
pub async fn outbox_lease_is_held_alone(store: Arc<dyn Store>) {
    let outbox = outbox_of(&store);
    for ask in ["first", "second"] {
        assert!(
            outbox.publisher_lease().await.expect("the store failed"),
            "a store nobody else uses must hold its publisher lease ({ask} ask)"
        );
    }
}

/// Runs the checks of the outbox ([`outbox_numbers_revocations`],
/// [`outbox_carries_every_cutoff`], [`outbox_lease_is_held_alone`]), each against a fresh store from `new_store`, which must
/// hand its outbox out through [`Store::outbox`].
pub async fn check_outbox<S, F, Fut>(mut new_store: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    outbox_numbers_revocations(Arc::new(new_store().await)).await;
    outbox_carries_every_cutoff(Arc::new(new_store().await)).await;
    outbox_lease_is_held_alone(Arc::new(new_store().await)).await;
}

mod shared;
pub use shared::{
    check_shared_store, counts_are_exact_across, counts_are_exact_under_concurrent_issuance,
    cutoffs_count_what_they_turn, issuance_is_stamped_by_the_store, rotation_is_compare_and_set,
    throttle_counts_across_callers,
};
