//! `POST /api/v2/identity/token/batch-revocation`: "revoke every token created before T", with
//! optional narrowing to one tenant, subject or client; answers how many live tokens it revoked.

use crate::issuer::Issuer;
use crate::ledger::CutOffError;
use crate::outcome::BatchRevoked;
use crate::protocol::MAX_IDENTIFIER_LEN;
use crate::protocol::form::{BoxError, has_content_type, read_body};
use crate::protocol::response::{self, ErrorCode, Failure, ResponseBody};
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use serde::{Deserialize, Serialize};
use tollgate_core::{Claims, CutoffScope, TenantPath, UnixMillis};

/// `TokenBatchRevocationRequestModel`, plus tollgate's narrowing fields.
///
/// A narrowing field is a non-empty string or absent, never `null`: `{"clientId": null}` from a
/// caller whose variable was unset must not widen the cut to every client.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchRequest {
    creation_before: Option<String>,
    #[serde(default, deserialize_with = "narrowing")]
    tenant_path: Option<String>,
    #[serde(default, deserialize_with = "narrowing")]
    subject: Option<String>,
    #[serde(default, deserialize_with = "narrowing")]
    client_id: Option<String>,
}

/// A present narrowing field: a non-empty string (`null` and `""` are refused).
fn narrowing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(d)?;
    if value.is_empty() {
        return Err(serde::de::Error::invalid_length(0, &"a non-empty string"));
    }
    Ok(Some(value))
}

#[derive(Serialize)]
struct BatchResponse {
    count: u64,
}

fn bad(message: &'static str) -> Failure {
    Failure::invalid_request(message)
}

/// Whether an admin of `admin_tenant` may cut off `scope`: an admin of the root tenant anything;
/// any other admin only its own tenant and the tenants below it, never a scope that crosses
/// tenants (everyone, a subject, a client).
fn within_reach(admin_tenant: &str, scope: &CutoffScope) -> bool {
    if admin_tenant == TenantPath::root().as_str() {
        return true;
    }
    match scope {
        CutoffScope::Tenant(path) => TenantPath::parse(admin_tenant).is_ok_and(|t| t.covers(path)),
        _ => false,
    }
}

/// `value` if it is not longer than an identifier may be: a cutoff is kept as long as it binds.
fn bounded(value: String, too_long: &'static str) -> Result<String, Failure> {
    if value.len() > MAX_IDENTIFIER_LEN {
        return Err(bad(too_long));
    }
    Ok(value)
}

fn in_the_future() -> Failure {
    bad("creationBefore is in the future")
}

/// Whether `s` starts with a year of 9999 or later (ISO 8601 expanded years included:
/// `+010000-01-01`): at or beyond the end of the range instants are parsed for, and certainly in
/// the future, which is the truer answer when `s` does not parse.
fn far_future_year(s: &str) -> bool {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    let year = s.split('-').next().unwrap_or("");
    year.len() >= 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && year.parse::<u64>().map_or(true, |y| y >= 9999)
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
    headers: &HeaderMap,
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
    // The most destructive call of the API is never the answer to a missing or mistyped body.
    if !has_content_type(headers, "application/json") {
        return Err(bad(
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let body = read_body(body).await?;
    let request: BatchRequest = serde_json::from_slice(&body)
        .map_err(|_| bad("the body must be a JSON object {\"creationBefore\": ISO 8601 | null}"))?;
    let scope = match (request.tenant_path, request.subject, request.client_id) {
        (None, None, None) => CutoffScope::All,
        (Some(path), None, None) => {
            let path = TenantPath::parse(&path).map_err(|_| bad("malformed tenantPath"))?;
            CutoffScope::Tenant(path.as_str().to_owned())
        }
        (None, Some(subject), None) => {
            CutoffScope::Subject(bounded(subject, "subject is too long")?)
        }
        (None, None, Some(client)) => CutoffScope::Client(bounded(client, "clientId is too long")?),
        _ => {
            return Err(bad(
                "narrow by at most one of tenantPath, subject and clientId",
            ));
        }
    };
    if !within_reach(claims.tenant(), &scope) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AccessDenied,
            "outside the admin's tenant: an admin below the root tenant may only cut off its own tenant or a tenant below it",
        ));
    }
    let asked = match request.creation_before.as_deref() {
        None => None,
        Some(s) => match parse_instant(s) {
            Some(instant) => Some(instant),
            None if far_future_year(s) => return Err(in_the_future()),
            None => return Err(bad("creationBefore is not an ISO 8601 date-time")),
        },
    };
    let cut = issuer
        .ledger
        .cut_off(scope.clone(), asked)
        .await
        .map_err(|e| match e {
            CutOffError::InTheFuture => in_the_future(),
            CutOffError::Ledger(e) => e.into(),
        })?;
    tracing::info!(
        ?scope,
        issued_before = cut.issued_before.0,
        count = cut.count,
        "batch revocation"
    );
    let mut response = response::json(StatusCode::OK, &BatchResponse { count: cut.count });
    response
        .extensions_mut()
        .insert(BatchRevoked::new(cut.count));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::{parse_instant, within_reach};
    use tollgate_core::{CutoffScope, UnixMillis};

    #[test]
    fn an_admin_reaches_its_own_tenant_and_below_only() {
        let tenant = |p: &str| CutoffScope::Tenant(p.into());
        for scope in [
            CutoffScope::All,
            tenant("/Globex"),
            CutoffScope::Subject("s".into()),
            CutoffScope::Client("c".into()),
        ] {
            assert!(within_reach("/", &scope));
            assert!(!within_reach("/Acme", &scope), "{scope:?}");
        }
        assert!(within_reach("/Acme", &tenant("/Acme")));
        assert!(within_reach("/Acme", &tenant("/Acme/Sales")));
        assert!(!within_reach("/Acme", &tenant("/")));
        assert!(!within_reach("/Acme", &tenant("/AcmeCorp")));
    }

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

    #[test]
    fn years_from_9999_on_are_recognised_as_the_future() {
        use super::far_future_year;
        assert!(far_future_year("10000-01-01T00:00:00Z"));
        assert!(far_future_year("+010000-01-01"));
        assert!(far_future_year("9999-12-31T23:59:59Z"));
        assert!(!far_future_year("9998-12-31"));
        assert!(!far_future_year("2025-10-01"));
        assert!(!far_future_year("garbage"));
        assert!(!far_future_year("-10000-01-01"));
    }
}
