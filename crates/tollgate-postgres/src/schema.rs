//! The schema and its versioned migrations, applied under an advisory lock.

use tokio_postgres::Client;

/// The schema version this code writes.
pub(crate) const SCHEMA_VERSION: i32 = 3;

/// The advisory lock held (for one transaction) while migrating: `'tollgate'` in ASCII, so that
/// it is recognisable in `pg_locks`.
pub(crate) const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append, never edit: a database
/// already at some version has run the earlier ones as they were.
///
/// Instants are Unix milliseconds (`bigint`), as everywhere in tollgate. Every table that is
/// purged has an index on the column purge selects by.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE access_tokens (
    jti text NOT NULL PRIMARY KEY,
    grant_id text,
    tenant text NOT NULL,
    subject text NOT NULL,
    client_id text NOT NULL,
    issued_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);

CREATE TABLE refresh_tokens (
    hash bytea NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    grant_id text NOT NULL,
    client_id text NOT NULL,
    subject text NOT NULL,
    tenant text NOT NULL,
    scope text NOT NULL,
    issued_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    rotated boolean NOT NULL
);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

-- The outbox numbers: never reused, even once the rows they numbered are purged.
CREATE SEQUENCE outbox_seq AS bigint;

-- Token and grant revocations: kind is 'token' (id = jti) or 'grant' (id = grant id).
CREATE TABLE revocations (
    kind text NOT NULL CHECK (kind IN ('token', 'grant')),
    id text NOT NULL,
    expires_at bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX revocations_expires_at ON revocations (expires_at);
CREATE INDEX revocations_seq ON revocations (seq);

-- Cutoffs, one per scope: scope is CutoffScope::kind ('all' with value '', 'tenant', 'subject'
-- or 'client'), value CutoffScope::value.
CREATE TABLE cutoffs (
    scope text NOT NULL CHECK (scope IN ('all', 'tenant', 'subject', 'client')),
    value text NOT NULL,
    issued_before bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (scope, value)
);
CREATE INDEX cutoffs_issued_before ON cutoffs (issued_before);
CREATE INDEX cutoffs_seq ON cutoffs (seq);

-- One row: the relay's position (the Redis epoch published into, and how far).
CREATE TABLE outbox (
    id integer NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch text NOT NULL,
    published_through bigint NOT NULL
);
INSERT INTO outbox (id, epoch, published_through) VALUES (1, '', 0);
",
    "
-- Version 2: the sign-in throttle shared by replicas, one row per username (see coordination.rs).
CREATE TABLE sign_in_throttle (
    key text NOT NULL PRIMARY KEY,
    failures integer NOT NULL,
    last_attempt bigint NOT NULL,
    blocked_until bigint NOT NULL
);
CREATE INDEX sign_in_throttle_last_attempt ON sign_in_throttle (last_attempt);
",
    "
-- Version 3: a cutoff has an issuer, part of its key, so that one issuer's cutoff is kept apart
-- from everyone's and from another issuer's on the same subject: issuer is the `iss` of the
-- tokens it applies to, '' for every issuer (what every cutoff stored before was). And the
-- session scope (`sid`). Outbox numbers stay: what was published stays published.
ALTER TABLE cutoffs ADD COLUMN issuer text NOT NULL DEFAULT '';
ALTER TABLE cutoffs DROP CONSTRAINT cutoffs_pkey;
ALTER TABLE cutoffs ADD PRIMARY KEY (issuer, scope, value);
ALTER TABLE cutoffs DROP CONSTRAINT cutoffs_scope_check;
ALTER TABLE cutoffs ADD CONSTRAINT cutoffs_scope_check
    CHECK (scope IN ('all', 'tenant', 'subject', 'client', 'session'));
",
];

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction under [`MIGRATION_LOCK`]: two
/// processes starting together migrate one after the other (the second finds nothing to do).
/// Refuses a database written by a newer tollgate.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), String> {
    const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);
    let fail = |what: &str| {
        let what = what.to_owned();
        move |e: tokio_postgres::Error| format!("{what}: {}", crate::failure::describe(&e))
    };
    let tx = client
        .transaction()
        .await
        .map_err(fail("cannot begin the migration"))?;
    // A migration of a large table may take long, and so may waiting for another replica's.
    tx.batch_execute("SET LOCAL statement_timeout = 0")
        .await
        .map_err(fail("cannot begin the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail("cannot take the migration lock"))?;
    // Read committed: each statement below sees what a migration that held the lock before us
    // committed.
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        .await
        .map_err(fail("cannot create schema_version"))?;
    let rows = tx
        .query("SELECT version FROM schema_version", &[])
        .await
        .map_err(fail("cannot read the schema version"))?;
    let version: i32 = match rows.as_slice() {
        [] => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                .await
                .map_err(fail("cannot write the schema version"))?;
            0
        }
        [row] => row
            .try_get(0)
            .map_err(fail("cannot read the schema version"))?,
        _ => return Err("schema_version holds more than one row".into()),
    };
    let Some(applied) = usize::try_from(version)
        .ok()
        .filter(|_| version <= SCHEMA_VERSION)
    else {
        return Err(format!(
            "unknown schema version {version} (this tollgate writes version {SCHEMA_VERSION}): \
             the database was written by a newer tollgate; run that version or use another \
             database"
        ));
    };
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(migration)
            .await
            .map_err(fail(&format!("migration to version {} failed", from + 1)))?;
    }
    if version < SCHEMA_VERSION {
        tx.execute("UPDATE schema_version SET version = $1", &[&SCHEMA_VERSION])
            .await
            .map_err(fail("cannot write the schema version"))?;
        tracing::info!(from = version, to = SCHEMA_VERSION, "migrated the schema");
    }
    tx.commit()
        .await
        .map_err(fail("cannot commit the migration"))
}

