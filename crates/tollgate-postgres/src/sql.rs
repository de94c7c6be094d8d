//! The SQL of the store: one function per operation, each taking a connection or transaction,
//! so that new operations (and new `Store` methods) are one more function here.

use crate::failure::Failure;
use crate::issuance;
use futures_util::TryStreamExt;
use futures_util::future::try_join_all;
use std::future::Future;
use std::pin::Pin;
use tokio_postgres::{Client, GenericClient, IsolationLevel, Row, Statement, Transaction};
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};
use tollgate_store::{
    AccessTokenRecord, Loaded, OutboxEntry, OutboxPosition, OutboxStatus, Purge, Record,
    RefreshTokenRecord, Stamp,
};

/// The advisory lock every transaction that writes a revocation holds until it commits, so that
/// outbox numbers become visible in the order they were taken (see the crate docs).
pub const OUTBOX_LOCK: i64 = 0x746f_6c6c_6f75_7462;

/// The writes, prepared once per connection.
pub(crate) struct Statements {
    access_token: Statement,
    refresh_token: Statement,
    refresh_rotated: Statement,
    revoke: Statement,
    cut_off: Statement,
    outbox_lock: Statement,
}

impl Statements {
    pub(crate) async fn prepare(client: &Client) -> Result<Statements, Failure> {
        Ok(Statements {
            access_token: client
                .prepare(
                    "INSERT INTO access_tokens
                     (jti, grant_id, tenant, subject, client_id, issued_at, expires_at)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                         $5::text[], $6::bigint[], $7::bigint[])
                     ON CONFLICT (jti) DO UPDATE SET grant_id = excluded.grant_id,
                         tenant = excluded.tenant, subject = excluded.subject,
                         client_id = excluded.client_id, issued_at = excluded.issued_at,
                         expires_at = excluded.expires_at",
                )
                .await?,
            // A replayed issuance never clears `rotated`: that would let a used token be reused.
            refresh_token: client
                .prepare(
                    "INSERT INTO refresh_tokens (hash, grant_id, client_id, subject, tenant, scope,
                         issued_at, expires_at, rotated)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (hash)
                     DO UPDATE SET rotated = refresh_tokens.rotated OR excluded.rotated",
                )
                .await?,
            refresh_rotated: client
                .prepare("UPDATE refresh_tokens SET rotated = true WHERE hash = $1")
                .await?,
            // Both upserts keep the maximum, so that applying events is idempotent and
            // commutative here as in the revocation index. A row that is new or moved later takes
            // a new outbox number, to be published; a repeat changes nothing (the number it took
            // is skipped: gaps are harmless).
            revoke: client
                .prepare(
                    "INSERT INTO revocations (kind, id, expires_at, seq)
                     VALUES ($1, $2, $3, nextval('outbox_seq'))
                     ON CONFLICT (kind, id)
                     DO UPDATE SET expires_at = excluded.expires_at, seq = excluded.seq
                     WHERE excluded.expires_at > revocations.expires_at",
                )
                .await?,
            // `issuer` is '' for every issuer's cutoffs.
            cut_off: client
                .prepare(
                    "INSERT INTO cutoffs (issuer, scope, value, issued_before, seq)
                     VALUES ($1, $2, $3, $4, nextval('outbox_seq'))
                     ON CONFLICT (issuer, scope, value)
                     DO UPDATE SET issued_before = excluded.issued_before, seq = excluded.seq
                     WHERE excluded.issued_before > cutoffs.issued_before",
                )
                .await?,
            outbox_lock: client.prepare("SELECT pg_advisory_xact_lock($1)").await?,
        })
    }
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// Writes `records` in one transaction and commits it. The statements are pipelined: all are
/// sent before the first answer is awaited, so a batch costs a few round trips, not one per
/// record.
pub(crate) async fn write(
    client: &mut Client,
    statements: &Statements,
    records: &[&Record],
    stamps: &[&Stamp],
    durable_access_tokens: bool,
) -> Result<UnixMillis, Failure> {
    if !stamps.is_empty() {
        return write_issued(client, statements, records, stamps, durable_access_tokens).await;
    }
    let tx = client.transaction().await?;
    let written = async {
        write_in(&tx, statements, records).await?;
        Ok(UnixMillis(0))
    }
    .await;
    match written {
        Ok(at) => {
            tx.commit().await?;
            Ok(at)
        }
        Err(e) => {
            // The failure is what the caller hears of; a rollback that fails too only means the
            // connection is gone, which the failure already says or the next use finds out.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// [`write`] for a batch with issued tokens: `BEGIN`, the issuance lock and the clock go in one
/// message (one round trip; the server runs them in order), then the records the stamps make
/// from that instant, then `COMMIT`.
async fn write_issued(
    client: &mut Client,
    statements: &Statements,
    records: &[&Record],
    stamps: &[&Stamp],
    durable_access_tokens: bool,
) -> Result<UnixMillis, Failure> {
    let begun = client
        .simple_query(&issuance::BEGIN_AND_ISSUE_INSTANT)
        .await;
    let written = async {
        let at = issuance::instant_of(&begun?)?;
        let stamped: Vec<Record> = stamps.iter().flat_map(|stamp| stamp(at)).collect();
        let all: Vec<&Record> = records.iter().copied().chain(&stamped).collect();
        // Access tokens alone may skip the WAL flush (see `PostgresOptions::durable_access_tokens`);
        // anything else in the batch makes it wait. (Only before `COMMIT` matters.)
        let relaxed =
            !durable_access_tokens && all.iter().all(|r| matches!(r, Record::AccessToken(_)));
        if relaxed {
            tokio::try_join!(
                async {
                    Ok(client
                        .batch_execute("SET LOCAL synchronous_commit TO off")
                        .await?)
                },
                write_in(&*client, statements, &all),
            )?;
        } else {
            write_in(&*client, statements, &all).await?;
        }
        Ok(at)
    }
    .await;
    match written {
        Ok(at) => {
            client.batch_execute("COMMIT").await?;
            Ok(at)
        }
        Err(e) => {
            // As in `write`: the failure is what the caller hears of.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

pub(crate) async fn write_in(
    tx: &(impl GenericClient + Sync),
    statements: &Statements,
    records: &[&Record],
) -> Result<(), Failure> {
    let mut pending: Vec<Pending<'_>> = Vec::with_capacity(records.len() + 1);
    if records.iter().any(|r| matches!(r, Record::Revocation(_))) {
        pending.push(Box::pin(async move {
            tx.execute(&statements.outbox_lock, &[&OUTBOX_LOCK]).await
        }));
    }
    // Issued access tokens, the bulk of every batch, go in one statement (a row per token from
    // arrays); the other records, few and ordered (an issuance before its rotation), one each.
    let access = AccessTokenColumns::of(records);
    if !access.jti.is_empty() {
        pending.push(Box::pin(async move {
            tx.execute(
                &statements.access_token,
                &[
                    &access.jti,
                    &access.grant_id,
                    &access.tenant,
                    &access.subject,
                    &access.client_id,
                    &access.issued_at,
                    &access.expires_at,
                ],
            )
            .await
        }));
    }
    for record in records {
        pending.extend(write_one(tx, statements, record)?);
    }
    try_join_all(pending).await?;
    Ok(())
}

/// The access tokens of a batch as columns, for one `unnest` insert. A jti written twice keeps its
/// last record: one `INSERT ... ON CONFLICT` may not update a row twice.
#[derive(Default)]
struct AccessTokenColumns<'a> {
    jti: Vec<&'a str>,
    grant_id: Vec<Option<&'a str>>,
    tenant: Vec<&'a str>,
    subject: Vec<&'a str>,
    client_id: Vec<&'a str>,
    issued_at: Vec<i64>,
    expires_at: Vec<i64>,
}

impl<'a> AccessTokenColumns<'a> {
    fn of(records: &[&'a Record]) -> Self {
        let mut last = std::collections::HashMap::new();
        let tokens: Vec<&AccessTokenRecord> = records
            .iter()
            .filter_map(|r| match r {
                Record::AccessToken(t) => Some(t),
                _ => None,
            })
            .collect();
        for (i, t) in tokens.iter().enumerate() {
            last.insert(t.jti.as_str(), i);
        }
        let mut columns = AccessTokenColumns::default();
        for (i, t) in tokens.into_iter().enumerate() {
            if last.get(t.jti.as_str()) != Some(&i) {
                continue;
            }
            columns.jti.push(&t.jti);
            columns.grant_id.push(t.grant_id.as_deref());
            columns.tenant.push(&t.tenant);
            columns.subject.push(&t.subject);
            columns.client_id.push(&t.client_id);
            columns.issued_at.push(t.issued_at.0);
            columns.expires_at.push(t.expires_at.0);
        }
        columns
    }
}

fn write_one<'a>(
    tx: &'a (impl GenericClient + Sync),
    st: &'a Statements,
    record: &'a Record,
) -> Result<Option<Pending<'a>>, Failure> {
    Ok(Some(match record {
        // Written together, by `write_in`.
        Record::AccessToken(_) => return Ok(None),
        Record::RefreshToken(t) => Box::pin(async move {
            tx.execute(
                &st.refresh_token,
                &[
                    &&t.hash[..],
                    &t.grant_id,
                    &t.client_id,
                    &t.subject,
                    &t.tenant,
                    &t.scope,
                    &t.issued_at.0,
                    &t.expires_at.0,
                    &t.rotated,
                ],
            )
            .await
        }),
        Record::RefreshRotated(hash) => {
            Box::pin(async move { tx.execute(&st.refresh_rotated, &[&&hash[..]]).await })
        }
        Record::Revocation(RevocationEvent::Token { jti, expires_at }) => Box::pin(async move {
            tx.execute(&st.revoke, &[&"token", jti, &expires_at.0])
                .await
        }),
        Record::Revocation(RevocationEvent::Grant {
            grant_id,
            expires_at,
        }) => Box::pin(async move {
            tx.execute(&st.revoke, &[&"grant", grant_id, &expires_at.0])
                .await
        }),
        Record::Revocation(event) => {
            // A kind of revocation this schema has no table for: fail the commit rather than
            // acknowledge a revocation that was not stored.
            let (issuer, scope, issued_before) = event
                .as_cutoff()
                .ok_or_else(|| Failure::refused(format!("cannot store {event:?}")))?;
            // `''` is every issuer: an issuer's cutoff naming none would come back as everyone's.
            if issuer == Some("") {
                return Err(Failure::refused(
                    "cannot store an issuer's cutoff without an issuer".into(),
                ));
            }
            let issuer = issuer.unwrap_or_default();
            let (scope, value) = (scope.kind(), scope.value());
            Box::pin(async move {
                tx.execute(&st.cut_off, &[&issuer, &scope, &value, &issued_before.0])
                    .await
            })
        }
    }))
}

/// Everything live at `now`, read in one repeatable-read snapshot.
pub(crate) async fn load(
    client: &mut Client,
    now: UnixMillis,
    timeout: std::time::Duration,
) -> Result<Loaded, Failure> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // Reading every live token may take longer than an operation's limit.
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis()
    ))
    .await?;
    // Streamed, row by row: millions of live tokens are never held twice (as rows and records).
    let mut access_tokens = Vec::new();
    let rows = tx
        .query_raw(
            "SELECT jti, grant_id, tenant, subject, client_id, issued_at, expires_at
             FROM access_tokens WHERE expires_at >= $1",
            [now.0],
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.try_next().await? {
        access_tokens.push(AccessTokenRecord {
            jti: row.try_get(0)?,
            grant_id: row.try_get(1)?,
            tenant: row.try_get(2)?,
            subject: row.try_get(3)?,
            client_id: row.try_get(4)?,
            issued_at: UnixMillis(row.try_get(5)?),
            expires_at: UnixMillis(row.try_get(6)?),
        });
    }
    let mut refresh_tokens = Vec::new();
    let rows = tx
        .query_raw(
            "SELECT hash, grant_id, client_id, subject, tenant, scope, issued_at, expires_at,
                 rotated
             FROM refresh_tokens WHERE expires_at >= $1",
            [now.0],
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.try_next().await? {
        refresh_tokens.push(refresh_token(&row)?);
    }
    let mut revocations = tx
        .query("SELECT kind, id, expires_at FROM revocations", &[])
        .await?
        .iter()
        .map(|row| revocation_event(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        .collect::<Result<Vec<_>, Failure>>()?;
    for row in tx
        .query(
            "SELECT issuer, scope, value, issued_before FROM cutoffs",
            &[],
        )
        .await?
    {
        revocations.push(cutoff_event(
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        )?);
    }
    tx.commit().await?;
    Ok(Loaded {
        access_tokens,
        refresh_tokens,
        revocations,
    })
}

pub(crate) fn refresh_token(row: &Row) -> Result<RefreshTokenRecord, Failure> {
    let hash: &[u8] = row.try_get(0)?;
    let hash = hash
        .try_into()
        .map_err(|_| corrupt(format!("a refresh-token hash of {} bytes", hash.len())))?;
    Ok(RefreshTokenRecord {
        hash,
        grant_id: row.try_get(1)?,
        client_id: row.try_get(2)?,
        subject: row.try_get(3)?,
        tenant: row.try_get(4)?,
        scope: row.try_get(5)?,
        issued_at: UnixMillis(row.try_get(6)?),
        expires_at: UnixMillis(row.try_get(7)?),
        rotated: row.try_get(8)?,
    })
}

/// A row this code did not write.
fn corrupt(what: String) -> Failure {
    Failure::refused(format!("unreadable row: {what}"))
}

fn revocation_event(kind: &str, id: String, expires_at: i64) -> Result<RevocationEvent, Failure> {
    let expires_at = UnixMillis(expires_at);
    match kind {
        "token" => Ok(RevocationEvent::Token {
            jti: id,
            expires_at,
        }),
        "grant" => Ok(RevocationEvent::Grant {
            grant_id: id,
            expires_at,
        }),
        other => Err(corrupt(format!("unknown revocation kind {other:?}"))),
    }
}

/// A cutoff read back from the `cutoffs` table: of every issuer when `issuer` is `''`.
fn cutoff_event(
    issuer: &str,
    scope: &str,
    value: String,
    issued_before: i64,
) -> Result<RevocationEvent, Failure> {
    let scope = CutoffScope::from_parts(scope, value)
        .ok_or_else(|| corrupt(format!("unknown cutoff scope {scope:?}")))?;
    let issuer = (!issuer.is_empty()).then_some(issuer);
    Ok(RevocationEvent::cutoff(
        issuer,
        scope,
        UnixMillis(issued_before),
    ))
}

/// Deletes what expired, each table by its indexed instant, in one transaction; returns how many
/// rows went.
pub(crate) async fn purge(client: &mut Client, horizon: Purge) -> Result<u64, Failure> {
    let tx = client.transaction().await?;
    let mut purged = 0;
    for table in ["access_tokens", "refresh_tokens", "revocations"] {
        purged += tx
            .execute(
                &format!("DELETE FROM {table} WHERE expires_at < $1"),
                &[&horizon.expired_before.0],
            )
            .await?;
    }
    purged += tx
        .execute(
            "DELETE FROM cutoffs WHERE issued_before <= $1",
            &[&horizon.cutoffs_before.0],
        )
        .await?;
    purged += purge_throttle(&tx, horizon.expired_before).await?;
    tx.commit().await?;
    Ok(purged)
}

/// Forgets throttle rows with no attempt for an hour before `before` (far longer than any
/// policy's `forget_after` or wait).
async fn purge_throttle(tx: &Transaction<'_>, before: UnixMillis) -> Result<u64, Failure> {
    Ok(tx
        .execute(
            "DELETE FROM sign_in_throttle WHERE last_attempt < $1",
            &[&before.0.saturating_sub(3_600_000)],
        )
        .await?)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The relay's position and its backlog.
pub(crate) async fn outbox_status(client: &impl GenericClient) -> Result<OutboxStatus, Failure> {
    let row = client
        .query_one("SELECT epoch, published_through FROM outbox", &[])
        .await?;
    let (epoch, published_through): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
    let pending: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM revocations WHERE seq > $1)
                  + (SELECT count(*) FROM cutoffs WHERE seq > $1)",
            &[&published_through],
        )
        .await?
        .try_get(0)?;
    Ok(OutboxStatus {
        position: OutboxPosition {
            epoch,
            published_through: to_u64(published_through),
        },
        pending: to_u64(pending),
    })
}

/// At most `limit` revocations numbered after `after`, in number order.
pub(crate) async fn outbox_read(
    client: &impl GenericClient,
    after: u64,
    limit: usize,
) -> Result<Vec<OutboxEntry>, Failure> {
    let after = to_i64(after);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "(SELECT seq, kind, id, expires_at, NULL::text, NULL::text FROM revocations
              WHERE seq > $1 ORDER BY seq LIMIT $2)
             UNION ALL
             (SELECT seq, 'cutoff', scope, issued_before, value, issuer FROM cutoffs
              WHERE seq > $1 ORDER BY seq LIMIT $2)
             ORDER BY 1 LIMIT $2",
            &[&after, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get(0)?;
            let kind: &str = row.try_get(1)?;
            let instant: i64 = row.try_get(3)?;
            let event = match kind {
                "cutoff" => {
                    cutoff_event(row.try_get(5)?, row.try_get(2)?, row.try_get(4)?, instant)?
                }
                kind => revocation_event(kind, row.try_get(2)?, instant)?,
            };
            Ok(OutboxEntry {
                seq: to_u64(seq),
                event,
            })
        })
        .collect()
}

/// Moves the relay's position: forward within an epoch, anywhere into a new epoch.
pub(crate) async fn outbox_mark(
    client: &impl GenericClient,
    position: &OutboxPosition,
) -> Result<(), Failure> {
    client
        .execute(
            "UPDATE outbox SET epoch = $1, published_through = $2
             WHERE epoch <> $1 OR published_through < $2",
            &[&position.epoch, &to_i64(position.published_through)],
        )
        .await?;
    Ok(())
}

/// How many rows each table holds (live or not): `[access, refresh, revocations, cutoffs]`.
/// The access and refresh tokens not expired by the database's clock (an index range scan each,
/// on `expires_at`).
pub(crate) async fn live_tokens(
    client: &impl GenericClient,
) -> Result<tollgate_store::LiveCount, Failure> {
    let clock = issuance::CLOCK;
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM access_tokens WHERE expires_at > ({clock})),
                        (SELECT count(*) FROM refresh_tokens WHERE expires_at > ({clock}))"
            ),
            &[],
        )
        .await?;
    Ok(tollgate_store::LiveCount {
        access: to_u64(row.try_get::<_, i64>(0)?),
        refresh: to_u64(row.try_get::<_, i64>(1)?),
    })
}

pub(crate) async fn row_counts(client: &impl GenericClient) -> Result<[u64; 4], Failure> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM access_tokens), (SELECT count(*) FROM refresh_tokens),
                    (SELECT count(*) FROM revocations), (SELECT count(*) FROM cutoffs)",
            &[],
        )
        .await?;
    let count = |i: usize| -> Result<u64, Failure> { Ok(to_u64(row.try_get::<_, i64>(i)?)) };
    Ok([count(0)?, count(1)?, count(2)?, count(3)?])
}
