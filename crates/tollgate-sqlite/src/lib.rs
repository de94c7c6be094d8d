//! The embedded durable store: one SQLite database in the data directory, written with group
//! commit.
//!
//! One OS thread owns the connection. Callers queue jobs to it; it takes everything queued (up to
//! a bounded number of jobs), runs the batch in one transaction and commits it with a single fsync, then
//! answers every waiter of the batch. Under load many commits share one flush instead of each
//! paying for its own.
//!
//! [`SqliteStore`] implements the store contract of `tollgate-store` for one process: its
//! [`Store`] and its [`Outbox`] (a relay can publish from it). It is not a
//! [`SharedStore`]: one process holds a data directory at a time.
//!
//! ```no_run
//! # fn run() -> Result<(), tollgate_store::StoreError> {
//! use std::sync::Arc;
//! use tollgate_sqlite::SqliteStore;
//! use tollgate_store::Store;
//!
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open("data")?);
//! # let _ = store;
//! # Ok(())
//! # }
//! ```

use rusqlite::{Connection, TransactionBehavior, params};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};
use tollgate_store::{
    AccessTokenRecord, Loaded, Outbox, OutboxEntry, OutboxPosition, OutboxStatus, Purge, Record,
    RefreshTokenRecord, SharedStore, Store, StoreError, StoreFuture,
};

/// The database file inside the data directory.
const FILE_NAME: &str = "tollgate.sqlite3";
/// The lock file in the data directory: held (`flock`) by the process that has the store open,
/// and holding that process's id so that a refusal can name it.
const LOCK_FILE: &str = "tollgate.lock";

/// The schema this code writes, kept in `PRAGMA user_version`: 1 was the first; 2 added the
/// outbox (a sequence number on every revocation, and the relay's position); 3 the issuer of a
/// cutoff (each issuer's apart from everyone's).
const SCHEMA_VERSION: i32 = 3;

/// At most this many jobs share a transaction, so that one huge backlog does not become one
/// huge transaction that holds every waiter until it is all written.
const MAX_BATCH: usize = 1024;

/// How long a statement waits for a lock held by another connection (an operator's `sqlite3`
/// shell, say) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `WITHOUT ROWID`: every table is looked up by its text or blob key, which then is stored once
/// rather than in both a rowid table and a key index.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS access_tokens (
    jti TEXT NOT NULL PRIMARY KEY,
    grant_id TEXT,
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS access_tokens_expires_at ON access_tokens (expires_at);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash BLOB NOT NULL PRIMARY KEY,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refresh_tokens_expires_at ON refresh_tokens (expires_at);

-- Token and grant revocations: kind is 'token' (id = jti) or 'grant' (id = grant id).
CREATE TABLE IF NOT EXISTS revocations (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revocations_expires_at ON revocations (expires_at);

-- Cutoffs, one per scope: scope is CutoffScope::kind ('all' with value '', 'tenant', 'subject'
-- or 'client'), value CutoffScope::value. Version 3 recreates it with an issuer (ISSUER_SCHEMA).
CREATE TABLE IF NOT EXISTS cutoffs (
    scope TEXT NOT NULL,
    value TEXT NOT NULL,
    issued_before INTEGER NOT NULL,
    PRIMARY KEY (scope, value)
) WITHOUT ROWID;
";

/// Version 1 to 2: the outbox. Rows written by version 1 are numbered by [`migrate`].
const OUTBOX_SCHEMA: &str = "
ALTER TABLE revocations ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX revocations_seq ON revocations (seq);
ALTER TABLE cutoffs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX cutoffs_seq ON cutoffs (seq);
-- One row: the last sequence number taken (never reused, even once its row is purged) and the
-- relay's position (the Redis epoch published into, and how far).
CREATE TABLE outbox (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    published_through INTEGER NOT NULL
);
INSERT INTO outbox (id, last_seq, epoch, published_through) VALUES (1, 0, '', 0);
";

/// Version 2 to 3: a cutoff has an issuer, part of its key, so that one issuer's cutoff is kept
/// apart from everyone's and from another issuer's on the same subject. `''` is every issuer
/// (what every cutoff of an older schema was). SQLite cannot change a primary key: the table is
/// copied into a new one, outbox numbers included (what was published stays published).
const ISSUER_SCHEMA: &str = "
-- Cutoffs, one per issuer and scope: issuer is the `iss` of the tokens it applies to, '' for
-- every issuer; scope is CutoffScope::kind ('all' with value '', 'tenant', 'subject', 'client'
-- or 'session'), value CutoffScope::value.
CREATE TABLE cutoffs_by_issuer (
    issuer TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL,
    value TEXT NOT NULL,
    issued_before INTEGER NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (issuer, scope, value)
) WITHOUT ROWID;
INSERT INTO cutoffs_by_issuer (issuer, scope, value, issued_before, seq)
    SELECT '', scope, value, issued_before, seq FROM cutoffs;
DROP TABLE cutoffs;
ALTER TABLE cutoffs_by_issuer RENAME TO cutoffs;
CREATE INDEX cutoffs_seq ON cutoffs (seq);
";

/// A [`Store`] in an SQLite database, `tollgate.sqlite3` in a data directory.
///
/// Commits are durable (WAL, `synchronous=FULL`) and grouped: concurrent commits share one
/// transaction and one fsync. Clones share the same database and writer thread; dropping the
/// last one writes everything still queued, then stops the thread (blocking until it has).
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Writer>,
}