#[cfg(test)]
mod tests {
    use crate::testing::{PostgresServer, client};
    use crate::{PostgresOptions, PostgresStore};
    use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};
    use tollgate_store::{Outbox, Record, Store};

    /// A database of the previous release (schema 2: cutoffs without an issuer) keeps its
    /// cutoffs as every issuer's, with their outbox numbers and the relay's position (nothing is
    /// published again), and then keeps issuer cutoffs apart from them.
    #[tokio::test]
    async fn a_version_2_database_keeps_its_cutoffs_as_every_issuers() {
        let server = PostgresServer::start();
        let target = server.create_database().await;
        let mut old = client(&target).await;
        let tx = old.transaction().await.unwrap();
        for migration in &super::MIGRATIONS[..2] {
            tx.batch_execute(migration).await.unwrap();
        }
        tx.batch_execute(
            "CREATE TABLE schema_version (version integer NOT NULL);
             INSERT INTO schema_version (version) VALUES (2);
             INSERT INTO cutoffs VALUES ('subject', 'alice', 10, nextval('outbox_seq'));
             INSERT INTO cutoffs VALUES ('all', '', 5, nextval('outbox_seq'));
             UPDATE outbox SET epoch = 'e1', published_through = 2;",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let store = PostgresStore::connect(target.clone(), PostgresOptions::default())
            .await
            .unwrap();
        let alice = || CutoffScope::Subject("alice".into());
        let everyone = RevocationEvent::cutoff(None, alice(), UnixMillis(10));
        let mut loaded = store.load(UnixMillis(0)).await.unwrap().revocations;
        loaded.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            loaded,
            vec![
                RevocationEvent::cutoff(None, CutoffScope::All, UnixMillis(5)),
                everyone.clone(),
            ]
        );
        let status = store.outbox_status().await.unwrap();
        assert_eq!(status.pending, 0, "the migration republishes nothing");
        assert_eq!(status.position.published_through, 2);

        let ours = RevocationEvent::cutoff(Some("https://id.example.com"), alice(), UnixMillis(20));
        let session =
            RevocationEvent::cutoff(None, CutoffScope::Session("s".into()), UnixMillis(30));
        store
            .commit(vec![
                Record::Revocation(ours.clone()),
                Record::Revocation(session.clone()),
            ])
            .await
            .unwrap();
        let pending: Vec<_> = store
            .outbox_read(2, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(pending, vec![ours.clone(), session]);
        let loaded = store.load(UnixMillis(0)).await.unwrap().revocations;
        assert!(
            loaded.contains(&everyone) && loaded.contains(&ours),
            "{loaded:?}"
        );
        let version: i32 = old
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, super::SCHEMA_VERSION);
    }

    /// The schema accepts exactly the scope names `CutoffScope::kind` writes (a migration cannot
    /// follow a rename: it is history): the latest migration that sets the check names them all.
    #[test]
    fn the_cutoffs_table_takes_every_scope_name() {
        let names: Vec<String> = CutoffScope::KINDS
            .iter()
            .map(|k| format!("'{k}'"))
            .collect();
        let check = format!("CHECK (scope IN ({}))", names.join(", "));
        let latest = super::MIGRATIONS
            .iter()
            .rev()
            .find(|m| m.contains("CHECK (scope IN ("));
        assert!(latest.is_some_and(|m| m.contains(&check)), "{check}");
    }
}
