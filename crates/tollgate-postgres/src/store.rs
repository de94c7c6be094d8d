//! [`PostgresStore`]: the pool, the writer task that groups commits, and the `Store` methods.

use crate::coordination;
use crate::failure::{self, Failure};
use crate::lease::Lease;
use crate::sql::{self, Statements};
use crate::target::PostgresTarget;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tollgate_core::{CutoffScope, UnixMillis};
use tollgate_store::{
    LiveCount, Loaded, Outbox, OutboxEntry, OutboxPosition, OutboxStatus, Purge, Record,
    RefreshTokenRecord, Rotation, Settled, SharedCutOff, SharedStore, Stamp, Store, StoreError,
    StoreFuture, ThrottlePolicy, TokenHash,
};

pub use crate::sql::OUTBOX_LOCK;

/// At most this many jobs share a transaction, so that one huge backlog does not become one huge
/// transaction that holds every waiter until it is all written.
pub const MAX_BATCH: usize = 1024;

/// How the store uses the database: pool size and time limits.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pool_size: usize,
    connect_timeout: Duration,
    operation_timeout: Duration,
    load_timeout: Duration,
    durable_access_tokens: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 8,
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
            load_timeout: Duration::from_secs(300),
            durable_access_tokens: false,
        }
    }
}

impl PostgresOptions {
    /// Connections in the pool (default 8, at least 4): one is the writer's, one to four (the
    /// pool beyond four) record issued tokens, and the others serve reads, cutoffs, purges and
    /// the relay. The publisher lease holds one connection more, outside the pool, once a relay
    /// asks for it.
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(4);
        self
    }

    /// How long making a connection may take (default 3 s): a commit while the database is
    /// unreachable fails after at most this long (at once if the connection is refused).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one operation (a batch of commits, an outbox read, a purge) may take, waiting for
    /// a connection included (default 10 s); also each connection's `statement_timeout`. An
    /// operation that overruns fails and its connection is closed, which makes the server roll it
    /// back.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Whether an access token issued alone (no refresh token) waits for its row to be flushed
    /// to PostgreSQL's WAL before it is answered (default `false`).
    ///
    /// Either way the row is committed, and so visible to every replica's batch count, before the
    /// token is answered: counts stay exact while the database runs. Off, its transaction commits
    /// with `synchronous_commit = off`, so a crash of the PostgreSQL server itself may forget the
    /// last fraction of a second of issued access tokens: a later batch count then counts fewer
    /// tokens than it refuses, and never lets a revoked token through (cutoffs judge by issue
    /// instant). That is the trade the embedded store makes by writing issued access tokens
    /// behind the answer, and it roughly doubles issuance on PostgreSQL. Refresh tokens,
    /// rotations and revocations are always durable before they are answered.
    pub fn durable_access_tokens(mut self, durable: bool) -> Self {
        self.durable_access_tokens = durable;
        self
    }

    /// How long [`load`](Store::load) may take (default 300 s): it reads every live token.
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }
}

/// A [`Store`] in a PostgreSQL database, shared by any number of processes.
///
/// Commits are durable once PostgreSQL has committed them (with the server's default
/// `synchronous_commit = on`, flushed to its WAL) and grouped: concurrent commits share one
/// transaction (see the crate docs). Clones share the pool and the writer task. Dropping the last
/// handle lets the writer finish what is queued in the background; call
/// [`flush`](Store::flush) first to wait for it.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::UnboundedSender<Job>,
    /// The issuance writers' queues (see [`issuance_writers`]), taken in turn.
    issuers: Vec<mpsc::UnboundedSender<Job>>,
    next_issuer: AtomicU64,
    shared: Arc<Shared>,
    /// The publisher lease's own connection: dropped with the last handle, which releases it.
    lease: Lease,
}

