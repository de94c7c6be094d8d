//! The schema and its versioned migrations, applied under an advisory lock.

use tokio_postgres::Client;

/// The schema version this code writes.
pub(crate) const SCHEMA_VERSION: i32 = 2;

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
    use tollgate_core::CutoffScope;

    /// The schema accepts exactly the scope names `CutoffScope::kind` writes (a migration cannot
    /// follow a rename: it is history).
    #[test]
    fn the_cutoffs_table_takes_every_scope_name() {
        let names: Vec<String> = CutoffScope::KINDS
            .iter()
            .map(|k| format!("'{k}'"))
            .collect();
        let check = format!("CHECK (scope IN ({}))", names.join(", "));
        assert!(
            super::MIGRATIONS.iter().any(|m| m.contains(&check)),
            "{check}"
        );
    }
}
