//! [`CountResponsesLayer`] → [`CountResponses`] → [`ResponseFuture`]: counts the token service's
//! responses by endpoint and status, the tokens it issued by grant, and its batch revocations.

use super::{GrantLabels, ResponseLabels, ResponseMetrics};
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tollgate_issuer::TokenService;
use tollgate_issuer::outcome::{BatchRevoked, TokenIssued};
use tower_layer::Layer;
use tower_service::Service;

/// The `endpoint` label of a path that no endpoint serves.
const UNMATCHED: &str = "unmatched";

/// Wraps a service in [`CountResponses`].
#[derive(Debug, Clone)]
pub(crate) struct CountResponsesLayer {
    metrics: ResponseMetrics,
}

impl CountResponsesLayer {
    pub(crate) fn new(metrics: ResponseMetrics) -> Self {
        CountResponsesLayer { metrics }
    }
}

impl<S> Layer<S> for CountResponsesLayer {
    type Service = CountResponses<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountResponses {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The token service (or any service in front of the same routes), its responses counted.
///
/// The endpoint is the routing table's path for the request's path
/// ([`TokenService::route`]), so that a scanner trying a thousand paths adds one label value,
/// `unmatched`, not a thousand. What a response did is read from its extensions
/// ([`tollgate_issuer::outcome`]), never from its body.
#[derive(Debug, Clone)]
pub(crate) struct CountResponses<S> {
    inner: S,
    metrics: ResponseMetrics,
}

impl<S, B, ResBody> Service<Request<B>> for CountResponses<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let endpoint = TokenService::route(request.uri().path()).unwrap_or(UNMATCHED);
        ResponseFuture {
            inner: self.inner.call(request),
            endpoint,
            metrics: Some(self.metrics.clone()),
        }
    }
}

pin_project! {
    /// The future of [`CountResponses`]: the inner future, counted when it resolves to a
    /// response. A request whose client went away before its answer counts nothing.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        endpoint: &'static str,
        // Taken when the response is counted: a future polled again after it resolved counts
        // nothing twice.
        metrics: Option<ResponseMetrics>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.inner.poll(cx));
        if let (Ok(response), Some(metrics)) = (&outcome, this.metrics.take()) {
            count(&metrics, this.endpoint, response);
        }
        Poll::Ready(outcome)
    }
}

fn count<B>(metrics: &ResponseMetrics, endpoint: &'static str, response: &Response<B>) {
    let status = response.status().as_u16();
    metrics
        .responses
        .get_or_create(&ResponseLabels { endpoint, status })
        .inc();
    let extensions = response.extensions();
    if let Some(issued) = extensions.get::<TokenIssued>() {
        metrics
            .issued
            .get_or_create(&GrantLabels {
                grant_type: issued.grant.as_str(),
            })
            .inc();
    }
    if let Some(batch) = extensions.get::<BatchRevoked>() {
        metrics.batch_revocations.inc();
        metrics.batch_revoked_tokens.inc_by(batch.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tollgate_issuer::GrantType;
    use tower::ServiceExt;

    #[tokio::test]
    async fn counts_by_route_status_and_outcome() {
        let metrics = ResponseMetrics::default();
        let service = CountResponsesLayer::new(metrics.clone()).layer(tower::service_fn(
            |request: Request<()>| async move {
                let mut response = Response::new(());
                match request.uri().path() {
                    "/connect/token" => {
                        response
                            .extensions_mut()
                            .insert(TokenIssued::new(GrantType::ClientCredentials));
                    }
                    _ => *response.status_mut() = http::StatusCode::NOT_FOUND,
                }
                Ok::<_, Infallible>(response)
            },
        ));
        for path in ["/connect/token", "/connect/token", "/nope", "/nope/again"] {
            let request = Request::get(path).body(()).unwrap();
            service.clone().oneshot(request).await.unwrap();
        }
        let responses = |endpoint, status| {
            metrics
                .responses
                .get_or_create(&ResponseLabels { endpoint, status })
                .get()
        };
        assert_eq!(responses("/connect/token", 200), 2);
        assert_eq!(responses(UNMATCHED, 404), 2);
        let per_path = ResponseLabels {
            endpoint: "/nope",
            status: 404,
        };
        assert!(
            metrics.responses.get(&per_path).is_none(),
            "no label value per unknown path"
        );
        let issued = metrics.issued.get_or_create(&GrantLabels {
            grant_type: "client_credentials",
        });
        assert_eq!(issued.get(), 2);
    }
}