/// The caller's side of the writer thread.
struct Writer {
    path: PathBuf,
    /// `None` only while dropping: closing the channel is what tells the thread to stop.
    /// Unbounded, because committers bound themselves (each waits for its answer) and a
    /// write-behind must neither block a request nor be dropped while the store is healthy.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    transactions: Arc<AtomicU64>,
    /// A second, read-only connection for the outbox: in WAL mode it reads what is committed
    /// without queueing behind the writer's transactions and their fsyncs, which would add their
    /// latency to every revocation's trip to other processes.
    reader: Arc<std::sync::Mutex<Connection>>,
    /// Holds the data directory's lock while the store is open; closing it releases the lock.
    _lock: std::fs::File,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Work for the writer thread. Outputs are kept in the job until the transaction has committed:
/// a waiter must not see anything that might still roll back.
enum Job {
    /// Records to write; no waiter for write-behind.
    Write {
        records: Vec<Record>,
        done: Option<Reply<()>>,
    },
    Load {
        now: UnixMillis,
        loaded: Loaded,
        done: Reply<Loaded>,
    },
    Purge {
        horizon: Purge,
        purged: u64,
        done: Reply<u64>,
    },
    /// Reads or moves the outbox.
    Outbox(OutboxJob),
}

/// The outbox's writes (its reads go through the reader connection).
enum OutboxJob {
    Mark {
        position: OutboxPosition,
        done: Reply<()>,
    },
}

/// Takes the data directory's exclusive lock, so that no two stores (in one process or two)
/// use one directory: a revocation written by one would go unseen by the other. The lock is
/// advisory (`flock` on Unix, `LockFileEx` on Windows) and released by the operating system when
/// the holder exits, however it exits.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::new(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = (&file).take(32).read_to_string(&mut holder);
            let holder = holder.trim();
            let by = if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
                format!("another process (pid {holder})")
            } else {
                "another process".to_owned()
            };
            return Err(StoreError::new(format!(
                "data directory {} is in use by {by}; \
                 two processes must not share one data directory",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::new(format!(
                "cannot lock {}: {e}",
                path.display()
            )));
        }
    }
    // Ours now: say who holds it (best effort; the lock itself is what protects).
    let pid = std::process::id().to_string();
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()))
        .and_then(|()| file.flush());
    Ok(file)
}

impl SqliteStore {
    /// Opens the database in `dir` (creating the directory and the database if missing) and
    /// starts its writer thread, `tollgate-store`.
    ///
    /// Blocks on file I/O: call it on start, before serving. Fails if the database was written by
    /// a newer tollgate (its schema version is unknown here).
    ///
    /// The store locks `dir` (the file `tollgate.lock`, holding this process's id) until it is
    /// dropped: opening a directory another store holds, in this process or another, fails with
    /// an error naming the directory and the holder's pid. Two stores on one directory would each
    /// miss the other's revocations.
    pub fn open(dir: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Self::open_with(dir.as_ref(), BUSY_TIMEOUT)
    }

