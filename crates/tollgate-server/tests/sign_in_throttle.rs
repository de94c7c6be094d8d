//! `[sign_in] throttle`: failed password sign-ins are counted per username, per username and
//! address, or both (the default). The address is the connection's peer, so a test sends from
//! several loopback addresses (127.0.0.0/8 is all loopback).

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use support::*;

fn from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A password sign-in as `alice` from 127.0.0.`last`; its status.
async fn sign_in(server: &Server, last: u8, password: &str) -> u16 {
    let (status, body) = post_form(
        &from(last),
        &server.url("/connect/token"),
        INTEGRATION,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", password),
            ("tenant_path", "/Acme"),
        ],
    )
    .await;
    if status == 429 {
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    status
}

/// The demo configuration with `[sign_in] throttle = policy`, or without the table.
fn start(dir: &std::path::Path, policy: Option<&str>) -> Server {
    let mut text = config(dir);
    if let Some(policy) = policy {
        text.push_str(&format!("\n[sign_in]\nthrottle = \"{policy}\"\n"));
    }
    Server::start(dir, &text)
}

/// Five wrong passwords from 127.0.0.1; then the guesser is throttled, even with the right one.
async fn guess_from_one_address(server: &Server) {
    for _ in 0..5 {
        assert_eq!(sign_in(server, 1, "wrong").await, 400);
    }
    assert_eq!(sign_in(server, 1, "alice-password").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_aware_policy_lets_the_user_in_from_another_address() {
    // `both` is the default: no [sign_in] table at all.
    for policy in [None, Some("both"), Some("username_and_address")] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), policy);
        guess_from_one_address(&server).await;
        assert_eq!(
            sign_in(&server, 2, "alice-password").await,
            200,
            "{policy:?}: the user, from another address, is not locked out"
        );
        server.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_username_a_guesser_delays_the_user_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some("username"));
    guess_from_one_address(&server).await;
    assert_eq!(sign_in(&server, 2, "alice-password").await, 429);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_both_failures_from_every_address_add_up_to_a_per_user_ceiling() {
    for (policy, last_answer) in [("both", 429), ("username_and_address", 200)] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), Some(policy));
        // Twenty-four wrong passwords, four from each of six addresses: no address is
        // throttled, and the first twenty are judged. Under `both`, the twentieth trips the
        // user's ceiling, and each one let through after it doubles the wait (so the last
        // attempt below falls well within it, however slow the machine).
        let mut statuses = Vec::new();
        for last in 1..=6 {
            for _ in 0..4 {
                statuses.push(sign_in(&server, last, "wrong").await);
            }
        }
        assert!(
            statuses[..20].iter().all(|s| *s == 400),
            "{policy}: {statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| *s == 400 || (policy == "both" && *s == 429)),
            "{policy}: {statuses:?}"
        );
        // Under `both` the user's ceiling is reached, from any address.
        assert_eq!(
            sign_in(&server, 7, "alice-password").await,
            last_answer,
            "{policy}"
        );
        server.stop();
    }
}
