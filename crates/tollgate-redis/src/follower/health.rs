//! The operator's policy when the feed is unhealthy, as a [`Readiness`] for the Layer.

use super::state::FeedState;
use std::sync::Arc;
use std::time::Duration;
use tollgate_layer::{NotReady, Readiness};

/// When a Layer following the feed refuses requests (503, or gRPC `UNAVAILABLE`).
///
/// The trade-off: a validator that has not synced, or has lost Redis, may accept a token that
/// was revoked meanwhile (it has not heard). Refusing is safe and costs availability; serving is
/// available and costs the revocation guarantee for the length of the outage.
///
/// The default refuses until the first sync, and once Redis has been silent for longer than
/// [`DEFAULT_MAX_SILENCE`]: a revocation is honoured within that bound or the API stops
/// answering, never silently ignored for longer.
///
/// Whatever the policy, except [`always_serve`](Self::always_serve), a follower that refuses
/// what Redis holds (see [`FeedStatus::refused`](crate::FeedStatus::refused)) is not ready:
/// it follows nothing meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Refuse requests until the first sync (snapshot applied and stream read to its end).
    pub require_sync: bool,
    /// Refuse requests once Redis has not answered for longer than this; `None` serves on
    /// whatever the index last knew, however stale.
    pub max_silence: Option<Duration>,
}

/// The default staleness bound: 30 seconds without an answer from Redis (a follower hears from
/// it at least every second while connected, so this is a real outage, not a quiet stream).
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(30);

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            require_sync: true,
            max_silence: Some(DEFAULT_MAX_SILENCE),
        }
    }
}

impl HealthPolicy {
    /// Serves whatever the feed's state: never refuses because of it.
    pub fn always_serve() -> Self {
        HealthPolicy {
            require_sync: false,
            max_silence: None,
        }
    }
}

/// A follower's health judged by a [`HealthPolicy`]: give it to
/// [`ValidateBearerLayer::readiness`](tollgate_layer::ValidateBearerLayer::readiness).
#[derive(Debug, Clone)]
pub struct FeedHealth {
    pub(crate) state: Arc<FeedState>,
    pub(crate) policy: HealthPolicy,
}

impl FeedHealth {
    /// The policy applied.
    pub fn policy(&self) -> HealthPolicy {
        self.policy
    }
}

impl Readiness for FeedHealth {
    fn check(&self) -> Result<(), NotReady> {
        // A follower that refuses what Redis holds follows nothing: it hears no revocation,
        // like a silent one, whether or not it had synced before. Only a policy that serves
        // whatever happens ignores it.
        if (self.policy.require_sync || self.policy.max_silence.is_some())
            && self.state.is_refusing()
        {
            return Err(NotReady::Inconsistent);
        }
        let synced = self.state.is_synced();
        if self.policy.require_sync && !synced {
            return Err(NotReady::NotSynced);
        }
        if let Some(bound) = self.policy.max_silence {
            match self.state.since_contact() {
                Some(silence) if silence > bound => return Err(NotReady::Stale),
                // Never reached Redis: not synced either; stale if the policy asks for sync
                // (handled above) or if it bounds silence at all.
                None => return Err(NotReady::Stale),
                Some(_) => {}
            }
        }
        Ok(())
    }
}