    fn open_with(dir: &Path, busy_timeout: Duration) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::new(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = lock_dir(dir)?;
        let path = dir.join(FILE_NAME);
        let fail = |what: &str, e: rusqlite::Error| {
            StoreError::new(format!("{}: {what}: {e}", path.display()))
        };
        let mut conn = Connection::open(&path).map_err(|e| fail("cannot open", e))?;
        conn.busy_timeout(busy_timeout)
            .map_err(|e| fail("cannot set busy timeout", e))?;
        let journal_mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| fail("cannot enable WAL", e))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::new(format!(
                "{}: WAL mode unavailable (journal mode stays {journal_mode}); \
                 is the data directory on a network file system?",
                path.display()
            )));
        }
        // FULL: in WAL mode, NORMAL may lose the last commits on power loss; a commit must not.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| fail("cannot set synchronous=FULL", e))?;
        migrate(&mut conn).map_err(|e| StoreError::new(format!("{}: {e}", path.display())))?;
        let reader = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail("cannot open a reader", e))?;
        reader
            .busy_timeout(busy_timeout)
            .map_err(|e| fail("cannot set busy timeout", e))?;

        let (jobs, queue) = mpsc::channel();
        let transactions = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&transactions);
        let thread = std::thread::Builder::new()
            .name("tollgate-store".into())
            .spawn(move || serve(conn, queue, &counter))
            .map_err(|e| StoreError::new(format!("cannot start the store thread: {e}")))?;
        Ok(SqliteStore {
            writer: Arc::new(Writer {
                path,
                jobs: Some(jobs),
                thread: Some(thread),
                transactions,
                reader: Arc::new(std::sync::Mutex::new(reader)),
                _lock: lock,
            }),
        })
    }

    /// How many transactions have committed since [`open`](Self::open). Against the number of
    /// commits it shows how well group commit batches (for metrics).
    pub fn transactions(&self) -> u64 {
        self.writer.transactions.load(Ordering::Relaxed)
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.writer
            .jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| StoreError::new("the store thread has stopped"))
    }

    /// Runs `query` on the reader connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.writer.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| StoreError::new("a reader panicked"))?;
            query(&conn).map_err(|e| StoreError::new(format!("outbox read failed: {e}")))
        })
        .await
        .map_err(|_| StoreError::new("the outbox reader stopped"))?
    }

    /// Queues the job made with a reply channel and waits for its answer.
    async fn call<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(job(done))?;
        answer
            .await
            .map_err(|_| StoreError::new("the store thread stopped before answering"))?
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.writer.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The thread drains the queue, then sees the channel closed and returns: joining it means
        // nothing queued is lost at shutdown.
        self.jobs = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the store thread panicked");
        }
    }
}

impl Store for SqliteStore {
    fn commit(&self, records: Vec<Record>) -> StoreFuture<'_, ()> {
        Box::pin(self.call(|done| Job::Write {
            records,
            done: Some(done),
        }))
    }

    fn write_behind(&self, records: Vec<Record>) -> Result<(), StoreError> {
        self.send(Job::Write {
            records,
            done: None,
        })
    }

    fn load(&self, now: UnixMillis) -> StoreFuture<'_, Loaded> {
        Box::pin(self.call(move |done| Job::Load {
            now,
            loaded: Loaded::default(),
            done,
        }))
    }

    fn purge(&self, horizon: Purge) -> StoreFuture<'_, u64> {
        Box::pin(self.call(move |done| Job::Purge {
            horizon,
            purged: 0,
            done,
        }))
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        // Jobs run in order, so an empty commit resolves once everything queued before it is.
        self.commit(Vec::new())
    }

    fn outbox(self: Arc<Self>) -> Option<Arc<dyn Outbox>> {
        Some(self)
    }

    fn shared(self: Arc<Self>) -> Option<Arc<dyn SharedStore>> {
        None
    }
}

impl Outbox for SqliteStore {
    fn outbox_status(&self) -> StoreFuture<'_, OutboxStatus> {
        Box::pin(self.read(outbox_status))
    }

    fn outbox_read(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(self.read(move |conn| outbox_read(conn, after, limit)))
    }

    fn outbox_mark(&self, position: OutboxPosition) -> StoreFuture<'_, ()> {
        Box::pin(self.call(move |done| Job::Outbox(OutboxJob::Mark { position, done })))
    }

    fn publisher_lease(&self) -> StoreFuture<'_, bool> {
        // One process holds the data directory's exclusive lock: the only publisher there is.
        Box::pin(std::future::ready(Ok(true)))
    }
}

/// Creates the schema in a new database, or brings an older one to [`SCHEMA_VERSION`] (each
/// step in turn, in one transaction); refuses one written by a newer version.
fn migrate(conn: &mut Connection) -> Result<(), String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot read the schema: {e}"))?;
    let version: i32 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| format!("cannot read the schema version: {e}"))?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if !(0..SCHEMA_VERSION).contains(&version) {
        return Err(format!(
            "unknown schema version {version} (this tollgate writes version {SCHEMA_VERSION}): \
             the database was written by a newer tollgate; run that version or use another \
             data directory"
        ));
    }
    if version == 0 {
        tx.execute_batch(SCHEMA)
            .map_err(|e| format!("cannot create the schema: {e}"))?;
    }
    if version < 2 {
        tx.execute_batch(OUTBOX_SCHEMA)
            .map_err(|e| format!("cannot add the outbox to the schema: {e}"))?;
        number_unpublished(&tx).map_err(|e| format!("cannot number the revocations: {e}"))?;
    }
    tx.execute_batch(ISSUER_SCHEMA)
        .map_err(|e| format!("cannot add the cutoffs' issuer to the schema: {e}"))?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| format!("cannot set the schema version: {e}"))?;
    tx.commit()
        .map_err(|e| format!("cannot commit the schema: {e}"))
}

