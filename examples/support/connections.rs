//! A hyper accept loop that bounds what a connection may cost: at most `max_connections` served
//! at once (further ones wait in the kernel's backlog), and each must send a complete request head
//! (or the HTTP/2 preface) within `header_read_timeout` of being accepted.
//!
//! hyper's `http1::Builder::header_read_timeout` starts its timer only once hyper-util's
//! protocol detection has read the first bytes, and that detection has no timer: a connection
//! that sends nothing, or part of the HTTP/2 preface, would otherwise stay open for ever. Shared
//! by `examples/hyper_gateway.rs` and `tests/gateway_connections.rs`; `tollgate serve` does the
//! same.
#![allow(dead_code)]

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What a connection may cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From accepting a connection to its first complete request head; hyper applies it again
    /// between requests on a kept-alive connection.
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once.
    pub(crate) max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// The bytes every HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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

/// Waits, until `deadline`, for a byte that departs from the HTTP/2 preface or for the whole
/// preface; `false` when the peer closed, failed or ran out of time.
async fn first_bytes(stream: &TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return false,
        };
        if n == 0 {
            return false;
        }
        if n == buf.len() || buf[..n] != H2_PREFACE[..n] {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