/// How many writers record issued tokens, besides the one that writes everything else: issued
/// tokens are committed before they are answered, and one writer would make every issuance wait
/// for the previous batch's `COMMIT`. Several batches in flight let PostgreSQL flush their commits
/// together. They need no order among themselves (each caller waits for its own commit, and
/// `flush` is for written-behind records, which go to the other writer). Half the pool beyond the
/// four connections kept for the other writer, reads, cutoffs and the relay, between 1 and 4.
fn issuance_writers(pool_size: usize) -> usize {
    (pool_size.saturating_sub(4)).clamp(1, 4)
}

/// What the writer task and the handles both see.
struct Shared {
    target: PostgresTarget,
    pool: Pool,
    options: PostgresOptions,
    /// False from a batch that lost the connection until one succeeds.
    healthy: AtomicBool,
    /// An empty batch is queued to find out whether the database is back.
    probing: AtomicBool,
    transactions: AtomicU64,
}

/// A job's answer: the issue instant of its stamped tokens (zero for a job without a stamp).
type Reply = oneshot::Sender<Result<UnixMillis, StoreError>>;

/// Records for the writer, or tokens to stamp with the batch's issue instant; no waiter for
/// write-behind.
struct Job {
    records: Vec<Record>,
    stamp: Option<Stamp>,
    done: Option<Reply>,
}

impl PostgresStore {
    /// Connects to `target`, applies the schema migrations (under an advisory lock, so replicas
    /// starting together do not race) and starts the writer task on the current tokio runtime.
    ///
    /// Fails with one line naming the target (never its password) if the database cannot be
    /// reached within the connect timeout, refuses the credentials, or holds a schema written by
    /// a newer tollgate.
    pub async fn connect(
        target: PostgresTarget,
        options: PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let mut config = target.config().clone();
        // The server stops an overrunning statement itself too, rather than running it on for a
        // client that gave up.
        let server_options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or(""),
            options.operation_timeout.as_millis()
        );
        config
            .options(server_options.trim())
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("tollgate");
        // A new connection tries each host of a multi-host URL in turn, each within the connect
        // timeout: the pool must let it get to the last one.
        let hosts = u32::try_from(config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
        let create_timeout = options.connect_timeout.saturating_mul(hosts);
        let lease = Lease::new(&config, target.tls(), create_timeout);
        let manager = Manager::from_config(
            config,
            target.tls(),
            ManagerConfig {
                // A connection is checked only for having been closed: a dead one then fails its
                // next operation, is dropped, and the one after gets a fresh connection.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.operation_timeout))
            .create_timeout(Some(create_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::new(format!("{target}: cannot make a pool: {e}")))?;
        let shared = Arc::new(Shared {
            target,
            pool,
            options,
            healthy: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            transactions: AtomicU64::new(0),
        });
        let mut client = shared.connection().await.map_err(|e| shared.error(&e))?;
        crate::schema::migrate(&mut client)
            .await
            .map_err(|e| StoreError::new(format!("{}: {e}", shared.target)))?;
        drop(client);
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(Arc::clone(&shared), queue));
        let issuers = (0..issuance_writers(shared.options.pool_size))
            .map(|_| {
                let (issuer, queue) = mpsc::unbounded_channel();
                tokio::spawn(write_loop(Arc::clone(&shared), queue));
                issuer
            })
            .collect();
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                jobs,
                issuers,
                next_issuer: AtomicU64::new(0),
                shared,
                lease,
            }),
        })
    }

    /// The database, for logs (without its password).
    pub fn target(&self) -> &PostgresTarget {
        &self.inner.shared.target
    }

    /// How many transactions the writer has committed. Against the number of commits it shows
    /// how well group commit batches (for metrics).
    pub fn transactions(&self) -> u64 {
        self.inner.shared.transactions.load(Ordering::Relaxed)
    }

    /// How many rows the tables hold, expired ones included: `[access tokens, refresh tokens,
    /// token and grant revocations, cutoffs]`. For migrations, which refuse a target that is not
    /// empty.
    pub async fn row_counts(&self) -> Result<[u64; 4], StoreError> {
        self.inner
            .shared
            .read(self.inner.shared.options.operation_timeout, |client| {
                Box::pin(async move { sql::row_counts(&***client).await })
            })
            .await
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.inner
            .jobs
            .send(job)
            .map_err(|_| StoreError::new("the store's writer has stopped"))
    }

    async fn call(
        &self,
        records: Vec<Record>,
        stamp: Option<Stamp>,
    ) -> Result<UnixMillis, StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Job {
            records,
            stamp,
            done: Some(done),
        })?;
        answer
            .await
            .map_err(|_| StoreError::new("the store's writer stopped before answering"))?
    }
}

