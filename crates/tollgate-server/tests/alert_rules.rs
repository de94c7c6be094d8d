//! contrib/prometheus/tollgate-alerts.yml, the alerting rules operators load: promtool accepts
//! them, their unit tests (tollgate-alerts.test.yml) pass, and every metric they name is one the
//! real binaries export, so that a renamed metric cannot leave an alert that never fires.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::gateway::{start_gateway_with_env, upstream};
use support::*;
use tollgate_redis::testing::RedisServer;

const ISSUER: &str = "http://127.0.0.1:8080";
/// An address nothing listens on: the Shared Signals receivers configured below never reach
/// their transmitter, but their metrics exist.
const NO_TRANSMITTER: &str = "http://127.0.0.1:9";

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (`cargo xtask deps` does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "tollgate-alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "tollgate-alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// The metric families a scrape declares (`# TYPE name kind`).
async fn families(url: &str) -> BTreeSet<String> {
    let text = http().get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Whether the series name `name` belongs to one of `families` (a counter's samples end in
/// `_total`, a histogram's in `_bucket`, `_sum`, `_count`).
fn exported(name: &str, families: &BTreeSet<String>) -> bool {
    families.contains(name)
        || ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|f| families.contains(f))
            })
}

#[tokio::test]
async fn every_metric_the_rules_name_is_exported() {
    let rules = std::fs::read_to_string(rules_dir().join("tollgate-alerts.yml")).unwrap();
    let named: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("tollgate_"))
        .collect();
    assert!(named.len() > 10, "too few metric names found: {named:?}");

    // `tollgate serve` with a relay, a follower and a Shared Signals receiver.
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let signals = |extra: &str| {
        format!(
            "[[shared_signals]]\ntransmitter = \"{NO_TRANSMITTER}\"\naudience = \"tollgate\"\n\
             bearer_token_env = \"SSF_TOKEN\"\n{extra}"
        )
    };
    let serve_toml = dir.path().join("tollgate.toml");
    std::fs::write(
        &serve_toml,
        format!(
            "{}\n[replication]\nredis_url = {:?}\n[metrics]\nlisten = \"127.0.0.1:0\"\n{}",
            config(dir.path()),
            redis.url(),
            signals(""),
        ),
    )
    .unwrap();
    let server = Server::start_file_with_env(&serve_toml, &[("SSF_TOKEN", "t")]);
    let metrics = {
        let logs = server.logs.lock().unwrap();
        let line = logs
            .iter()
            .find(|line| line.contains("metrics are served"))
            .unwrap_or_else(|| panic!("no metrics listener in the log: {logs:?}"))
            .clone();
        let address = line.split("address=").nth(1).unwrap();
        format!(
            "http://{}/metrics",
            address.split_whitespace().next().unwrap()
        )
    };
    // A 503 is counted by endpoint and status once the service has answered something.
    let _ = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await;

    // `tollgate gateway` following the same Redis, with a logout receiver and a Shared Signals
    // receiver.
    let upstream = upstream().await;
    let gateway_toml = dir.path().join("gateway.toml");
    std::fs::write(
        &gateway_toml,
        format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = [\"{ISSUER}\"]\n\
             [keys]\njwks_url = \"{}\"\n[ops]\nlisten = \"127.0.0.1:0\"\n\
             [revocations]\nredis_url = {:?}\n\
             [back_channel_logout]\npath = \"/backchannel-logout\"\n\
             [[back_channel_logout.issuers]]\nissuer = \"{ISSUER}\"\nclient_id = \"web\"\n\
             {}\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{upstream}\"\n[[routes]]\nprefix = \"/\"\n",
            server.url("/.well-known/jwks.json"),
            redis.url(),
            signals(&format!("token_issuers = [\"{ISSUER}\"]\n")),
        ),
    )
    .unwrap();
    let gateway = start_gateway_with_env(&gateway_toml, &[("SSF_TOKEN", "t")]);

    let mut exported_families = families(&metrics).await;
    exported_families.extend(families(&format!("{}/metrics", gateway.ops)).await);
    let missing: Vec<&str> = named
        .iter()
        .copied()
        .filter(|name| !exported(name, &exported_families))
        .collect();
    assert!(
        missing.is_empty(),
        "the rules name metrics no binary exports: {missing:?}\nexported: {exported_families:?}"
    );
}