/// Gives every revocation stored by schema version 1 its own outbox number, so that a relay
/// publishes them all.
fn number_unpublished(tx: &Connection) -> rusqlite::Result<()> {
    let mut seq: i64 = 0;
    for (table, key) in [("revocations", "kind, id"), ("cutoffs", "scope, value")] {
        let keys: Vec<(String, String)> = tx
            .prepare(&format!("SELECT {key} FROM {table}"))?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let (first, second) = key.split_once(", ").unwrap_or((key, key));
        let mut update = tx.prepare(&format!(
            "UPDATE {table} SET seq = ?1 WHERE {first} = ?2 AND {second} = ?3"
        ))?;
        for (a, b) in keys {
            seq += 1;
            update.execute(params![seq, a, b])?;
        }
    }
    tx.execute("UPDATE outbox SET last_seq = ?1", [seq])?;
    Ok(())
}

/// The writer thread: takes what is queued, runs it as one transaction, answers, and again,
/// until every handle is gone and the queue is empty.
fn serve(mut conn: Connection, queue: mpsc::Receiver<Job>, transactions: &AtomicU64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        let outcomes = run_batch(&mut conn, &mut batch);
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        if failed < outcomes.len() {
            transactions.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(Err(e)) = outcomes.iter().find(|o| o.is_err()) {
            tracing::error!(error = %e, failed, jobs = batch.len(), "store jobs failed");
        }
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            job.finish(&outcome);
        }
    }
}

/// Runs every job of the batch in one transaction, each inside its own savepoint, and commits
/// it: a job that fails is rolled back alone and only its waiter hears of it, so one bad record
/// never costs the records that shared its transaction. Returns each job's outcome, in order;
/// if the transaction cannot begin or commit, every job fails.
fn run_batch(conn: &mut Connection, batch: &mut [Job]) -> Vec<Result<(), String>> {
    let jobs = batch.len();
    let all_fail = |e: String| vec![Err(e); jobs];
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return all_fail(format!("cannot begin a transaction: {e}")),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let outcome = match tx.savepoint() {
            // Dropping a savepoint that was not committed rolls it back.
            Ok(savepoint) => job.run(&savepoint).and_then(|()| {
                savepoint
                    .commit()
                    .map_err(|e| format!("cannot release a savepoint: {e}"))
            }),
            Err(e) => Err(format!("cannot open a savepoint: {e}")),
        };
        outcomes.push(outcome);
    }
    match tx.commit() {
        Ok(()) => outcomes,
        Err(e) => all_fail(format!("commit failed: {e}")),
    }
}

impl Job {
    fn run(&mut self, tx: &Connection) -> Result<(), String> {
        match self {
            Job::Write { records, .. } => records
                .iter()
                .try_for_each(|record| write(tx, record))
                .map_err(|e| format!("write failed: {e}")),
            Job::Load { now, loaded, .. } => {
                *loaded = load(tx, *now).map_err(|e| format!("load failed: {e}"))?;
                Ok(())
            }
            Job::Purge {
                horizon, purged, ..
            } => {
                *purged = purge(tx, *horizon).map_err(|e| format!("purge failed: {e}"))?;
                Ok(())
            }
            Job::Outbox(job) => job.run(tx).map_err(|e| format!("outbox failed: {e}")),
        }
    }

    /// Answers the waiter with the batch's outcome. A waiter that gave up (dropped its future)
    /// is no error, hence the ignored sends.
    fn finish(self, outcome: &Result<(), String>) {
        match self {
            Job::Write { done: None, .. } => {}
            Job::Write {
                done: Some(done), ..
            } => {
                let _ = done.send(answer(outcome, ()));
            }
            Job::Load { loaded, done, .. } => {
                let _ = done.send(answer(outcome, loaded));
            }
            Job::Purge { purged, done, .. } => {
                let _ = done.send(answer(outcome, purged));
            }
            Job::Outbox(OutboxJob::Mark { done, .. }) => {
                let _ = done.send(answer(outcome, ()));
            }
        }
    }
}

impl OutboxJob {
    fn run(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        match self {
            OutboxJob::Mark { position, .. } => {
                tx.prepare_cached(
                    "UPDATE outbox SET epoch = ?1, published_through = ?2
                     WHERE epoch <> ?1 OR published_through < ?2",
                )?
                .execute(params![
                    position.epoch,
                    i64::try_from(position.published_through).unwrap_or(i64::MAX)
                ])?;
            }
        }
        Ok(())
    }
}

fn outbox_status(conn: &Connection) -> rusqlite::Result<OutboxStatus> {
    let (epoch, published_through): (String, i64) = conn
        .prepare_cached("SELECT epoch, published_through FROM outbox")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let pending: i64 = conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM revocations WHERE seq > ?1)
                  + (SELECT count(*) FROM cutoffs WHERE seq > ?1)",
        )?
        .query_row([published_through], |row| row.get(0))?;
    Ok(OutboxStatus {
        position: OutboxPosition {
            epoch,
            published_through: u64::try_from(published_through).unwrap_or(0),
        },
        pending: u64::try_from(pending).unwrap_or(0),
    })
}

