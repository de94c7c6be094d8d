//! What one connection may cost before it has sent a request: the limits every tollgate listener
//! applies, and the wait for the first bytes that hyper does not time.
//!
//! hyper's `http1::Builder::header_read_timeout` starts its timer only once hyper-util's protocol
//! detection (`auto::Builder`) has read the first bytes, and that detection has no timer: a
//! connection that sends nothing, or part of the HTTP/2 preface, would otherwise stay open for
//! ever. [`first_bytes`] is that missing timer.

use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What a connection may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From accepting a connection to its complete first request head (and from the end of a
    /// response to the next complete head).
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 10 s to send a request head, 512 connections.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// The bytes every HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits, until `deadline`, for the peer to send enough to tell HTTP/1 from HTTP/2: a byte that
/// departs from the HTTP/2 preface, or the whole preface. Nothing is consumed (it peeks).
///
/// `false` when the peer closed, failed, or ran out of time: close the connection.
pub async fn first_bytes(stream: &TcpStream, deadline: Instant) -> bool {
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
        // Part of the preface: `peek` would return at once again, so wait a little for the rest.
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
