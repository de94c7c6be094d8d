//! The accept loop every tollgate listener uses (`serve_connections`) over real sockets:
//! connections that send no complete request head (or HTTP/2 preface) in time are closed, and
//! connections beyond the bound wait until a slot frees, and a client that stops reading is
//! closed after the send timeout, its slot freed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_program::connection::{Limits, serve_connections};

async fn start(limits: Limits) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    tokio::spawn(async move {
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        serve_connections(listener, builder, limits, stopped, &graceful, |_peer| {
            hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                // `/big`: more than the loopback's socket buffers hold, for clients that do not
                // read.
                if request.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                let body = if request.uri().path() == "/big" {
                    Chunks(64 << 20).boxed()
                } else {
                    Full::new(Bytes::from_static(b"ok")).boxed()
                };
                Ok::<_, Infallible>(http::Response::new(body))
            })
        })
        .await;
    });
    addr
}

/// `n` bytes in 16 KiB frames, each ready when asked for: a response streamed as an upstream's
/// is, for clients that do not read.
struct Chunks(usize);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let n = self.0.min(16 << 10);
        self.0 -= n;
        std::task::Poll::Ready(
            (n > 0).then(|| Ok(http_body::Frame::data(Bytes::from(vec![b'x'; n])))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.0 == 0
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n";

/// Whether the server closed the connection within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends a request; whether a `200` came back within `limit`.
async fn served(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.write_all(GET).await.unwrap();
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 200")
    )
}

#[tokio::test]
async fn silent_and_partial_connections_are_closed_at_the_deadline() {
    let addr = start(Limits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 16,
        ..Limits::default()
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut preface = TcpStream::connect(addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    for (name, stream) in [
        ("silent", &mut silent),
        ("partial head", &mut partial),
        ("partial HTTP/2 preface", &mut preface),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(4)).await,
            "{name} connection still open"
        );
    }
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    assert!(served(&mut fresh, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn connections_beyond_the_bound_wait_for_a_slot() {
    let addr = start(Limits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(served(&mut first, Duration::from_secs(5)).await);
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(
        !served(&mut second, Duration::from_millis(1000)).await,
        "a connection beyond the bound was served"
    );
    drop(first);
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("served once the slot freed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
    let addr = start(Limits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 1,
        send_timeout: Duration::from_secs(1),
    })
    .await;
    // Asks for 64 MiB and reads none of it: the server's writes block once the socket buffers
    // are full.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    // The only slot is taken until the send timeout closes the stalled connection.
    let mut next = TcpStream::connect(addr).await.unwrap();
    assert!(
        served(&mut next, Duration::from_secs(10)).await,
        "a client that reads nothing kept its slot past the send timeout"
    );
    // The stalled connection was closed: what it can still read ends well short of 64 MiB.
    let mut read = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => read += n,
            Err(_) => panic!("the stalled connection is still open"),
        }
    }
    assert!(
        read < 64 << 20,
        "read {read} bytes: the whole response was sent"
    );
}

/// An HTTP/2 connection to the test server over `stream`, driven in the background; the
/// returned handle finishes when the server closes the connection.
async fn h2_client(
    stream: TcpStream,
    window: u32,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(window)
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_header_read_timeout() {
    let addr = start(Limits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 16,
        ..Limits::default()
    })
    .await;
    let (mut sender, driver) = h2_client(TcpStream::connect(addr).await.unwrap(), 65_535).await;
    let response = sender
        .send_request(
            http::Request::get(format!("http://{addr}/"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The client stays, answering pings, and starts nothing: the server lets it go.
    tokio::time::timeout(Duration::from_secs(6), driver)
        .await
        .expect("an idle HTTP/2 connection is still open")
        .unwrap();
}

/// The outsider's attack: a client that sends one HTTP/2 request, then nothing at all (it never
/// acknowledges the server's PING after GOAWAY), held its connection about 40 s with a 5 s
/// header read timeout, enough to fill `max_connections` at one request per 40 s.
#[tokio::test]
async fn an_http2_client_that_never_answers_is_closed_soon_after_the_header_read_timeout() {
    let addr = start(Limits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 16,
        ..Limits::default()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The preface, an empty SETTINGS frame, and HEADERS (END_STREAM | END_HEADERS) on stream 1
    // with HPACK's static-table entries for `:method GET`, `:scheme http` and `:path /`.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0, 3, 0x1, 0x5, 0, 0, 0, 1, 0x82, 0x86, 0x84]);
    stream.write_all(&hello).await.unwrap();
    let started = std::time::Instant::now();
    // Read whatever the server sends (its SETTINGS, the response, GOAWAY, PING) and answer
    // nothing, until it closes.
    assert!(
        closed_within(&mut stream, Duration::from_secs(6)).await,
        "a silent HTTP/2 client still holds its connection"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_http2_client_that_grants_no_window_is_closed_after_the_send_timeout() {
    let addr = start(Limits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 16,
        send_timeout: Duration::from_secs(1),
    })
    .await;
    let (mut sender, driver) = h2_client(TcpStream::connect(addr).await.unwrap(), 0).await;
    let mut requests = Vec::new();
    for _ in 0..4 {
        let request = http::Request::get(format!("http://{addr}/big"))
            .body(Default::default())
            .unwrap();
        requests.push(sender.send_request(request));
    }
    // Four responses the client grants no room for: none of them moves.
    tokio::time::timeout(Duration::from_secs(8), driver)
        .await
        .expect("a connection that took no response data is still open")
        .unwrap();
    drop(requests);
}

#[tokio::test]
async fn a_first_request_slower_than_the_header_read_timeout_is_answered() {
    let addr = start(Limits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 16,
        ..Limits::default()
    })
    .await;
    // HTTP/1.1: the head came in time; the answer takes longer than the deadline.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // HTTP/2 likewise.
    let (mut sender, _driver) = h2_client(TcpStream::connect(addr).await.unwrap(), 65_535).await;
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        sender.send_request(
            http::Request::get(format!("http://{addr}/slow"))
                .body(Default::default())
                .unwrap(),
        ),
    )
    .await
    .expect("an answer")
    .expect("the connection stays open for its first request");
    assert_eq!(response.status(), 200);
}

/// The re-attack: one stream read steadily kept the connection's other streams, which the client
/// never read, alive for ever. The send timeout is per response.
#[tokio::test]
async fn reading_one_http2_stream_does_not_keep_unread_ones_alive() {
    let addr = start(Limits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 16,
        send_timeout: Duration::from_secs(1),
    })
    .await;
    let (mut sender, driver) = h2_client(TcpStream::connect(addr).await.unwrap(), 65_535).await;
    let big = || {
        http::Request::get(format!("http://{addr}/big"))
            .body(Default::default())
            .unwrap()
    };
    let read = sender.send_request(big()).await.unwrap();
    let mut unread = Vec::new();
    for _ in 0..3 {
        unread.push(sender.send_request(big()).await.unwrap());
    }
    // Stream 1 is read steadily, a little at a time; the others never.
    let reader = tokio::spawn(async move {
        let mut body = read.into_body();
        while let Some(Ok(_)) = body.frame().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(8), driver)
        .await
        .expect("unread streams kept their connection open")
        .unwrap();
    reader.abort();
    drop(unread);
}
