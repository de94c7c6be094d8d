//! The metrics listener: `GET /metrics` and nothing else, on the address of
//! `[metrics] listen`, apart from the token service's listener so that a firewall rule or a
//! loopback address keeps it private.

use super::Metrics;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_issuer::ResponseBody;
use tollgate_program::connection::{Limits, serve_connections};

/// The content type of the OpenMetrics text format, which Prometheus negotiates natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Scrapers served at once: Prometheus uses one connection; a few more leave room for a
/// person with curl, and nothing more is needed from a private endpoint.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `metrics` on `listener` until the task running it is aborted, through the accept loop
/// every tollgate listener shares (connection bound, header timeout).
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let limits = Limits {
        header_read_timeout: HEADER_READ_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
        ..Limits::default()
    };
    // Never told to stop: the task is aborted with the server, and scrapes need no draining.
    let (_running, stop) = watch::channel(false);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    serve_connections(listener, builder, limits, stop, &graceful, |_| {
        let metrics = metrics.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            std::future::ready(Ok::<_, Infallible>(answer(&metrics, &request)))
        })
    })
    .await;
}

/// `/metrics` for `GET` and `HEAD`; `405` for another method there, `404` anywhere else.
fn answer<B>(metrics: &Metrics, request: &Request<B>) -> Response<ResponseBody> {
    let mut response = if request.uri().path() != "/metrics" {
        plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        )
    } else if request.method() == Method::GET || request.method() == Method::HEAD {
        let mut response = Response::new(ResponseBody::from(metrics.encode()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
        response
    } else {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        response
    };
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_metrics_are_answered() {
        let metrics = Metrics::new();
        let call = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap();
            answer(&metrics, &request)
        };
        let ok = call(Method::GET, "/metrics");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], OPENMETRICS);
        assert_eq!(call(Method::HEAD, "/metrics").status(), StatusCode::OK);
        let post = call(Method::POST, "/metrics");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");
        assert_eq!(call(Method::GET, "/").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            call(Method::GET, "/metrics/x").status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_text_ends_with_eof() {
        let text = Metrics::new().encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE tollgate_store_commit_duration_seconds histogram"),
            "{text}"
        );
    }
}
