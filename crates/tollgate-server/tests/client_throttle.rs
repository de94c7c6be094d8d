//! Failed client authentications are throttled per client id and address: the binary tells the
//! token service where each request came from, so a guesser delays only its own address.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use support::*;

fn from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(address)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_guesser_delays_only_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(dir.path()));
    let url = server.url("/connect/token");
    let form = [("grant_type", "client_credentials")];
    let guesser = from([127, 0, 0, 1]);
    for _ in 0..5 {
        let (status, _) = post_form(&guesser, &url, (SVC.0, "wrong"), &form).await;
        assert_eq!(status, 401);
    }
    let (status, body) = post_form(&guesser, &url, SVC, &form).await;
    assert_eq!(status, 429, "throttled before any comparison: {body}");
    assert_eq!(body["error"], "invalid_client");
    // The client, calling from another address (loopback is a /8), is served.
    let (status, body) = post_form(&from([127, 0, 0, 2]), &url, SVC, &form).await;
    assert_eq!(status, 200, "{body}");
    server.stop();
}