fn outbox_read(conn: &Connection, after: u64, limit: usize) -> rusqlite::Result<Vec<OutboxEntry>> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "SELECT seq, kind, id, expires_at, NULL, NULL FROM revocations WHERE seq > ?1
         UNION ALL
         SELECT seq, 'cutoff', scope, issued_before, value, issuer FROM cutoffs WHERE seq > ?1
         ORDER BY seq LIMIT ?2",
    )?
    .query_map([after, limit], |row| {
        let seq: i64 = row.get(0)?;
        let instant = UnixMillis(row.get(3)?);
        let event = match row.get_ref(1)?.as_str()? {
            "cutoff" => cutoff_event(
                row.get_ref(5)?.as_str()?,
                row.get_ref(2)?.as_str()?,
                row.get(4)?,
                instant,
            )?,
            kind => revocation_event(kind, row.get(2)?, instant)?,
        };
        Ok(OutboxEntry {
            seq: u64::try_from(seq).unwrap_or(0),
            event,
        })
    })?
    .collect()
}

/// Takes the next outbox number (never reused: it outlives the rows it numbered).
fn next_seq(tx: &Connection) -> rusqlite::Result<i64> {
    tx.prepare_cached("UPDATE outbox SET last_seq = last_seq + 1 RETURNING last_seq")?
        .query_row([], |row| row.get(0))
}

/// A token or grant revocation read back from the `revocations` table.
fn revocation_event(
    kind: &str,
    id: String,
    expires_at: UnixMillis,
) -> rusqlite::Result<RevocationEvent> {
    match kind {
        "token" => Ok(RevocationEvent::Token {
            jti: id,
            expires_at,
        }),
        "grant" => Ok(RevocationEvent::Grant {
            grant_id: id,
            expires_at,
        }),
        other => Err(corrupt(0, format!("unknown revocation kind {other:?}"))),
    }
}

/// A cutoff read back from the `cutoffs` table: of every issuer when `issuer` is `''`.
fn cutoff_event(
    issuer: &str,
    scope: &str,
    value: String,
    issued_before: UnixMillis,
) -> rusqlite::Result<RevocationEvent> {
    let scope = CutoffScope::from_parts(scope, value)
        .ok_or_else(|| corrupt(0, format!("unknown cutoff scope {scope:?}")))?;
    let issuer = (!issuer.is_empty()).then_some(issuer);
    Ok(RevocationEvent::cutoff(issuer, scope, issued_before))
}

/// A job's output if its batch committed, else the batch's error.
fn answer<T>(outcome: &Result<(), String>, output: T) -> Result<T, StoreError> {
    match outcome {
        Ok(()) => Ok(output),
        Err(e) => Err(StoreError::new(e.as_str())),
    }
}

fn write(tx: &Connection, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::AccessToken(t) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO access_tokens
                 (jti, grant_id, tenant, subject, client_id, issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                t.jti,
                t.grant_id,
                t.tenant,
                t.subject,
                t.client_id,
                t.issued_at.0,
                t.expires_at.0
            ])?;
        }
        Record::RefreshToken(t) => {
            // A replayed issuance never clears `rotated`: that would let a used token be reused.
            tx.prepare_cached(
                "INSERT INTO refresh_tokens
                 (hash, grant_id, client_id, subject, tenant, scope, issued_at, expires_at, rotated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (hash) DO UPDATE SET rotated = rotated OR excluded.rotated",
            )?
            .execute(params![
                t.hash,
                t.grant_id,
                t.client_id,
                t.subject,
                t.tenant,
                t.scope,
                t.issued_at.0,
                t.expires_at.0,
                t.rotated
            ])?;
        }
        Record::RefreshRotated(hash) => {
            tx.prepare_cached("UPDATE refresh_tokens SET rotated = 1 WHERE hash = ?1")?
                .execute(params![hash])?;
        }
        Record::Revocation(RevocationEvent::Token { jti, expires_at }) => {
            revoke(tx, "token", jti, *expires_at)?;
        }
        Record::Revocation(RevocationEvent::Grant {
            grant_id,
            expires_at,
        }) => revoke(tx, "grant", grant_id, *expires_at)?,
        Record::Revocation(event) => match event.as_cutoff() {
            Some((issuer, scope, issued_before)) => cut_off(tx, issuer, scope, issued_before)?,
            // A kind of revocation this schema has no table for: fail the commit rather than
            // acknowledge a revocation that was not stored.
            None => return Err(unsupported(format!("{event:?}"))),
        },
    }
    Ok(())
}

// Both upserts keep the maximum, so that applying events is idempotent and commutative here as in
// the revocation index. A row that is new or moved later takes a new outbox number, to be
// published; a repeat changes nothing (the number it took is skipped: gaps are harmless).

