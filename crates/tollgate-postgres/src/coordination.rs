//! What replicas meet on in the database (`tollgate_store::SharedStore`): batch counts under the
//! issuance lock (see [`issuance`](crate::issuance) for the lock and the clock), the
//! refresh-token compare-and-set, and the sign-in throttle.

use crate::failure::Failure;
use crate::issuance::{CLOCK, ISSUE_LOCK};
use crate::sql::{self, Statements};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Transaction};
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};
use tollgate_store::{Record, Rotation, Settled, SharedCutOff, ThrottlePolicy, TokenHash};

/// `x`'s tenant, subject or client matches `scope` (`$3` is the scope's value).
fn in_scope(scope: &CutoffScope, x: &str) -> &'static str {
    // One literal per table alias keeps the SQL static (no text from requests in it).
    match (scope, x) {
        (CutoffScope::All, _) => "TRUE",
        (CutoffScope::Tenant(path), _) if path == "/" => "TRUE",
        (CutoffScope::Tenant(_), "a") => "(a.tenant = $3 OR starts_with(a.tenant, $3 || '/'))",
        (CutoffScope::Tenant(_), _) => "(t.tenant = $3 OR starts_with(t.tenant, $3 || '/'))",
        (CutoffScope::Subject(_), "a") => "a.subject = $3",
        (CutoffScope::Subject(_), _) => "t.subject = $3",
        (CutoffScope::Client(_), "a") => "a.client_id = $3",
        (CutoffScope::Client(_), _) => "t.client_id = $3",
        // A scope this code does not know covers nothing it can tell.
        _ => "FALSE",
    }
}

/// Tenant cutoffs written into the count as conditions of their own, up to this many; more are
/// matched through arrays (slower per token, but any number).
const INLINE_TENANT_CUTOFFS: usize = 32;

/// A query parameter of the count.
type Param = Box<dyn ToSql + Sync + Send>;

/// The count's parameters, and the conditions that say a token is refused by no stored cutoff,
/// planned from the cutoffs stored (usually few): the latest `all` cutoff is one comparison,
/// subject and client cutoffs are anti-joins only when some exist, and tenant cutoffs are
/// conditions of their own. Asking the cutoffs table for every token instead cost a million
/// index probes per million tokens.
///
/// Only every issuer's cutoffs (`issuer = ''`) are considered: the store does not know which
/// `iss` its tokens carry, and another issuer's cutoffs never apply to them. A token already
/// refused by a cutoff of this token service's own issuer (`tollgate revoke --issuer`) is
/// counted again; session cutoffs refuse none of its tokens (it issues no `sid`).
struct Plan {
    params: Vec<Param>,
    has_subject: bool,
    has_client: bool,
    /// The parameter holding the latest `all` cutoff.
    all_param: usize,
    /// Per inlined tenant cutoff: its instant's parameter, and its path's (with a trailing `/`),
    /// or `None` for the root, which covers every tenant.
    tenants: Vec<(usize, Option<usize>)>,
    /// The (instants, paths) array parameters, when there are too many to inline.
    tenant_arrays: Option<(usize, usize)>,
}

impl Plan {
    async fn new(tx: &Transaction<'_>, mut params: Vec<Param>) -> Result<Plan, Failure> {
        let summary = tx
            .query_one(
                "SELECT coalesce(max(issued_before) FILTER (WHERE scope = 'all'), $1),
                        count(*) FILTER (WHERE scope = 'subject'),
                        count(*) FILTER (WHERE scope = 'client')
                 FROM cutoffs WHERE issuer = ''",
                &[&i64::MIN],
            )
            .await?;
        let all: i64 = summary.try_get(0)?;
        let (subjects, clients): (i64, i64) = (summary.try_get(1)?, summary.try_get(2)?);
        let stored: Vec<(i64, String)> = tx
            .query(
                "SELECT issued_before, value FROM cutoffs WHERE issuer = '' AND scope = 'tenant'",
                &[],
            )
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, Failure>>()?;
        params.push(Box::new(all));
        let all_param = params.len();
        let mut tenants = Vec::new();
        let mut tenant_arrays = None;
        if stored.len() <= INLINE_TENANT_CUTOFFS {
            for (before, path) in stored {
                params.push(Box::new(before));
                let before = params.len();
                let path = (path != "/").then(|| {
                    params.push(Box::new(format!("{path}/")));
                    params.len()
                });
                tenants.push((before, path));
            }
        } else {
            let (befores, paths): (Vec<i64>, Vec<String>) = stored.into_iter().unzip();
            params.push(Box::new(befores));
            params.push(Box::new(paths));
            tenant_arrays = Some((params.len() - 1, params.len()));
        }
        Ok(Plan {
            params,
            has_subject: subjects > 0,
            has_client: clients > 0,
            all_param,
            tenants,
            tenant_arrays,
        })
    }

