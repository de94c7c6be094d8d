//! The gateway with `[tls]` over real sockets, with clients that are not rustls (curl, Python's
//! `ssl`): HTTP/1.1 and HTTP/2 by ALPN to a public route, optional client certificates (none is
//! fine, one from an unknown CA is refused), `X-Forwarded-Proto: https` at the upstream, and the
//! handshake failures in `/metrics`.

mod support;

use support::*;
use tollgate_program::tls::testing::{PythonClient, TestCa, curl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_https_with_optional_client_certificates() {
    let fixture = Fixture::new();
    let upstream = upstream().await;
    let dir = fixture.dir.path();
    let ca = TestCa::new("tollgate test CA");
    let ca_file = ca.write(dir, "ca");
    ca.server(&["localhost", "127.0.0.1"]).write(dir, "server");
    let clients = TestCa::new("clients CA");
    clients.write(dir, "clients-ca");
    let gw = fixture
        .start(&format!(
            "[tls]\ncertificate = \"server.crt\"\nprivate_key = \"server.key\"\n\
             client_auth = \"optional\"\nclient_ca = \"clients-ca.crt\"\n\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{}\"\n\
             [[routes]]\nprefix = \"/public\"\npublic = true\nupstream = \"app\"\n",
            upstream.addr
        ))
        .await;
    let addr = gw.local_addr();
    let (client_cert, client_key) = clients.client("svc").write(dir, "svc");
    let (stranger_cert, stranger_key) = TestCa::new("another CA")
        .client("stranger")
        .write(dir, "stranger");
    tokio::task::block_in_place(|| {
        assert_eq!(
            curl(&ca_file, addr, "localhost", "/public/a", &["--http1.1"]).unwrap(),
            "1.1 200"
        );
        assert_eq!(
            curl(&ca_file, addr, "localhost", "/public/a", &["--http2"]).unwrap(),
            "2 200"
        );
        let mut anonymous = PythonClient::start(&ca_file, None);
        anonymous.open(addr, "localhost").unwrap();
        let (status, body) = anonymous.get("/public/b").unwrap();
        assert_eq!(status, 200);
        // The upstream learns that the client came over TLS.
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{echo}");
        let mut known = PythonClient::start(&ca_file, Some((&client_cert, &client_key)));
        known.open(addr, "localhost").unwrap();
        assert_eq!(known.get("/public/c").unwrap().0, 200);
        let mut stranger = PythonClient::start(&ca_file, Some((&stranger_cert, &stranger_key)));
        let refused = stranger
            .open(addr, "localhost")
            .and_then(|_| stranger.get("/public/d"));
        assert!(refused.is_err(), "{refused:?}");
    });
    let metrics = send(gw.ops_addr(), "GET", "/metrics", &[]).await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "tollgate_gateway_tls_handshake_failures_total 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "tollgate_gateway_tls_reloads_total{outcome=\"ok\"} 0"),
        "{metrics}"
    );
    gw.shutdown().await;
}
