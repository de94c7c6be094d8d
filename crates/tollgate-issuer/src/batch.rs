//! `POST /api/v2/identity/token/batch-revocation`: "revoke every token created before T", with
//! optional narrowing to one tenant, subject or client; answers how many live tokens it revoked.

use crate::issuer::Shared;
use crate::response::{self, ErrorCode, Failure, ResponseBody};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{CutoffScope, RevocationEvent, TenantPath, UnixMillis};

/// How far in the future `creationBefore` may be (clock skew between caller and server).
const MAX_SKEW: Duration = Duration::from_secs(1);

/// `TokenBatchRevocationRequestModel`, plus tollgate's narrowing fields.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchRequest {
    creation_before: Option<String>,
    tenant_path: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
}

#[derive(Serialize)]
struct BatchResponse {
    count: u64,
}

fn bad(message: &'static str) -> Failure {
    Failure::invalid_request(message)
}

/// Parses ISO 8601: an RFC 3339 instant with offset, a date-time without offset (taken as UTC),
/// or a date alone (midnight UTC).
pub(crate) fn parse_instant(s: &str) -> Option<UnixMillis> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(UnixMillis(ts.as_millisecond()));
    }
    let civil = s.parse::<jiff::civil::DateTime>().ok().or_else(|| {
        s.parse::<jiff::civil::Date>()
            .ok()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    })?;
    let ts = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(UnixMillis(ts.as_millisecond()))
}

/// Handles a request that the admin Layer has already authenticated.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    body: &[u8],
) -> Result<Response<ResponseBody>, Failure> {
    let request: BatchRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BatchRequest::default()
    } else {
        serde_json::from_slice::<Option<BatchRequest>>(body)
            .map_err(|_| {
                bad("the body must be a JSON object {\"creationBefore\": ISO 8601 | null}")
            })?
            .unwrap_or_default()
    };
    let scope = match (request.tenant_path, request.subject, request.client_id) {
        (None, None, None) => CutoffScope::All,
        (Some(path), None, None) => {
            let path = TenantPath::parse(&path).map_err(|_| bad("malformed tenantPath"))?;
            CutoffScope::Tenant(path.as_str().to_owned())
        }
        (None, Some(subject), None) => CutoffScope::Subject(subject),
        (None, None, Some(client)) => CutoffScope::Client(client),
        _ => {
            return Err(bad(
                "narrow by at most one of tenantPath, subject and clientId",
            ));
        }
    };
    let asked = match request.creation_before.as_deref() {
        None => None,
        Some(s) => {
            Some(parse_instant(s).ok_or(bad("creationBefore is not an ISO 8601 date-time"))?)
        }
    };
    let _revocations = shared.revocation_gate.write().await;
    // The count walks every live token under the issuance lock: on a blocking thread, so that
    // the runtime's workers keep serving everything but issuance meanwhile.
    let counting = shared.clone();
    let counted_scope = scope.clone();
    let (count, before) = tokio::task::spawn_blocking(move || {
        let shared = counting;
        let _issuance = shared.issue_gate.blocking_write();
        let now = shared.clock.now();
        let before = match asked {
            None => now,
            Some(t) if t > now.saturating_add(MAX_SKEW) => {
                return Err(bad("creationBefore is in the future"));
            }
            // Within the skew allowance a future instant means "now": a token issued after this
            // call answers must keep working, and must not escape the count.
            Some(t) => t.min(now),
        };
        let count = shared
            .live
            .count_cut_off(&counted_scope, before, now, &shared.index);
        Ok((count, before))
    })
    .await
    .map_err(|_| Failure::internal())??;
    shared
        .revoke(RevocationEvent::Cutoff {
            scope: scope.clone(),
            issued_before: before,
        })
        .await?;
    tracing::info!(?scope, issued_before = before.0, count, "batch revocation");
    Ok(response::json(StatusCode::OK, &BatchResponse { count }))
}

/// `403` for an authenticated caller without the admin role.
pub(crate) fn forbidden() -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        ErrorCode::AccessDenied,
        "the admin role is required",
    )
}

#[cfg(test)]
mod tests {
    use super::parse_instant;
    use tollgate_core::UnixMillis;

    #[test]
    fn instants_in_every_accepted_shape() {
        assert_eq!(parse_instant("1970-01-02"), Some(UnixMillis(86_400_000)));
        assert_eq!(
            parse_instant("1970-01-01T00:00:01Z"),
            Some(UnixMillis(1_000))
        );
        assert_eq!(
            parse_instant("1970-01-01T00:00:01.5Z"),
            Some(UnixMillis(1_500))
        );
        assert_eq!(
            parse_instant("1970-01-01T02:00:00+02:00"),
            Some(UnixMillis(0))
        );
        assert_eq!(
            parse_instant("1970-01-01T00:00:02"),
            Some(UnixMillis(2_000))
        );
        assert_eq!(parse_instant("yesterday"), None);
        assert_eq!(parse_instant("2025-13-01"), None);
        assert_eq!(parse_instant(""), None);
    }
}
