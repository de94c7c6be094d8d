//! What a connection may cost `tollgate serve`, over real sockets against the real binary:
//! connections that do not send a complete request head in time are closed (whether they sent
//! nothing, part of a head, or part of the HTTP/2 preface), and connections beyond
//! `max_connections` wait until a slot frees.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

fn server(limits: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path()).replace("data_dir =", "store = \"memory\"\ndata_dir =");
    config.push_str(limits);
    let server = Server::start(dir.path(), &config);
    (dir, server)
}

fn connect(server: &Server) -> TcpStream {
    let address = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads until the server closes the connection; how long that took, or `None` if it was still
/// open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            // Reset by the server: closed too.
            Err(_) => return Some(start.elapsed()),
        }
    }
}

const GET_DISCOVERY: &[u8] =
    b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: tollgate\r\n\r\n";

/// Sends one request and reads the head of its answer; the status code.
fn request(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    stream.write_all(GET_DISCOVERY).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&got);
    head.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn connections_without_a_complete_request_head_are_closed_at_the_deadline() {
    let (_dir, server) = server("\n[server]\nheader_read_timeout = 1\n");

    let mut silent = connect(&server);
    let mut partial_head = connect(&server);
    partial_head
        .write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut partial_preface = connect(&server);
    partial_preface.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    let mut one_byte = connect(&server);
    one_byte.write_all(b"P").unwrap();
    // The whole HTTP/2 preface and an empty SETTINGS frame, then no request ever.
    let mut h2_idle = connect(&server);
    h2_idle
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    // Served once, then idle on a keep-alive connection.
    let mut kept_alive = connect(&server);
    assert_eq!(request(&mut kept_alive, Duration::from_secs(10)), Some(200));

    for (name, stream) in [
        ("a connection that sends nothing", &mut silent),
        ("a partial request head", &mut partial_head),
        ("a partial HTTP/2 preface", &mut partial_preface),
        ("a single byte", &mut one_byte),
        ("an HTTP/2 connection that sends no request", &mut h2_idle),
        ("an idle keep-alive connection", &mut kept_alive),
    ] {
        let after = closed_within(stream, Duration::from_secs(8));
        let after = after.unwrap_or_else(|| panic!("{name} is still open after 8 s"));
        assert!(
            after < Duration::from_secs(4),
            "{name}: closed after {after:?}"
        );
    }

    // A client that speaks in time is served.
    let mut fresh = connect(&server);
    assert_eq!(request(&mut fresh, Duration::from_secs(10)), Some(200));
    server.stop();
}

#[test]
fn connections_beyond_the_bound_wait_until_a_slot_frees() {
    let (_dir, server) = server("\n[server]\nmax_connections = 2\nheader_read_timeout = 30\n");

    // Two connections take both slots (served, then kept alive).
    let mut first = connect(&server);
    assert_eq!(request(&mut first, Duration::from_secs(10)), Some(200));
    let mut second = connect(&server);
    assert_eq!(request(&mut second, Duration::from_secs(10)), Some(200));

    // A third is accepted by the kernel but not served while both slots are taken.
    let mut third = connect(&server);
    third.write_all(GET_DISCOVERY).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 1024];
    match third.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("a connection beyond max_connections was served: {other:?}"),
    }
    // The slots still serve their connections.
    assert_eq!(request(&mut first, Duration::from_secs(10)), Some(200));

    // One slot frees: the waiting connection is served.
    drop(second);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = third.read(&mut buf).expect("served once a slot freed");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(logs.contains("connection limit reached"), "{logs}");
    drop(logs);
    drop(first);
    server.stop();
}