    /// `AND ...` conditions: token `x` (alias `a` or `t`) is refused by no stored cutoff, as the
    /// revocation index judges (everyone, its subject or client, or its tenant or an ancestor,
    /// at an instant after it was issued).
    fn not_cut(&self, x: &str) -> String {
        let mut sql = format!(" AND {x}.issued_at >= ${}", self.all_param);
        if self.has_subject {
            sql += &format!(
                " AND NOT EXISTS (SELECT 1 FROM cutoffs c WHERE c.issuer = ''
                     AND c.scope = 'subject' AND c.value = {x}.subject
                     AND c.issued_before > {x}.issued_at)"
            );
        }
        if self.has_client {
            sql += &format!(
                " AND NOT EXISTS (SELECT 1 FROM cutoffs c WHERE c.issuer = ''
                     AND c.scope = 'client' AND c.value = {x}.client_id
                     AND c.issued_before > {x}.issued_at)"
            );
        }
        for (before, path) in &self.tenants {
            sql += &match path {
                None => format!(" AND {x}.issued_at >= ${before}"),
                Some(slashed) => format!(
                    " AND NOT ({x}.issued_at < ${before} AND ({x}.tenant = left(${slashed}, -1)
                         OR starts_with({x}.tenant, ${slashed})))"
                ),
            };
        }
        if let Some((befores, paths)) = self.tenant_arrays {
            sql += &format!(
                " AND NOT EXISTS (SELECT 1 FROM unnest(${befores}::bigint[], ${paths}::text[])
                     AS c(before, path) WHERE c.before > {x}.issued_at AND (c.path = '/'
                     OR {x}.tenant = c.path OR starts_with({x}.tenant, c.path || '/')))"
            );
        }
        sql
    }
}

/// The cutoff: under the exclusive issuance lock, reads the clock, counts the live tokens in
/// `scope` issued before the cut that nothing stored refuses yet, and records the cutoff (which
/// takes the outbox lock and the next outbox number), in one transaction.
pub(crate) async fn cut_off(
    client: &mut Client,
    scope: &CutoffScope,
    asked: Option<UnixMillis>,
) -> Result<SharedCutOff, Failure> {
    let statements = Statements::prepare(client).await?;
    let value = scope.value();
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ISSUE_LOCK])
        .await?;
    let now: i64 = tx.query_one(CLOCK, &[]).await?.try_get(0)?;
    let before = asked.map_or(now, |asked| asked.0.min(now));
    // The scope's value is `$3` only when the scope's condition names it.
    let names_value = !matches!(in_scope(scope, "a"), "TRUE" | "FALSE");
    let mut params: Vec<Param> = vec![Box::new(before), Box::new(now)];
    if names_value {
        params.push(Box::new(value.to_owned()));
    }
    let plan = Plan::new(&tx, params).await?;
    let count_sql = format!(
        "SELECT
           (SELECT count(*) FROM access_tokens a
             WHERE a.issued_at < $1 AND a.expires_at > $2 AND {access_scope}{access_cut}
               AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.kind = 'token' AND r.id = a.jti)
               AND NOT EXISTS (SELECT 1 FROM revocations r
                               WHERE r.kind = 'grant' AND r.id = a.grant_id))
         + (SELECT count(*) FROM refresh_tokens t
             WHERE t.issued_at < $1 AND t.expires_at > $2 AND NOT t.rotated
               AND {refresh_scope}{refresh_cut}
               AND NOT EXISTS (SELECT 1 FROM revocations r
                               WHERE r.kind = 'grant' AND r.id = t.grant_id))",
        access_scope = in_scope(scope, "a"),
        refresh_scope = in_scope(scope, "t"),
        access_cut = plan.not_cut("a"),
        refresh_cut = plan.not_cut("t"),
    );
    // A statement planned for one count is not worth JIT-compiling (that alone took 0.1 s).
    tx.batch_execute("SET LOCAL jit = off").await?;
    let params: Vec<&(dyn ToSql + Sync)> = plan
        .params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let count: i64 = tx.query_one(&count_sql, &params).await?.try_get(0)?;
    let cutoff = Record::Revocation(RevocationEvent::Cutoff {
        scope: scope.clone(),
        issued_before: UnixMillis(before),
    });
    sql::write_in(&tx, &statements, &[&cutoff]).await?;
    tx.commit().await?;
    Ok(SharedCutOff {
        count: u64::try_from(count).unwrap_or(0),
        issued_before: UnixMillis(before),
    })
}

const REFRESH_COLUMNS: &str =
    "hash, grant_id, client_id, subject, tenant, scope, issued_at, expires_at, rotated";

