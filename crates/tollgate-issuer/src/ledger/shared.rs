//! The ledger's verbs when the store is shared with other replicas: the store chooses issue
//! instants and counts cutoffs (see [`crate::store::shared`] for the argument).

use super::{
    AccessSpec, CutOff, CutOffError, Issued, Ledger, LedgerError, MAX_SKEW, access_record,
};
use crate::digest::sha256;
use crate::store::{Record, RefreshTokenRecord, SharedStore, Stamp, TokenHash};
use std::time::Duration;
use tollgate_core::{Claims, CutoffScope, RevocationEvent, UnixMillis, random};

/// A refresh-token family to start or continue: its grant, its scope, and the refresh token it
/// replaces, if any.
pub(super) type Family = (String, String, Option<TokenHash>);

impl Ledger {
    /// Issues an access token (and a refresh token of `family`) whose issue instant the shared
    /// store chooses inside the transaction that records them. Nothing is handed out before that
    /// commit, so a batch count at any replica either sees the tokens or precedes their instant.
    pub(super) async fn issue_shared(
        &self,
        store: &dyn SharedStore,
        spec: &AccessSpec<'_>,
        family: Option<Family>,
    ) -> Result<Issued, LedgerError> {
        let grant_id = family.as_ref().map(|(grant, _, _)| grant.as_str());
        // The instant is a placeholder until the store stamps it; the jti is final.
        let template = self.claims_for(spec, grant_id, UnixMillis(0));
        let access_lifetime = spec.lifetime;
        let refresh_lifetime = self.lifetimes.refresh;
        let refresh_token = family.as_ref().map(|_| random::secret());
        let refresh = family.zip(refresh_token.as_ref()).map(|(family, secret)| {
            let (grant_id, scope, replaces) = family;
            let record = RefreshTokenRecord {
                hash: sha256(secret.as_bytes()),
                grant_id,
                client_id: spec.client_id.to_owned(),
                subject: spec.subject.to_owned(),
                tenant: spec.tenant.as_str().to_owned(),
                scope,
                issued_at: UnixMillis(0),
                expires_at: UnixMillis(0),
                rotated: false,
            };
            (record, replaces)
        });
        let claims = template.clone();
        let stamp: Stamp = Box::new(move |at| {
            let mut records = vec![Record::AccessToken(access_record(&stamped(
                claims.clone(),
                at,
                access_lifetime,
            )))];
            if let Some((refresh, replaces)) = &refresh {
                records.push(Record::RefreshToken(RefreshTokenRecord {
                    issued_at: at,
                    expires_at: at.saturating_add(refresh_lifetime),
                    ..refresh.clone()
                }));
                records.extend(replaces.map(Record::RefreshRotated));
            }
            records
        });
        let at = store.commit_issued(stamp).await.map_err(|e| {
            tracing::error!(error = %e, "store commit failed");
            LedgerError::Unavailable
        })?;
        // A signing failure here leaves a recorded token nobody holds, which a later batch
        // count would include; with a loaded key it does not happen (signing is infallible
        // short of a bug), and it is logged.
        let access_token = self.sign(&stamped(template, at, access_lifetime))?;
        Ok(Issued {
            access_token,
            refresh_token,
        })
    }

    /// Cuts off `scope` in the shared store, which counts and records in one transaction; then
    /// enforces the cutoff here at once (other replicas and Layers get it through the feed).
    pub(super) async fn cut_off_shared(
        &self,
        store: &dyn SharedStore,
        scope: CutoffScope,
        asked: Option<UnixMillis>,
    ) -> Result<CutOff, CutOffError> {
        if asked.is_some_and(|t| t > self.clock.now().saturating_add(MAX_SKEW)) {
            return Err(CutOffError::InTheFuture);
        }
        let cut = store.cut_off(&scope, asked).await.map_err(|e| {
            tracing::error!(error = %e, "shared cutoff failed");
            CutOffError::Ledger(LedgerError::Unavailable)
        })?;
        self.enforce(&RevocationEvent::Cutoff {
            scope,
            issued_before: cut.issued_before,
        });
        Ok(CutOff {
            count: cut.count,
            issued_before: cut.issued_before,
        })
    }
}

/// `claims` as issued at `at` for `lifetime` (what [`Claims::new`] sets from the instant).
fn stamped(mut claims: Claims, at: UnixMillis, lifetime: Duration) -> Claims {
    claims.iat = at.as_secs();
    claims.issued_at_ms = Some(at.0);
    claims.exp = at.saturating_add(lifetime).as_secs();
    claims
}
