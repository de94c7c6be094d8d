//! Exchanging a refresh token: rotation, reuse detection (RFC 9700 §4.14), and the undo of a
//! rotation that could not be completed.

use super::live::RotateError;
use super::{AccessSpec, Issued, Ledger, LedgerError};
use crate::digest::sha256;
use crate::store::{RefreshTokenRecord, Rotation};
use tokio::sync::RwLockReadGuard;

/// Why a refresh token cannot be exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedeemError {
    /// Unknown, expired, revoked, cut off, another client's, or already exchanged (in which case
    /// its whole grant has just been revoked).
    Invalid,
    /// The ledger could not make the change.
    Ledger(LedgerError),
}

/// A refresh token taken out of circulation, waiting for its replacement.
///
/// Holds the revocation gate, so that a batch count never sees the family half-rotated. Dropping
/// it without [`complete`](Self::complete) (the user was disabled meanwhile, the scope was refused,
/// the store failed) puts the refresh token back as it was.
#[derive(Debug)]
pub(crate) struct Redemption<'a> {
    ledger: &'a Ledger,
    record: RefreshTokenRecord,
    completed: bool,
    _gate: RwLockReadGuard<'a, ()>,
}

impl Ledger {
    /// Takes the live refresh token `token` of `client_id` out of circulation, atomically: of two
    /// concurrent exchanges of one token exactly one gets the [`Redemption`]. A token exchanged
    /// before is a replay: one of its holders is not the client, so its whole grant is revoked.
    pub(crate) async fn redeem(
        &self,
        client_id: &str,
        token: &str,
    ) -> Result<Redemption<'_>, RedeemError> {
        let gate = self.revocation_gate.read().await;
        let hash = sha256(token.as_bytes());
        let known = self
            .live_refresh(&hash)
            .await
            .map_err(RedeemError::Ledger)?
            .ok_or(RedeemError::Invalid)?;
        if known.client_id != client_id {
            return Err(RedeemError::Invalid);
        }
        let rotation = if let Some(shared) = &self.shared {
            // A compare-and-set in the store: of two replicas, exactly one wins.
            shared.rotate_refresh(&hash).await.map_err(|e| {
                tracing::error!(error = %e, "store rotation failed");
                RedeemError::Ledger(LedgerError::Unavailable)
            })?
        } else {
            match self.live.rotate(&hash) {
                Ok(record) => Rotation::Rotated(record),
                Err(RotateError::Unknown) => Rotation::Unknown,
                Err(RotateError::Reused(record)) => Rotation::Reused(*record),
            }
        };
        match rotation {
            Rotation::Rotated(record) => Ok(Redemption {
                ledger: self,
                record,
                completed: false,
                _gate: gate,
            }),
            Rotation::Unknown => Err(RedeemError::Invalid),
            Rotation::Reused(record) => {
                tracing::warn!(client_id, grant_id = %record.grant_id, "refresh token reuse; revoking its grant");
                self.record(self.grant_revocation(&record.grant_id))
                    .await
                    .map_err(RedeemError::Ledger)?;
                Err(RedeemError::Invalid)
            }
        }
    }
}

impl Redemption<'_> {
    /// The refresh token being exchanged.
    pub(crate) fn record(&self) -> &RefreshTokenRecord {
        &self.record
    }

    /// Issues the replacement: an access token described by `spec` and a new refresh token of the
    /// same grant and scope, committed durably together with the rotation.
    pub(crate) async fn complete(mut self, spec: AccessSpec<'_>) -> Result<Issued, LedgerError> {
        let issued = self
            .ledger
            .issue_family(
                spec,
                self.record.grant_id.clone(),
                self.record.scope.clone(),
                Some(self.record.hash),
            )
            .await;
        self.completed = issued.is_ok();
        issued
    }
}

impl Drop for Redemption<'_> {
    fn drop(&mut self) {
        if self.completed {
            return;
        }
        let Some(store) = self.ledger.shared.clone() else {
            self.ledger.live.unrotate(&self.record.hash);
            return;
        };
        // The shared store is undone behind the answer; if that fails too, the client signs in
        // again (the safe side: the token stays unusable).
        let hash = self.record.hash;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = store.unrotate_refresh(&hash).await {
                        tracing::warn!(error = %e, "cannot undo a refresh rotation");
                    }
                });
            }
            Err(_) => tracing::warn!("no runtime to undo a refresh rotation on"),
        }
    }
}