impl Shared {
    /// A pooled connection, or why there is none.
    async fn connection(&self) -> Result<Object, Failure> {
        self.pool.get().await.map_err(|e| {
            let message = match &e {
                deadpool_postgres::PoolError::Backend(e) => failure::describe(e),
                deadpool_postgres::PoolError::Timeout(_) => format!(
                    "no connection within {:?} (database unreachable, or the pool exhausted)",
                    self.options.connect_timeout
                ),
                other => other.to_string(),
            };
            Failure::lost(format!("cannot connect: {message}"))
        })
    }

    fn error(&self, failure: &Failure) -> StoreError {
        StoreError::new(format!("{}: {}", self.target, failure.message))
    }

    /// Runs `query` on a pooled connection within `timeout`. A connection that failed or timed
    /// out is closed rather than returned to the pool.
    async fn read<T>(
        &self,
        timeout: Duration,
        query: impl for<'c> FnOnce(
            &'c mut Object,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<T, Failure>> + Send + 'c>,
        >,
    ) -> Result<T, StoreError> {
        // Waiting for a connection is bounded by the pool's own timeouts.
        let mut client = self.connection().await.map_err(|e| self.error(&e))?;
        let result = match tokio::time::timeout(timeout, query(&mut client)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::lost(format!("timed out after {timeout:?}"))),
        };
        if matches!(&result, Err(failure) if failure.lost) {
            discard(client);
        }
        result.map_err(|e| self.error(&e))
    }
}

/// Closes a connection instead of returning it to the pool: after a timeout it may be in the
/// middle of a transaction, and after a lost connection it is useless. Closing it makes the server
/// roll back whatever was open.
fn discard(client: Object) {
    drop(Object::take(client));
}

/// Discards the writer's connection, if any.
fn discard_writer(writer: &mut Option<Writer>) {
    if let Some(old) = writer.take() {
        discard(old.client);
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.inner.shared.target)
            .finish_non_exhaustive()
    }
}

/// The writer's connection with its prepared statements.
struct Writer {
    client: Object,
    statements: Statements,
}

/// The writer task: takes what is queued, writes it as one transaction, answers, and again, until
/// every handle is gone and the queue is empty.
async fn write_loop(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut writer: Option<Writer> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let timeout = shared.options.operation_timeout;
        let outcomes =
            match tokio::time::timeout(timeout, run_batch(&shared, &mut writer, &batch)).await {
                Ok(outcomes) => outcomes,
                Err(_) => {
                    // The connection is mid-transaction: closing it makes the server roll back.
                    discard_writer(&mut writer);
                    vec![Err(Failure::lost(format!("timed out after {timeout:?}"))); batch.len()]
                }
            };
        let lost = outcomes.iter().any(|o| matches!(o, Err(f) if f.lost));
        if outcomes.iter().any(Result::is_ok) {
            shared.transactions.fetch_add(1, Ordering::Relaxed);
        }
        let was_healthy = shared.healthy.swap(!lost, Ordering::Relaxed);
        shared.probing.store(false, Ordering::Relaxed);
        if let Some(Err(e)) = outcomes.iter().find(|o| o.is_err()) {
            let failed = outcomes.iter().filter(|o| o.is_err()).count();
            if lost && !was_healthy {
                tracing::debug!(target = %shared.target, error = %e.message, failed, "store still unreachable");
            } else {
                tracing::error!(target = %shared.target, error = %e.message, failed, jobs = batch.len(), "store jobs failed");
            }
        } else if !was_healthy {
            tracing::info!(target = %shared.target, "store reachable again");
        }
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            if let Some(done) = job.done {
                // A waiter that gave up (dropped its future) is no error.
                let _ = done.send(outcome.map_err(|e| shared.error(&e)));
            }
        }
    }
}

