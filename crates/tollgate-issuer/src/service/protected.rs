//! The endpoints behind tollgate's own [`ValidateBearerLayer`]: userinfo, and the admin batch
//! revocation; and how their Layers shape a rejection.

use super::TokenServiceFuture;
use crate::endpoints::{batch_revocation, userinfo};
use crate::issuer::Issuer;
use crate::protocol::form::BoxError;
use crate::protocol::response::{self, Failure, ResponseBody, ServerPluginError};
use http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tollgate_layer::{
    DefaultRejection, OnRejection, Rejection, RequireScope, RequireScopeLayer, ValidateBearer,
    ValidateBearerLayer, VerifiedClaims, Verifier,
};
use tower_layer::Layer;
use tower_service::Service;

/// How a Layer in front of one of the service's endpoints shapes its rejections.
pub(super) type RejectionFn = fn(&Rejection, &HeaderMap) -> Response<ResponseBody>;

/// The admin API with its Layer in front.
pub(super) type Guarded = ValidateBearer<Protected, RejectionFn>;

/// Userinfo with its Layer and the `openid` scope requirement in front.
pub(super) type GuardedUserinfo = ValidateBearer<RequireScope<Protected, RejectionFn>, RejectionFn>;

/// `/connect/userinfo` behind a Layer that accepts the service's own audiences, and requires the
/// `openid` scope (OpenID Connect Core §5.3: userinfo is an OpenID Connect resource).
pub(super) fn userinfo(issuer: Arc<Issuer>, verifier: Verifier) -> GuardedUserinfo {
    let endpoint = Protected {
        issuer,
        endpoint: ProtectedEndpoint::Userinfo,
    };
    ValidateBearerLayer::new(verifier)
        .on_rejection(userinfo_rejection as RejectionFn)
        .layer(
            RequireScopeLayer::new("openid")
                .on_rejection(userinfo_rejection as RejectionFn)
                .layer(endpoint),
        )
}

/// The batch-revocation API behind a Layer that accepts the service's own audiences.
pub(super) fn batch_revocation(issuer: Arc<Issuer>, verifier: Verifier) -> Guarded {
    ValidateBearerLayer::new(verifier)
        .on_rejection(plugin_rejection as RejectionFn)
        .layer(Protected {
            issuer,
            endpoint: ProtectedEndpoint::BatchRevocation,
        })
}

/// The userinfo Layer's RFC 6750 rejection, with `Cache-Control: no-store` like every error of the
/// service.
fn userinfo_rejection(rejection: &Rejection, headers: &HeaderMap) -> Response<ResponseBody> {
    let mut response: Response<ResponseBody> =
        DefaultRejection::default().on_rejection(rejection, headers);
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// 401 from the admin API's Layer, as a `ServerPluginError` with an RFC 6750 challenge.
///
/// Always 401, even where the Layer's own answer is 400 (another scheme, two `Authorization`
/// headers): the Identity API promises 401 for a missing or invalid credential.
fn plugin_rejection(rejection: &Rejection, _headers: &HeaderMap) -> Response<ResponseBody> {
    let code = rejection.error_code().unwrap_or("unauthorized");
    let mut response = response::json(
        StatusCode::UNAUTHORIZED,
        &ServerPluginError::new(code, rejection.description()),
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, rejection.challenge("tollgate"));
    response
}

#[derive(Debug, Clone, Copy)]
enum ProtectedEndpoint {
    Userinfo,
    BatchRevocation,
}

/// An endpoint behind tollgate's own Layer; it finds the verified claims in the extensions.
#[derive(Clone)]
pub(super) struct Protected {
    issuer: Arc<Issuer>,
    endpoint: ProtectedEndpoint,
}

impl<B> Service<Request<B>> for Protected
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = TokenServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let issuer = self.issuer.clone();
        let endpoint = self.endpoint;
        Box::pin(async move {
            let Some(claims) = request.extensions().get::<VerifiedClaims>().cloned() else {
                // The Layer in front always inserts claims; without them, fail closed.
                return Ok(Failure::internal().into_plugin_error());
            };
            Ok(match endpoint {
                ProtectedEndpoint::Userinfo => userinfo::handle(&issuer, &claims).await,
                // Detached, like the form endpoints: a cutoff on disk is always applied.
                ProtectedEndpoint::BatchRevocation => tokio::spawn(async move {
                    let (parts, body) = request.into_parts();
                    batch_revocation::handle(&issuer, &claims, &parts.headers, body).await
                })
                .await
                .unwrap_or_else(|_| Err(Failure::internal()))
                .unwrap_or_else(Failure::into_plugin_error),
            })
        })
    }
}
