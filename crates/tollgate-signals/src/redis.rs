//! Receivers beside Redis: publish to the stream every follower reads, and share replay
//! protection between every receiver of a deployment.
//!
//! A signal is answered only once what it wrote is safe: the event in the stream and the `jti`
//! marked used, each acknowledged by as many replicas as the target requires
//! ([`RedisTarget::replica_acks`]; `WAIT`), so that a Sentinel or Cluster failover cannot lose
//! them. Connections go to the primary (for a Cluster, the master of the keys' hash slot) and
//! are opened again, asking the Sentinels or the Cluster anew, after a failure.
//!
//! When Redis does not answer, a receiver cannot publish: it answers the signal with a failure
//! (for a back-channel logout, `400 temporarily_unavailable`) and does not spend its `jti`, so
//! the provider's retry is accepted. The receiving process applies the event to its own index all
//! the same (when given one with [`RedisPublisher::apply_locally`]): it fails closed for itself
//! even while the others cannot yet hear of it.

use crate::publish::{BoxFuture, Publish, PublishError};
use crate::replay::{ReplayError, ReplayGuard};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tollgate_core::{RevocationEvent, RevocationIndex, UnixMillis};
use tollgate_redis::RedisTarget;
use tollgate_redis::wire::Keys;

/// How long a command may wait for Redis before the signal is answered with a failure.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One connection to the Redis that holds `keys`, opened when first needed and opened again
/// after a failure.
#[derive(Debug)]
struct Connection {
    target: RedisTarget,
    /// Which keys it is for: in a Cluster, they name the master to talk to.
    keys: Keys,
    open: Mutex<Option<MultiplexedConnection>>,
}

impl Connection {
    fn new(target: RedisTarget, keys: Keys) -> Self {
        Connection {
            target,
            keys,
            open: Mutex::new(None),
        }
    }

    async fn get(&self) -> Result<MultiplexedConnection, String> {
        let mut open = self.open.lock().await;
        if let Some(connection) = &*open {
            return Ok(connection.clone());
        }
        let connection = self
            .target
            .connect_for(&self.keys, RESPONSE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        *open = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the connection after a failure, so that the next call opens a new one.
    async fn reset(&self) {
        *self.open.lock().await = None;
    }
}

/// Publishes events into a tollgate Redis stream (the one `tollgate revoke` writes to and every
/// follower reads): `publish` returns once Redis has appended them and the replicas the target
/// requires acknowledged them.
#[derive(Debug)]
pub struct RedisPublisher {
    connection: Connection,
    keys: Keys,
    local: Option<Arc<RevocationIndex>>,
}

impl RedisPublisher {
    /// Publishes to the stream under `keys` of the Redis at `target`.
    pub fn new(target: RedisTarget, keys: Keys) -> Self {
        RedisPublisher {
            connection: Connection::new(target, keys.clone()),
            keys,
            local: None,
        }
    }

    /// Also applies every event to this process's index at once, whether or not Redis took it:
    /// the receiving process refuses the tokens without waiting to read its own event back.
    pub fn apply_locally(mut self, index: Arc<RevocationIndex>) -> Self {
        self.local = Some(index);
        self
    }
}

impl Publish for RedisPublisher {
    fn publish<'a>(
        &'a self,
        events: &'a [RevocationEvent],
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            if let Some(index) = &self.local {
                for event in events {
                    index.apply(event);
                }
            }
            let mut connection = self.connection.get().await.map_err(PublishError::new)?;
            let acks = self.connection.target.replica_acks();
            match tollgate_redis::publish_acked(&mut connection, &self.keys, events, acks).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    self.connection.reset().await;
                    Err(PublishError::new(e.to_string()))
                }
            }
        })
    }
}

/// Replay protection in Redis, shared by every receiver that uses the same Redis and prefix:
/// `SET <key> NX PX <ttl>` per signal.
#[derive(Debug)]
pub struct RedisReplayGuard {
    connection: Connection,
    prefix: String,
}

impl RedisReplayGuard {
    /// Keeps used `jti`s under `{prefix}:seen:...` (in the hash slot of the prefix's other keys)
    /// in the Redis at `target`.
    pub fn new(target: RedisTarget, prefix: &str) -> Self {
        RedisReplayGuard {
            connection: Connection::new(target, Keys::new(prefix)),
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, issuer: &str, jti: &str) -> String {
        // The issuer has no space (it is a URL, checked when configured); the jti may, and ends
        // the key.
        format!("{{{}}}:seen:{issuer} {jti}", self.prefix)
    }
}

impl ReplayGuard for RedisReplayGuard {
    fn first_use<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        Box::pin(async move {
            let mut connection = self.connection.get().await.map_err(ReplayError::new)?;
            let set: Result<Option<String>, _> = redis::cmd("SET")
                .arg(self.key(issuer, jti))
                .arg(1)
                .arg("NX")
                // Relative, so that Redis's clock does not matter.
                .arg("PX")
                .arg(until.0.saturating_sub(now.0).max(1))
                .query_async(&mut connection)
                .await;
            let acks = self.connection.target.replica_acks();
            match set {
                Ok(None) => Ok(false),
                // Used, once a failover cannot forget it: otherwise a replay after the failover
                // would be taken for a first use.
                Ok(Some(_)) => match tollgate_redis::wait_for_replicas(&mut connection, acks).await
                {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        self.connection.reset().await;
                        // Not counted as used: the provider's retry must be accepted, not taken
                        // for a replay of a jti this receiver refused.
                        self.forget(issuer, jti).await;
                        Err(ReplayError::new(e.to_string()))
                    }
                },
                Err(e) => {
                    self.connection.reset().await;
                    Err(ReplayError::new(format!("Redis failed: {}", e.category())))
                }
            }
        })
    }

    fn forget<'a>(&'a self, issuer: &'a str, jti: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok(mut connection) = self.connection.get().await else {
                return;
            };
            let deleted: Result<i64, _> = redis::cmd("DEL")
                .arg(self.key(issuer, jti))
                .query_async(&mut connection)
                .await;
            if let Err(e) = deleted {
                // The provider's retry will be taken for a replay until the key expires.
                tracing::warn!(error = %e.category(), "could not give back a jti after a failure");
                self.connection.reset().await;
            }
        })
    }
}
