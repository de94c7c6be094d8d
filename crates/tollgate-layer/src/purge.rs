//! A background task that forgets revocations of tokens that have expired anyway.

use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;
use tollgate_core::{Clock, RevocationIndex};

/// Spawns a task on the current tokio runtime that calls
/// [`RevocationIndex::purge_expired`] every `every`, so the index's memory stays bounded by live
/// tokens. The task ends by itself once the index is dropped.
///
/// # Panics
///
/// Outside a tokio runtime, like [`tokio::spawn`].
pub fn spawn_index_purge(
    index: &Arc<RevocationIndex>,
    clock: Arc<dyn Clock>,
    every: Duration,
) -> JoinHandle<()> {
    let index: Weak<RevocationIndex> = Arc::downgrade(index);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(index) = index.upgrade() else {
                return;
            };
            let removed = index.purge_expired(clock.now());
            if removed > 0 {
                tracing::debug!(removed, "purged expired revocations");
            }
        }
    })
}