fn revoke(tx: &Connection, kind: &str, id: &str, expires_at: UnixMillis) -> rusqlite::Result<()> {
    let seq = next_seq(tx)?;
    tx.prepare_cached(
        "INSERT INTO revocations (kind, id, expires_at, seq) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, id) DO UPDATE SET expires_at = excluded.expires_at, seq = excluded.seq
         WHERE excluded.expires_at > expires_at",
    )?
    .execute(params![kind, id, expires_at.0, seq])?;
    Ok(())
}

/// Records a cutoff of `issuer`'s tokens, or of every issuer's (`None`, stored as `''`).
fn cut_off(
    tx: &Connection,
    issuer: Option<&str>,
    scope: &CutoffScope,
    issued_before: UnixMillis,
) -> rusqlite::Result<()> {
    // `''` is every issuer: an issuer's cutoff naming none would come back as everyone's.
    if issuer == Some("") {
        return Err(unsupported("an issuer's cutoff without an issuer".into()));
    }
    let (scope, value) = (scope.kind(), scope.value());
    let seq = next_seq(tx)?;
    tx.prepare_cached(
        "INSERT INTO cutoffs (issuer, scope, value, issued_before, seq)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (issuer, scope, value)
         DO UPDATE SET issued_before = excluded.issued_before, seq = excluded.seq
         WHERE excluded.issued_before > issued_before",
    )?
    .execute(params![
        issuer.unwrap_or_default(),
        scope,
        value,
        issued_before.0,
        seq
    ])?;
    Ok(())
}

