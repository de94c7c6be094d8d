//! The issuance lock and the database's clock: what issued tokens and cutoffs are ordered by
//! across replicas (used by the writer, `sql::write`, and by `coordination::cut_off`).
//!
//! Every writer transaction that records issued tokens takes [`ISSUE_LOCK`] in shared mode
//! (`pg_advisory_xact_lock_shared`) and only then reads `clock_timestamp()`: that is the tokens'
//! issue instant, and they are answered only after the transaction commits. A cutoff's
//! transaction takes the same lock exclusively, then reads the clock for its instant `T`, counts,
//! and records the cutoff. So a token either committed before the cutoff took the lock (it is
//! visible to the count, and its instant is at most `T`) or took the lock after the cutoff
//! committed (its instant is at least `T`): counted exactly when refused. One clock, the
//! database server's, decides both sides; the replicas' clocks take no part.
//!
//! Lock order is always the issuance lock, then [`OUTBOX_LOCK`](crate::OUTBOX_LOCK) (which every
//! transaction writing a revocation takes): a batch holding both, and a cutoff holding both, wait
//! for each other but never deadlock.

use crate::failure::Failure;
use tollgate_core::UnixMillis;

/// The advisory lock issuance holds shared and a cutoff's count holds exclusively (`'tollissu'`
/// in ASCII, so that it is recognisable in `pg_locks`).
pub const ISSUE_LOCK: i64 = 0x746f_6c6c_6973_7375;

/// The database server's clock, in Unix milliseconds.
pub(crate) const CLOCK: &str = "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// `BEGIN`, then the issuance lock (shared) and the clock, as one simple-query message: the
/// server runs its statements in order, so the clock is read with the lock held, in the
/// transaction that records the tokens. Within the `SELECT`, a `CASE` evaluates its condition
/// (which needs the lock taken) before its result (which reads the clock), and the volatile call
/// keeps the subquery from being flattened. (Two statements sent together by the extended
/// protocol, an earlier version, could run the clock first: the shared-store contract's
/// exact-count check caught it.)
pub(crate) static BEGIN_AND_ISSUE_INSTANT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "BEGIN; SELECT CASE WHEN lock IS NULL THEN NULL
                 ELSE floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint END
             FROM (SELECT pg_advisory_xact_lock_shared({ISSUE_LOCK})::text AS lock) AS locked"
        )
    });

/// The instant [`BEGIN_AND_ISSUE_INSTANT`] answered.
pub(crate) fn instant_of(
    messages: &[tokio_postgres::SimpleQueryMessage],
) -> Result<UnixMillis, Failure> {
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .and_then(|text| text.parse().ok())
        .map(UnixMillis)
        .ok_or_else(|| Failure::refused("the database answered no issue instant".into()))
}
