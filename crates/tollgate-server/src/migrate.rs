//! `tollgate migrate-store`: copies an SQLite data directory's state into the PostgreSQL store
//! of a configuration, so that a deployment that began on the embedded store grows onto
//! PostgreSQL without losing a revocation.
//!
//! What is copied is what the SQLite store's `load` reads: live access tokens (for batch
//! counts), live refresh tokens with their rotated flags (a rotated one stays a reuse), every
//! stored token and grant revocation, and every cutoff. Expired tokens are left behind: they
//! would be purged at once. Writes are the store's upserts (the later expiry and the later cutoff
//! win, rotated stays rotated), so running it again, or into a database that already holds state
//! with `--force`, converges instead of duplicating.
//!
//! The revocations take fresh outbox numbers in PostgreSQL. A new database's outbox position has
//! an empty epoch, so the relay of the first `tollgate serve` on it publishes everything stored
//! into Redis; on a database with a position, the copied rows are numbered after it and are
//! pending. Either way every follower receives them again (applying is idempotent).

use crate::config::{self, StoreKind};
use std::path::{Path, PathBuf};
use tollgate_core::{Clock, SystemClock, UnixMillis};
use tollgate_postgres::PostgresStore;
use tollgate_sqlite::SqliteStore;
use tollgate_store::{Loaded, Record, Store};

/// Records per PostgreSQL commit: large enough to copy quickly, small enough that no single
/// transaction holds the database for long.
const CHUNK: usize = 1000;

/// The arguments of `tollgate migrate-store`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The configuration `tollgate serve` will use: `store = "postgres"` and its `[postgres]`
    /// table name the target.
    #[arg(long, short)]
    config: PathBuf,
    /// The SQLite data directory to copy (default: the configuration's `data_dir`). It must not
    /// be in use: stop the `tollgate serve` that has it open.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Copy into a database that already holds tokens or revocations, merging (the copy's
    /// upserts keep the later expiry and cutoff, and rotated flags).
    #[arg(long)]
    force: bool,
}

/// What was copied.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    access_tokens: usize,
    refresh_tokens: usize,
    rotated: usize,
    revocations: usize,
    cutoffs: usize,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let config = config::load(&args.config).map_err(|e| e.to_string())?;
    if config.store != StoreKind::Postgres {
        return Err(format!(
            "{}: store is not \"postgres\": set store = \"postgres\" and a [postgres] table to \
             name the database to migrate into",
            args.config.display()
        ));
    }
    let postgres = config
        .postgres
        .clone()
        .ok_or_else(|| format!("{}: no [postgres] table", args.config.display()))?;
    let from = args.from.unwrap_or_else(|| config.data_dir().to_owned());
    if !from.join("tollgate.sqlite3").is_file() {
        return Err(format!(
            "{}: no SQLite store here (tollgate.sqlite3 is missing); name the data directory \
             with --from",
            from.display()
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let target = PostgresStore::connect(postgres.target.clone(), postgres.options())
            .await
            .map_err(|e| e.to_string())?;
        let counts = migrate(&from, &target, args.force).await?;
        println!(
            "copied {} access tokens, {} refresh tokens ({} rotated), {} token and grant \
             revocations and {} cutoffs from {} into {}",
            counts.access_tokens,
            counts.refresh_tokens,
            counts.rotated,
            counts.revocations,
            counts.cutoffs,
            from.display(),
            target.target()
        );
        println!(
            "the relay of the next `tollgate serve` with [replication] publishes the copied \
             revocations to Redis again"
        );
        Ok(())
    })
}

