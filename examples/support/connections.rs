//! A hyper accept loop that bounds what a connection may cost: at most `max_connections` served
//! at once (further ones wait in the kernel's backlog), and each must send a complete request head
//! (or the HTTP/2 preface) within `header_read_timeout` of being accepted.
//!
//! The limits and the timed wait for the first bytes are `tollgate_server::connection`'s, the
//! ones `tollgate serve` applies. Shared by `examples/hyper_gateway.rs` and
//! `tests/gateway_connections.rs`.
#![allow(dead_code)]

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tollgate_server::connection::first_bytes;

pub(crate) use tollgate_server::connection::Limits;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on `listener` for ever.
pub(crate) async fn serve<S, B>(listener: TcpListener, service: S, limits: Limits)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let deadline = Instant::now() + limits.header_read_timeout;
        let mut builder = builder.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if !first_bytes(&stream, deadline).await {
                return;
            }
            builder.http1().header_read_timeout(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}
