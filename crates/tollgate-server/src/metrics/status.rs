//! Values read when Prometheus scrapes, from the status the running parts already keep: the
//! live tokens of the token service, the relay's and the follower's status, the Shared Signals
//! receivers' counters. Nothing polls them in between.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use tollgate_issuer::TokenService;
use tollgate_program::metrics::{counter, gauge};
use tollgate_redis::{Feed, RelayHandle};

/// `tollgate_live_tokens{kind}`: the tokens the service tracks, read at scrape time.
#[derive(Debug)]
pub(crate) struct LiveTokens(pub(crate) TokenService);

impl Collector for LiveTokens {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let live = self.0.live_tokens();
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "tollgate_live_tokens",
            "Tokens the service tracks until they expire (access: for batch counts; refresh: exchanged ones included)",
            None,
            gauge.metric_type(),
        )?;
        for (kind, count) in [("access", live.access), ("refresh", live.refresh)] {
            ConstGauge::new(count as i64).encode(family.encode_family(&[("kind", kind)])?)?;
        }
        Ok(())
    }
}

/// With `[replication]`: the relay's and the follower's status, read at scrape time.
#[derive(Debug)]
pub(crate) struct Replication {
    pub(crate) relay: RelayHandle,
    pub(crate) feed: Feed,
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

impl Collector for Replication {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let relay = self.relay.status();
        let e = &mut encoder;
        gauge(
            e,
            "tollgate_relay_backlog",
            "Revocations committed but not yet published to Redis, as the store counts them (also while Redis is out of reach)",
            None,
            relay.backlog as f64,
        )?;
        counter(
            e,
            "tollgate_relay_published",
            "Revocation events published to Redis since start (republished ones included)",
            relay.published,
        )?;
        gauge(
            e,
            "tollgate_relay_healthy",
            "1 if the relay's last round succeeded, else 0",
            None,
            flag(relay.healthy),
        )?;
        let feed = self.feed.status();
        gauge(
            e,
            "tollgate_feed_synced",
            "1 once the follower has loaded the snapshot and read the stream to its end",
            None,
            flag(feed.synced),
        )?;
        gauge(
            e,
            "tollgate_feed_connected",
            "1 if the follower's last exchange with Redis succeeded, else 0",
            None,
            flag(feed.connected),
        )?;
        counter(
            e,
            "tollgate_feed_applied",
            "Stream entries the follower applied to the revocation index",
            feed.applied,
        )?;
        counter(
            e,
            "tollgate_feed_skipped",
            "Stream entries the follower could not read and skipped (on_unreadable = skip)",
            feed.skipped,
        )?;
        gauge(
            e,
            "tollgate_feed_refusing",
            "1 while the follower refuses what Redis holds (an inconsistent snapshot, or a stream \
             entry it cannot read under on_unreadable = refuse) and applies nothing, else 0",
            None,
            flag(feed.refused.is_some()),
        )?;
        // Absent until there is something to report: a made-up zero would read as "no lag".
        if let Some(lag) = feed.lag {
            gauge(
                e,
                "tollgate_feed_lag",
                "For the last event applied: when it was applied minus when it was published",
                Some(&Unit::Seconds),
                lag.as_secs_f64(),
            )?;
        }
        if let Some(since) = feed.since_contact {
            gauge(
                e,
                "tollgate_feed_since_contact",
                "Time since Redis last answered the follower",
                Some(&Unit::Seconds),
                since.as_secs_f64(),
            )?;
        }
        Ok(())
    }
}

/// With `[tls]`: `tollgate_tls_handshake_failures_total` and `tollgate_tls_reloads_total{outcome}`,
/// read at scrape time.
#[derive(Debug)]
pub(crate) struct Tls(pub(crate) tollgate_program::tls::TlsAcceptor);

impl Collector for Tls {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        tollgate_program::metrics::tls(&mut encoder, "tollgate", self.0.stats())
    }
}

/// With `[[shared_signals]]`: `tollgate_shared_signals_total{transmitter, outcome}`,
/// `_shared_signals_refused_total{transmitter, reason}` and `_shared_signals_ready{transmitter}`,
/// read at scrape time.
#[derive(Debug)]
pub(crate) struct SharedSignals(pub(crate) crate::signals::SignalReceivers);

impl Collector for SharedSignals {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        tollgate_program::metrics::shared_signals(&mut encoder, "tollgate", &self.0.each())
    }
}
