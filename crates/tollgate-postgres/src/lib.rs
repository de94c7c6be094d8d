//! A PostgreSQL [`Store`](tollgate_store::Store) for tollgate: the state of several
//! token-service replicas in one database.
//!
//! [`PostgresStore`] keeps what `tollgate_sqlite::SqliteStore` keeps (issued access tokens,
//! refresh tokens by hash, revocations with their outbox sequence, the relay's position) in
//! tables of the same shape, so that every replica reads every other replica's writes. It
//! implements the whole store contract of `tollgate-store` ([`Store`](tollgate_store::Store),
//! [`Outbox`](tollgate_store::Outbox) and [`SharedStore`](tollgate_store::SharedStore)) and
//! passes its test kit (`tollgate_store::testing`).
//!
//! ```no_run
//! # async fn run() -> Result<(), tollgate_store::StoreError> {
//! use std::sync::Arc;
//! use tollgate_postgres::{PostgresOptions, PostgresStore, PostgresTarget};
//!
//! let target = PostgresTarget::new("postgresql://tollgate@db.internal/tollgate")?
//!     .with_password(std::env::var("TOLLGATE_DB_PASSWORD").ok());
//! let store = PostgresStore::connect(target, PostgresOptions::default()).await?;
//! let store: Arc<dyn tollgate_store::Store> = Arc::new(store);
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! # Schema and migrations
//!
//! The schema is versioned in the table `schema_version` (one row). [`PostgresStore::connect`]
//! applies the migrations this code knows in one transaction that first takes a transaction-level
//! advisory lock (`pg_advisory_xact_lock`): replicas started together migrate one after the
//! other, and the later ones find the schema current. A database written by a newer tollgate
//! (an unknown, higher version) is refused. Tables live in the connection's `search_path`
//! (normally `public`): give tollgate a database, or a schema (`options=-c search_path=...` in the
//! URL), of its own.
//!
//! # Group commit
//!
//! One writer task per store owns one pooled connection. [`commit`](PostgresStore) and
//! [`write_behind`](PostgresStore) queue jobs to it; it takes everything queued (up to
//! [`MAX_BATCH`] jobs) and writes the batch in one transaction, so concurrent commits share one
//! `COMMIT` and one WAL flush, then answers every waiter. Within the transaction the statements
//! are pipelined (all sent before the first answer is awaited), and the batch's issued access
//! tokens, its bulk, are one `INSERT ... SELECT FROM unnest(...)` of arrays. If the batch fails, it is rolled back
//! and each job is retried in a transaction of its own, so that one bad record costs only its
//! own job (a lost connection fails them all quickly). Batches run in queue order, which is what
//! makes [`flush`](PostgresStore) (an empty commit) wait for everything queued before it.
//!
//! Several replicas are several writers on one database; PostgreSQL runs their transactions
//! concurrently and groups their WAL flushes itself. Within one process a single writer keeps the
//! queue's order; several writers per process would each batch the same way but need an ordering
//! barrier for `flush`, and have not been needed: one batch of up to [`MAX_BATCH`] jobs per round
//! trip of `COMMIT` is the throughput limit, not the connection.
//!
//! Reads (`load`, the outbox) and `purge` take their own pooled connections and never queue behind
//! the writer.
//!
//! # The outbox sequence across replicas
//!
//! Every revocation row takes `nextval('outbox_seq')` when it is written or revised, in the
//! writing transaction. A relay reads rows numbered after the position it published and moves the
//! position forward. A sequence alone would not do with concurrent writers: a transaction that took
//! number 10 may commit after one that took 11, and a relay that read 11 and moved past it would
//! never see 10. So every transaction that writes a revocation first takes the transaction-level
//! advisory lock [`OUTBOX_LOCK`], held until it commits: numbers are taken and made visible in one
//! order across all replicas, and whoever sees number *n* committed also sees every smaller number
//! that will ever exist. Transactions that write no revocation (issued tokens) skip the lock.
//!
//! # Replicas
//!
//! A `PostgresStore` [is shared](tollgate_store::Store::shared): the issuer leaves to
//! it what replicas must agree on, and it does each in the database, where they meet. Issued
//! tokens are stamped with the database's clock inside the writer's transaction, under the
//! advisory lock [`ISSUE_LOCK`] held in shared mode (so issuance commits durably before its
//! answer, grouped like any commit); a batch revocation holds that lock exclusively while it reads
//! the clock, counts in SQL and records its cutoff; a refresh token is rotated by one
//! compare-and-set statement; failed sign-ins are counted in the table `sign_in_throttle`. Why
//! this keeps batch counts exact is argued in `tollgate_store::shared`.
//!
//! # One publisher per outbox
//!
//! Every replica's relay asks [`Outbox::publisher_lease`](tollgate_store::Outbox::publisher_lease)
//! before each round; the store answers with a session-level advisory lock,
//! [`PUBLISHER_LOCK`], held on a connection of its own, so that exactly one replica publishes and
//! another takes over within [`TAKEOVER_BOUND`] of its death (the `lease` module argues the
//! bound and the choice of a lock over a lease row).
//!
//! # Standbys
//!
//! A URL may name several hosts
//! (`postgresql://u@db1,db2/tollgate?target_session_attrs=read-write`): each new connection tries them in order and keeps the first that accepts writes, and the pool
//! gives it the connect timeout once per host. After a failover the broken connections are
//! discarded (below) and the next ones reach the promoted standby. Whether an acknowledged commit
//! survives the promotion is the standby's configuration: a synchronous standby has every
//! acknowledged commit, an asynchronous one may not (`docs/postgres.md`).
//!
//! # When the database is unreachable
//!
//! Connecting and every operation are bounded ([`PostgresOptions`]), on the client (a timer
//! around each operation) and on the server (`statement_timeout`, set for every connection): a
//! commit against a stopped database fails within the connect timeout (at once when the connection is refused) with a
//! [`StoreError`](tollgate_store::StoreError), which the issuer answers with `503`. While the
//! last attempt failed, [`write_behind`](PostgresStore) refuses records too (so issuance answers
//! `503` rather than issuing tokens it cannot record) and queues an empty probe batch; the first
//! batch that succeeds makes the store healthy again. Broken pooled connections are dropped and
//! new ones made on the next use: the store recovers by itself when PostgreSQL returns.
//!
//! A batch that times out while its `COMMIT` is in flight may have committed: its waiters hear an
//! error all the same. Every write is an idempotent upsert, so the client's retry is harmless.
//!
//! # TLS
//!
//! The URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` work as libpq's: `disable`
//! (plain), `prefer` (the default: TLS if the server offers it, unverified unless `sslrootcert`
//! is set), `require` (TLS or no connection; the chain checked if `sslrootcert` is set),
//! `verify-ca` (the chain checked against `sslrootcert`), `verify-full` (the chain and the host
//! name, or IP address). TLS is rustls on aws-lc-rs, through a connector of this crate's own given
//! to the pool; the files are read when the URL is parsed, so a bad one is an error at start.

// Module order is dependency order: `failure` and `issuance` beneath `sql` (the records and the
// outbox), `coordination` (what replicas share) above it, `store` on top.
mod coordination;
mod failure;
mod issuance;
mod lease;
mod schema;
mod sql;
mod store;
mod target;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod tls;

pub use issuance::ISSUE_LOCK;
pub use lease::{DEAD_HOLDER_RELEASED_WITHIN, PUBLISHER_LOCK, TAKEOVER_BOUND};
pub use store::{MAX_BATCH, OUTBOX_LOCK, PostgresOptions, PostgresStore};
pub use target::PostgresTarget;