/// Writes the batch in one transaction; if that fails for a reason other than the connection,
/// writes each job in a transaction of its own so that only the bad ones fail. Returns each job's
/// outcome, in order.
async fn run_batch(
    shared: &Shared,
    writer: &mut Option<Writer>,
    batch: &[Job],
) -> Vec<Result<UnixMillis, Failure>> {
    let all_fail = |e: Failure| vec![Err(e); batch.len()];
    if writer.as_ref().is_some_and(|w| w.client.is_closed()) {
        discard_writer(writer);
    }
    let current = match writer {
        Some(current) => current,
        None => match connect_writer(shared).await {
            Ok(fresh) => writer.insert(fresh),
            Err(e) => return all_fail(e),
        },
    };
    let records: Vec<&Record> = batch.iter().flat_map(|job| &job.records).collect();
    let stamps: Vec<&Stamp> = batch.iter().filter_map(|job| job.stamp.as_ref()).collect();
    let durable = shared.options.durable_access_tokens;
    match sql::write(
        &mut current.client,
        &current.statements,
        &records,
        &stamps,
        durable,
    )
    .await
    {
        Ok(at) => return vec![Ok(at); batch.len()],
        Err(e) if e.lost => {
            discard_writer(writer);
            return all_fail(e);
        }
        // Alone in its batch: there is nothing else to save.
        Err(e) if batch.len() == 1 => return vec![Err(e)],
        Err(_) => {}
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let Some(current) = writer.as_mut() else {
            outcomes.push(Err(Failure::lost("the connection was lost".into())));
            continue;
        };
        let records: Vec<&Record> = job.records.iter().collect();
        let stamps: Vec<&Stamp> = job.stamp.iter().collect();
        let outcome = sql::write(
            &mut current.client,
            &current.statements,
            &records,
            &stamps,
            shared.options.durable_access_tokens,
        )
        .await;
        if matches!(&outcome, Err(e) if e.lost) {
            discard_writer(writer);
        }
        outcomes.push(outcome);
    }
    outcomes
}

async fn connect_writer(shared: &Shared) -> Result<Writer, Failure> {
    let client = shared.connection().await?;
    let statements = Statements::prepare(&client).await?;
    Ok(Writer { client, statements })
}

impl Store for PostgresStore {
    fn commit(&self, records: Vec<Record>) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.call(records, None).await.map(drop) })
    }

    fn write_behind(&self, records: Vec<Record>) -> Result<(), StoreError> {
        let shared = &self.inner.shared;
        if !shared.healthy.load(Ordering::Relaxed) {
            // Refuse rather than accept records that would be lost: the issuer answers 503. One
            // empty batch at a time finds out when the database is back.
            if !shared.probing.swap(true, Ordering::Relaxed) {
                self.send(Job {
                    records: Vec::new(),
                    stamp: None,
                    done: None,
                })?;
            }
            return Err(StoreError::new(format!(
                "{}: the database is unreachable",
                shared.target
            )));
        }
        self.send(Job {
            records,
            stamp: None,
            done: None,
        })
    }

    fn load(&self, now: UnixMillis) -> StoreFuture<'_, Loaded> {
        let shared = &self.inner.shared;
        let timeout = shared.options.load_timeout;
        Box::pin(shared.read(timeout, move |client| {
            Box::pin(async move { sql::load(client, now, timeout).await })
        }))
    }

    fn purge(&self, horizon: Purge) -> StoreFuture<'_, u64> {
        let shared = &self.inner.shared;
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(async move { sql::purge(client, horizon).await })
            }),
        )
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        // Batches run in order, so an empty commit resolves once everything queued before it has.
        self.commit(Vec::new())
    }

    fn outbox(self: Arc<Self>) -> Option<Arc<dyn Outbox>> {
        Some(self)
    }

    fn shared(self: Arc<Self>) -> Option<Arc<dyn SharedStore>> {
        Some(self)
    }
}