/// The refresh token with this hash, unless it expired by the database's clock.
pub(crate) async fn refresh_token(
    client: &impl GenericClient,
    hash: &TokenHash,
) -> Result<Option<tollgate_store::RefreshTokenRecord>, Failure> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {REFRESH_COLUMNS} FROM refresh_tokens
                 WHERE hash = $1 AND expires_at > ({CLOCK})"
            ),
            &[&&hash[..]],
        )
        .await?;
    row.as_ref().map(sql::refresh_token).transpose()
}

/// Rotates the refresh token if it is not rotated, in one statement: the row is locked, so of
/// two concurrent callers the second sees the first's rotation (read committed re-reads a row it
/// waited for) and is told it is a replay.
pub(crate) async fn rotate_refresh(
    client: &impl GenericClient,
    hash: &TokenHash,
) -> Result<Rotation, Failure> {
    let row = client
        .query_opt(
            &format!(
                "WITH target AS (
                     SELECT {REFRESH_COLUMNS} FROM refresh_tokens
                     WHERE hash = $1 AND expires_at > ({CLOCK}) FOR UPDATE),
                 won AS (
                     UPDATE refresh_tokens r SET rotated = true FROM target
                     WHERE r.hash = target.hash AND NOT target.rotated RETURNING r.hash)
                 SELECT {REFRESH_COLUMNS}, EXISTS (SELECT 1 FROM won) FROM target"
            ),
            &[&&hash[..]],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Rotation::Unknown);
    };
    let record = sql::refresh_token(&row)?;
    Ok(if row.try_get::<_, bool>(9)? {
        Rotation::Rotated(tollgate_store::RefreshTokenRecord {
            rotated: true,
            ..record
        })
    } else {
        Rotation::Reused(record)
    })
}

/// Undoes a rotation whose replacement was never issued.
pub(crate) async fn unrotate_refresh(
    client: &impl GenericClient,
    hash: &TokenHash,
) -> Result<(), Failure> {
    client
        .execute(
            "UPDATE refresh_tokens SET rotated = false WHERE hash = $1",
            &[&&hash[..]],
        )
        .await?;
    Ok(())
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Counts a sign-in attempt for `key` unless it must wait (see the issuer's `throttle_take`).
pub(crate) async fn throttle_take(
    client: &mut Client,
    key: &str,
    now: UnixMillis,
    policy: ThrottlePolicy,
) -> Result<Option<UnixMillis>, Failure> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO sign_in_throttle (key, failures, last_attempt, blocked_until)
         VALUES ($1, 0, $2, 0) ON CONFLICT (key) DO NOTHING",
        &[&key, &now.0],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT failures, last_attempt, blocked_until FROM sign_in_throttle
             WHERE key = $1 FOR UPDATE",
            &[&key],
        )
        .await?;
    let (failures, last_attempt, blocked_until): (i32, i64, i64) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if blocked_until > now.0 {
        tx.commit().await?;
        return Ok(Some(UnixMillis(blocked_until)));
    }
    let quiet = now.0.saturating_sub(millis(policy.forget_after)) > last_attempt;
    let failures = if quiet { 0 } else { failures.max(0) }.saturating_add(1);
    let delay = policy.delay_after(u32::try_from(failures).unwrap_or(u32::MAX));
    let blocked_until = if delay.is_zero() {
        0
    } else {
        now.0.saturating_add(millis(delay))
    };
    tx.execute(
        "UPDATE sign_in_throttle SET failures = $2, last_attempt = $3, blocked_until = $4
         WHERE key = $1",
        &[&key, &failures, &now.0, &blocked_until],
    )
    .await?;
    tx.commit().await?;
    Ok(None)
}

/// Settles an attempt [`throttle_take`] counted: a success forgets the key, a failure stays
/// counted, an undecided attempt is given back (with the wait it caused, if it no longer reaches
/// the free failures).
pub(crate) async fn throttle_settle(
    client: &impl GenericClient,
    key: &str,
    outcome: Settled,
    policy: ThrottlePolicy,
) -> Result<(), Failure> {
    match outcome {
        Settled::Succeeded => {
            client
                .execute("DELETE FROM sign_in_throttle WHERE key = $1", &[&key])
                .await?;
        }
        Settled::Failed => {}
        Settled::Undecided => {
            let free = i32::try_from(policy.free_failures).unwrap_or(i32::MAX);
            client
                .execute(
                    "UPDATE sign_in_throttle SET failures = greatest(failures - 1, 0),
                         blocked_until = CASE WHEN failures - 1 < $2 THEN 0 ELSE blocked_until END
                     WHERE key = $1",
                    &[&key, &free],
                )
                .await?;
        }
    }
    Ok(())
}