/// Copies the SQLite store in `from` into `target`; refuses a target that holds rows unless
/// `force`.
async fn migrate(from: &Path, target: &PostgresStore, force: bool) -> Result<Counts, String> {
    let rows = target.row_counts().await.map_err(|e| e.to_string())?;
    let held: u64 = rows.iter().sum();
    if held > 0 && !force {
        return Err(format!(
            "{} is not empty ({} access tokens, {} refresh tokens, {} revocations, {} cutoffs); \
             nothing copied. Rerun with --force to merge into it",
            target.target(),
            rows[0],
            rows[1],
            rows[2],
            rows[3]
        ));
    }
    // Opening locks the directory: a `tollgate serve` still using it is refused, so that
    // nothing it writes later is left behind.
    let source = SqliteStore::open(from).map_err(|e| e.to_string())?;
    let loaded = source.load(now()).await.map_err(|e| e.to_string())?;
    let counts = count(&loaded);
    let records: Vec<Record> = loaded
        .refresh_tokens
        .into_iter()
        .map(Record::RefreshToken)
        .chain(loaded.access_tokens.into_iter().map(Record::AccessToken))
        .chain(loaded.revocations.into_iter().map(Record::Revocation))
        .collect();
    let mut copied = 0;
    for chunk in records.chunks(CHUNK) {
        target.commit(chunk.to_vec()).await.map_err(|e| {
            format!(
                "{e} (after {copied} of {} records; rerun with --force to finish: copying \
                 again is harmless)",
                records.len()
            )
        })?;
        copied += chunk.len();
    }
    Ok(counts)
}

fn now() -> UnixMillis {
    SystemClock.now()
}

fn count(loaded: &Loaded) -> Counts {
    let cutoffs = loaded
        .revocations
        .iter()
        .filter(|e| e.as_cutoff().is_some())
        .count();
    Counts {
        access_tokens: loaded.access_tokens.len(),
        refresh_tokens: loaded.refresh_tokens.len(),
        rotated: loaded.refresh_tokens.iter().filter(|t| t.rotated).count(),
        revocations: loaded.revocations.len() - cutoffs,
        cutoffs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_postgres::testing::PostgresServer;
    use tollgate_postgres::{PostgresOptions, PostgresTarget};
    use tollgate_store::Outbox;
    use tollgate_store::testing::{self, every_record_kind};

    async fn open(target: &PostgresTarget) -> PostgresStore {
        PostgresStore::connect(target.clone(), PostgresOptions::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn copies_everything_live_refusing_a_second_copy_without_force_and_a_directory_in_use() {
        let dir = tempfile::tempdir().unwrap();
        // Live records, far from expiry whatever the clock says.
        let shift = now().0;
        let records: Vec<Record> = every_record_kind()
            .into_iter()
            .map(|record| match record {
                Record::AccessToken(mut t) => {
                    t.expires_at = UnixMillis(t.expires_at.0 + shift);
                    Record::AccessToken(t)
                }
                Record::RefreshToken(mut t) => {
                    t.expires_at = UnixMillis(t.expires_at.0 + shift);
                    Record::RefreshToken(t)
                }
                other => other,
            })
            .collect();
        {
            let sqlite = SqliteStore::open(dir.path()).unwrap();
            sqlite.commit(records).await.unwrap();
        }
        let expected = SqliteStore::open(dir.path())
            .unwrap()
            .load(now())
            .await
            .unwrap();
        assert!(expected.refresh_tokens.iter().any(|t| t.rotated));

        let server = PostgresServer::start();
        let target = open(&server.target()).await;
        let counts = migrate(dir.path(), &target, false).await.unwrap();
        assert_eq!(counts, count(&expected));
        assert_eq!(counts.cutoffs, 10, "every issuer's and each issuer's");
        let copied = target.load(now()).await.unwrap();
        assert_eq!(testing::sorted(copied), testing::sorted(expected.clone()));

        // Every revocation is in the outbox of a fresh position: the relay publishes it all.
        let status = target.outbox_status().await.unwrap();
        assert_eq!(status.position.epoch, "");
        assert_eq!(status.pending as usize, counts.revocations + counts.cutoffs);

        let error = migrate(dir.path(), &target, false).await.unwrap_err();
        assert!(
            error.contains("not empty") && error.contains("--force"),
            "{error}"
        );
        migrate(dir.path(), &target, true).await.unwrap();
        let again = target.load(now()).await.unwrap();
        assert_eq!(testing::sorted(again), testing::sorted(expected));

        // A directory a `tollgate serve` still has open is refused. (In this test rather than
        // its own: the data-directory lock is an `flock`, which a process spawned by a test
        // running in parallel can hold for an instant between its fork and its exec.)
        let _serving = SqliteStore::open(dir.path()).unwrap();
        let error = migrate(dir.path(), &target, true).await.unwrap_err();
        assert!(error.contains("in use"), "{error}");
    }
}
