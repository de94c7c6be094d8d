//! `POST /api/v2/identity/token/batch-revocation`: "revoke every token created before T", with
//! optional narrowing to one tenant, subject or client; answers how many live tokens it revoked.

use crate::issuer::Issuer;
use crate::ledger::CutOffError;
use crate::protocol::form::{BoxError, read_body};
use crate::protocol::response::{self, ErrorCode, Failure, ResponseBody};
use http::{Response, StatusCode};
use http_body::Body;
use serde::{Deserialize, Serialize};
use tollgate_core::{Claims, CutoffScope, TenantPath, UnixMillis};

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

/// Handles a request whose bearer token the admin Layer has already verified: the admin role,
/// then the body.
pub(crate) async fn handle<B>(
    issuer: &Issuer,
    claims: &Claims,
    body: B,
) -> Result<Response<ResponseBody>, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if !claims.has_role(&issuer.admin_role) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AccessDenied,
            "the admin role is required",
        ));
    }
    let body = read_body(body).await?;
    let request: BatchRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BatchRequest::default()
    } else {
        serde_json::from_slice::<Option<BatchRequest>>(&body)
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
    let cut = issuer
        .ledger
        .cut_off(scope.clone(), asked)
        .await
        .map_err(|e| match e {
            CutOffError::InTheFuture => bad("creationBefore is in the future"),
            CutOffError::Ledger(e) => e.into(),
        })?;
    tracing::info!(
        ?scope,
        issued_before = cut.issued_before.0,
        count = cut.count,
        "batch revocation"
    );
    Ok(response::json(
        StatusCode::OK,
        &BatchResponse { count: cut.count },
    ))
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