fn load(tx: &Connection, now: UnixMillis) -> rusqlite::Result<Loaded> {
    let access_tokens = tx
        .prepare(
            "SELECT jti, grant_id, tenant, subject, client_id, issued_at, expires_at
             FROM access_tokens WHERE expires_at >= ?1",
        )?
        .query_map([now.0], |row| {
            Ok(AccessTokenRecord {
                jti: row.get(0)?,
                grant_id: row.get(1)?,
                tenant: row.get(2)?,
                subject: row.get(3)?,
                client_id: row.get(4)?,
                issued_at: UnixMillis(row.get(5)?),
                expires_at: UnixMillis(row.get(6)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let refresh_tokens = tx
        .prepare(
            "SELECT hash, grant_id, client_id, subject, tenant, scope, issued_at, expires_at, rotated
             FROM refresh_tokens WHERE expires_at >= ?1",
        )?
        .query_map([now.0], |row| {
            Ok(RefreshTokenRecord {
                hash: row.get(0)?,
                grant_id: row.get(1)?,
                client_id: row.get(2)?,
                subject: row.get(3)?,
                tenant: row.get(4)?,
                scope: row.get(5)?,
                issued_at: UnixMillis(row.get(6)?),
                expires_at: UnixMillis(row.get(7)?),
                rotated: row.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut revocations: Vec<RevocationEvent> = tx
        .prepare("SELECT kind, id, expires_at FROM revocations")?
        .query_map([], |row| {
            revocation_event(
                row.get_ref(0)?.as_str()?,
                row.get(1)?,
                UnixMillis(row.get(2)?),
            )
        })?
        .collect::<rusqlite::Result<_>>()?;
    let cutoffs = tx
        .prepare("SELECT issuer, scope, value, issued_before FROM cutoffs")?
        .query_map([], |row| {
            cutoff_event(
                row.get_ref(0)?.as_str()?,
                row.get_ref(1)?.as_str()?,
                row.get(2)?,
                UnixMillis(row.get(3)?),
            )
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    revocations.extend(cutoffs);
    Ok(Loaded {
        access_tokens,
        refresh_tokens,
        revocations,
    })
}

/// A revocation this store cannot represent.
fn unsupported(what: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(format!("cannot store {what}").into())
}

/// A row this code did not write.
fn corrupt(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

fn purge(tx: &Connection, horizon: Purge) -> rusqlite::Result<u64> {
    let mut purged = 0;
    for table in ["access_tokens", "refresh_tokens", "revocations"] {
        let sql = format!("DELETE FROM {table} WHERE expires_at < ?1");
        purged += tx
            .prepare_cached(&sql)?
            .execute([horizon.expired_before.0])? as u64;
    }
    purged += tx
        .prepare_cached("DELETE FROM cutoffs WHERE issued_before <= ?1")?
        .execute([horizon.cutoffs_before.0])? as u64;
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::tempdir;
    use tollgate_store::testing::{self, *};

    /// Holds the database's write lock from another connection, as an operator's `sqlite3`
    /// shell could, until dropped.
    fn hold_write_lock(dir: &Path) -> Connection {
        let other = Connection::open(dir.join(FILE_NAME)).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }

    #[test]
    fn one_data_directory_one_store() {
        let dir = tempdir().unwrap();
        let first = SqliteStore::open(dir.path()).unwrap();
        let Err(err) = SqliteStore::open(dir.path()) else {
            panic!("a second store is refused");
        };
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().display().to_string())
                && message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        drop(first);
        SqliteStore::open(dir.path()).expect("the lock goes with the store");
    }

    #[tokio::test]
    async fn round_trips_every_record_kind_across_a_reopen() {
        let dir = tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("data")).unwrap();
        store.commit(every_record_kind()).await.unwrap();
        drop(store);

        let store = SqliteStore::open(dir.path().join("data")).unwrap();
        assert_every_record_kind(store.load(NOW).await.unwrap());
        let other = Connection::open(dir.path().join("data").join(FILE_NAME)).unwrap();
        let mode: String = other
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn rotation_sticks_across_a_reopen() {
        let dir = tempdir().unwrap();
        testing::rotation_sticks(&SqliteStore::open(dir.path()).unwrap()).await;
        let loaded = SqliteStore::open(dir.path()).unwrap().load(NOW).await;
        assert!(loaded.unwrap().refresh_tokens[0].rotated);
    }

    #[tokio::test]
    async fn keeps_the_store_contract() {
        // Each check gets its own directory, kept until the end of the test.
        let dirs = std::cell::RefCell::new(Vec::new());
        testing::check_store(|| {
            let dir = tempdir().unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            dirs.borrow_mut().push(dir);
            async move { store }
        })
        .await;
        testing::check_outbox(|| {
            let dir = tempdir().unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            dirs.borrow_mut().push(dir);
            async move { store }
        })
        .await;
    }

    #[tokio::test]
    async fn dropping_the_last_handle_writes_what_is_queued() {
        let dir = tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let clone = store.clone();
        clone.write_behind(every_record_kind()).unwrap();
        drop(clone);
        // A backlog of jobs (expired tokens: counted below, not loaded) that takes many batches.
        for i in 0..2000 {
            let record = Record::AccessToken(access_token(&format!("t{i}"), NOW.0 - 1));
            store.write_behind(vec![record]).unwrap();
        }
        drop(store);

        // Read the file directly, with no writer thread in between: the drop has waited for it.
        let rows: i64 = Connection::open(dir.path().join(FILE_NAME))
            .unwrap()
            .query_row("SELECT count(*) FROM access_tokens", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 2000 + 4);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_every_record_kind(store.load(NOW).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_share_transactions() {
        let dir = tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        // While another connection holds the write lock the first batch waits (busy timeout), and
        // every other commit queues up behind it, as they do behind a slow fsync.
        let lock = hold_write_lock(dir.path());
        let commits: Vec<_> = (0..200)
            .map(|i| {
                let store = Arc::clone(&store);
                let record = Record::AccessToken(access_token(&format!("t{i}"), NOW.0));
                tokio::spawn(async move { store.commit(vec![record]).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(lock);
        for commit in commits {
            commit.await.unwrap().unwrap();
        }

        assert_eq!(store.load(NOW).await.unwrap().access_tokens.len(), 200);
        let transactions = store.transactions();
        assert!(
            transactions < 20,
            "{transactions} transactions for 200 commits"
        );
    }

    #[tokio::test]
    async fn a_failed_transaction_fails_its_waiters_and_later_ones_succeed() {
        let dir = tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path(), Duration::from_millis(10)).unwrap();
        let lock = hold_write_lock(dir.path());
        let error = store.commit(every_record_kind()).await.unwrap_err();
        assert!(error.to_string().contains("database is locked"), "{error}");
        assert!(store.flush().await.is_err());
        drop(lock);

        store.commit(every_record_kind()).await.unwrap();
        assert_every_record_kind(store.load(NOW).await.unwrap());
        assert_eq!(store.transactions(), 2);
    }

    #[test]
    fn a_failing_job_costs_only_itself() {
        let dir = tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let mut conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        // A record the database refuses, as a full disk or a corrupt page would refuse one.
        conn.execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON access_tokens WHEN NEW.jti = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .unwrap();
        let write = |records: Vec<Record>| Job::Write {
            records,
            done: None,
        };
        let mut batch = vec![
            write(vec![Record::AccessToken(access_token("before", NOW.0 + 1))]),
            write(vec![
                Record::AccessToken(access_token("same-job", NOW.0 + 1)),
                Record::AccessToken(access_token("poison", NOW.0 + 1)),
            ]),
            write(vec![Record::AccessToken(access_token("after", NOW.0 + 1))]),
        ];
        let outcomes = run_batch(&mut conn, &mut batch);
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(outcomes[1].as_ref().unwrap_err().contains("poisoned"));
        let mut stored: Vec<String> = conn
            .prepare("SELECT jti FROM access_tokens")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        stored.sort();
        // The failed job left nothing behind, not even its good record.
        assert_eq!(stored, ["after", "before"]);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempdir().unwrap();
        Connection::open(dir.path().join(FILE_NAME))
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let error = SqliteStore::open(dir.path()).unwrap_err().to_string();
        let unknown = format!("unknown schema version {}", SCHEMA_VERSION + 1);
        assert!(error.contains(&unknown), "{error}");
    }

    /// A database of the previous release (schema 2: cutoffs without an issuer) opens with its
    /// cutoffs as every issuer's, their outbox numbers and the relay's position kept (nothing is
    /// published again), and then keeps issuer cutoffs apart from them.
    #[tokio::test]
    async fn a_version_2_database_keeps_its_cutoffs_as_every_issuers() {
        let dir = tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(OUTBOX_SCHEMA).unwrap();
            conn.execute_batch(
                "INSERT INTO revocations VALUES ('token', 'old-jti', 9000000, 1);
                 INSERT INTO cutoffs VALUES ('subject', 'alice', 10, 2);
                 INSERT INTO cutoffs VALUES ('all', '', 5, 3);
                 UPDATE outbox SET last_seq = 3, epoch = 'e1', published_through = 3;",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let alice = || CutoffScope::Subject("alice".into());
        let everyone = RevocationEvent::cutoff(None, alice(), UnixMillis(10));
        let mut loaded = store.load(NOW).await.unwrap().revocations;
        loaded.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            loaded,
            vec![
                RevocationEvent::cutoff(None, CutoffScope::All, UnixMillis(5)),
                everyone.clone(),
                RevocationEvent::Token {
                    jti: "old-jti".into(),
                    expires_at: UnixMillis(9_000_000),
                },
            ]
        );
        let status = store.outbox_status().await.unwrap();
        assert_eq!(status.pending, 0, "the migration republishes nothing");
        assert_eq!(status.position.published_through, 3);

        let ours = RevocationEvent::cutoff(Some(ISSUER), alice(), UnixMillis(20));
        store
            .commit(vec![Record::Revocation(ours.clone())])
            .await
            .unwrap();
        let pending = store.outbox_read(3, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event, ours);
        assert!(pending[0].seq > 3, "numbers go on after the migrated ones");
        let loaded = store.load(NOW).await.unwrap().revocations;
        assert!(
            loaded.contains(&everyone) && loaded.contains(&ours),
            "{loaded:?}"
        );
        drop(store);
        let version: i32 = Connection::open(dir.path().join(FILE_NAME))
            .unwrap()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_version_1_database_gets_an_outbox_holding_its_revocations() {
        let dir = tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "INSERT INTO revocations VALUES ('token', 'old-jti', 9000000);
                 INSERT INTO cutoffs VALUES ('subject', 'alice', 10);",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let pending = store.outbox_read(0, 10).await.unwrap();
        let mut events: Vec<_> = pending.iter().map(|e| e.event.clone()).collect();
        events.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            events,
            vec![
                RevocationEvent::Cutoff {
                    scope: CutoffScope::Subject("alice".into()),
                    issued_before: UnixMillis(10),
                },
                RevocationEvent::Token {
                    jti: "old-jti".into(),
                    expires_at: UnixMillis(9_000_000),
                },
            ]
        );
        assert_ne!(
            pending[0].seq, pending[1].seq,
            "each row has its own number"
        );
        assert_eq!(store.outbox_status().await.unwrap().pending, 2);
        // New revocations are numbered after the migrated ones.
        store
            .commit(vec![Record::Revocation(RevocationEvent::Token {
                jti: "new".into(),
                expires_at: UnixMillis(9_000_000),
            })])
            .await
            .unwrap();
        let all = store.outbox_read(0, 10).await.unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[2].seq > all[0].seq.max(all[1].seq));
    }

    #[tokio::test]
    async fn the_outbox_survives_a_reopen() {
        let dir = tempdir().unwrap();
        let revoke = |jti: &str| {
            vec![Record::Revocation(RevocationEvent::Token {
                jti: jti.into(),
                expires_at: UnixMillis(9_000_000),
            })]
        };
        let marked = {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.commit(revoke("a")).await.unwrap();
            let seq = store.outbox_read(0, 10).await.unwrap()[0].seq;
            let position = OutboxPosition {
                epoch: "epoch-1".into(),
                published_through: seq,
            };
            store.outbox_mark(position.clone()).await.unwrap();
            store
                .purge(Purge::new(UnixMillis(i64::MAX), UnixMillis(i64::MAX)))
                .await
                .unwrap();
            position
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        let status = store.outbox_status().await.unwrap();
        assert_eq!(status.position, marked);
        assert_eq!(status.pending, 0);
        store.commit(revoke("b")).await.unwrap();
        let pending = store
            .outbox_read(marked.published_through, 10)
            .await
            .unwrap();
        assert_eq!(pending.len(), 1, "numbers never start over: {pending:?}");
    }
}
