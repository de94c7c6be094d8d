//! `tollgate serve` with `[replication]`: publishes the store's revocations into Redis and
//! follows the stream, so that revocations made elsewhere (another issuer, `tollgate revoke`) are
//! enforced by this server's own introspection, userinfo, refresh and admin API.

use crate::config::Replication;
use std::time::Duration;
use tokio::task::JoinHandle;
use tollgate_issuer::TokenService;
use tollgate_redis::{Feed, Follower, Relay, RelayHandle};

/// How often a relay that is behind or failing is reported.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The relay and the follower of a running server.
pub(crate) struct Replicas {
    relay: RelayHandle,
    feed: Feed,
    report: JoinHandle<()>,
}

/// Starts the relay (the store's outbox into the stream) and the follower (the stream into the
/// token service's index, which every endpoint consults).
///
/// Fails only when Redis refuses the credentials: retrying cannot help, and serving would leave
/// every revocation of this server unpublished. A Redis out of reach is only a warning: the
/// outbox keeps what is committed and the relay publishes it once Redis answers.
pub(crate) async fn start(
    config: &Replication,
    service: &TokenService,
) -> Result<Replicas, String> {
    let outbox = service.store().clone().outbox().ok_or_else(|| {
        "[replication]: this store keeps no outbox, so nothing it commits can be published"
            .to_owned()
    })?;
    let relay = Relay::new(config.target().clone(), outbox)
        .keys(config.keys())
        .wake_on(service.outbox_notify())
        .start();
    let follower = Follower::new(config.target().clone(), service.index().clone())
        .keys(config.keys())
        .write_snapshots(config.snapshot_every())
        .on_unreadable(config.on_unreadable())
        .start();
    // Both connect at once: with Redis out of reach, start-up waits for one timeout, not two.
    let (relay, feed) = tokio::join!(relay, follower);
    let (relay, feed) = match (relay, feed) {
        (Ok(relay), Ok(feed)) => (relay, feed),
        (relay, feed) => {
            if let Ok(relay) = &relay {
                relay.stop();
            }
            if let Ok(feed) = &feed {
                feed.stop();
            }
            let error = relay.err().or(feed.err()).map(|e| e.to_string());
            return Err(error.unwrap_or_default());
        }
    };
    tracing::info!(
        redis = %config.target(),
        key_prefix = config.key_prefix(),
        snapshot_every = config.snapshot_every(),
        on_unreadable = %config.on_unreadable(),
        "replication: publishing and following revocations through Redis"
    );
    let report = tokio::spawn(report(relay.clone()));
    Ok(Replicas {
        relay,
        feed,
        report,
    })
}

impl Replicas {
    /// What the metrics read at each scrape.
    pub(crate) fn status(&self) -> crate::metrics::status::Replication {
        crate::metrics::status::Replication {
            relay: self.relay.clone(),
            feed: self.feed.clone(),
        }
    }

    /// Stops publishing and following. What the relay had not published yet stays in the store's
    /// outbox for the next start.
    pub(crate) fn stop(self) {
        self.report.abort();
        self.relay.stop();
        self.feed.stop();
    }
}

/// Logs the relay's backlog while it fails, or while revocations wait and nothing was published
/// since the last report: a quiet log means committed revocations reach Redis. (Under steady
/// traffic the store counts a small backlog at almost any instant, since the relay records its
/// position about once a second: that alone is not worth a warning.) The follower logs its own
/// state changes.
async fn report(relay: RelayHandle) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.tick().await;
    let mut published = relay.status().published;
    loop {
        every.tick().await;
        let status = relay.status();
        let progressed = status.published != published;
        published = status.published;
        // Standing by, the backlog is the publishing replica's to report (it logs its own).
        if status.standby {
            continue;
        }
        if let Some(message) = report_message(status.healthy, status.backlog, progressed) {
            tracing::warn!(
                backlog = status.backlog,
                healthy = status.healthy,
                published = status.published,
                // The last error is history once the relay is healthy again.
                error = if status.healthy {
                    ""
                } else {
                    status.last_error.as_deref().unwrap_or("")
                },
                "{message}"
            );
        }
    }
}

/// What the periodic report says, if anything. A failing relay with nothing waiting is reported
/// as such, not as "revocations not yet published" with a backlog of zero, which reads as a
/// contradiction.
fn report_message(healthy: bool, backlog: u64, progressed: bool) -> Option<&'static str> {
    match (healthy, backlog) {
        (true, 0) => None,
        (true, _) if progressed => None,
        (true, _) => Some(
            "replication: revocations not yet published to Redis, and none published since the \
             last report",
        ),
        (false, 0) => Some(
            "replication: the relay cannot reach Redis; no committed revocation is waiting, \
             the next ones will wait in the store",
        ),
        (false, _) => Some(
            "replication: revocations not yet published to Redis; the relay cannot reach it \
             and they wait in the store",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::report_message;

    #[test]
    fn the_report_never_says_unpublished_revocations_with_a_zero_backlog() {
        assert_eq!(report_message(true, 0, false), None);
        // Steady traffic: a backlog, and publishing.
        assert_eq!(report_message(true, 3, true), None);
        for (healthy, backlog) in [(true, 3), (false, 0), (false, 3)] {
            let message = report_message(healthy, backlog, false).unwrap();
            assert_eq!(
                message.contains("not yet published"),
                backlog > 0,
                "{message}"
            );
        }
    }
}