impl Outbox for PostgresStore {
    fn outbox_status(&self) -> StoreFuture<'_, OutboxStatus> {
        let shared = &self.inner.shared;
        Box::pin(shared.read(shared.options.operation_timeout, |client| {
            Box::pin(async move { sql::outbox_status(&***client).await })
        }))
    }

    fn outbox_read(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        let shared = &self.inner.shared;
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(async move { sql::outbox_read(&***client, after, limit).await })
            }),
        )
    }

    fn outbox_mark(&self, position: OutboxPosition) -> StoreFuture<'_, ()> {
        let shared = &self.inner.shared;
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(async move { sql::outbox_mark(&***client, &position).await })
            }),
        )
    }

    fn publisher_lease(&self) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let shared = &self.inner.shared;
            self.inner.lease.take().await.map_err(|e| shared.error(&e))
        })
    }
}

impl SharedStore for PostgresStore {
    fn commit_issued(&self, stamp: Stamp) -> StoreFuture<'_, UnixMillis> {
        Box::pin(async move {
            let inner = &self.inner;
            let turn = inner.next_issuer.fetch_add(1, Ordering::Relaxed);
            let issuer = usize::try_from(turn).unwrap_or(0) % inner.issuers.len().max(1);
            let (done, answer) = oneshot::channel();
            let job = Job {
                records: Vec::new(),
                stamp: Some(stamp),
                done: Some(done),
            };
            inner
                .issuers
                .get(issuer)
                .unwrap_or(&inner.jobs)
                .send(job)
                .map_err(|_| StoreError::new("the store's writer has stopped"))?;
            answer
                .await
                .map_err(|_| StoreError::new("the store's writer stopped before answering"))?
        })
    }

    fn cut_off(
        &self,
        scope: &CutoffScope,
        asked: Option<UnixMillis>,
    ) -> StoreFuture<'_, SharedCutOff> {
        let shared = &self.inner.shared;
        let scope = scope.clone();
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(async move { coordination::cut_off(client, &scope, asked).await })
            }),
        )
    }

    fn refresh_token(&self, hash: &TokenHash) -> StoreFuture<'_, Option<RefreshTokenRecord>> {
        let (shared, hash) = (&self.inner.shared, *hash);
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(async move { coordination::refresh_token(&***client, &hash).await })
            }),
        )
    }

    fn rotate_refresh(&self, hash: &TokenHash) -> StoreFuture<'_, Rotation> {
        let (shared, hash) = (&self.inner.shared, *hash);
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(async move { coordination::rotate_refresh(&***client, &hash).await })
            }),
        )
    }

    fn unrotate_refresh(&self, hash: &TokenHash) -> StoreFuture<'_, ()> {
        let (shared, hash) = (&self.inner.shared, *hash);
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(async move { coordination::unrotate_refresh(&***client, &hash).await })
            }),
        )
    }

    fn throttle_take(
        &self,
        key: &str,
        now: UnixMillis,
        policy: ThrottlePolicy,
    ) -> StoreFuture<'_, Option<UnixMillis>> {
        let (shared, key) = (&self.inner.shared, key.to_owned());
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(
                    async move { coordination::throttle_take(client, &key, now, policy).await },
                )
            }),
        )
    }

    fn throttle_settle(
        &self,
        key: &str,
        outcome: Settled,
        policy: ThrottlePolicy,
    ) -> StoreFuture<'_, ()> {
        let (shared, key) = (&self.inner.shared, key.to_owned());
        Box::pin(
            shared.read(shared.options.operation_timeout, move |client| {
                Box::pin(async move {
                    coordination::throttle_settle(&***client, &key, outcome, policy).await
                })
            }),
        )
    }

    fn live_tokens(&self) -> StoreFuture<'_, LiveCount> {
        let shared = &self.inner.shared;
        Box::pin(shared.read(shared.options.operation_timeout, |client| {
            Box::pin(async move { sql::live_tokens(&***client).await })
        }))
    }
}
