//! The source of "now" for expiry, leeway and purge decisions, replaceable in tests.

use crate::UnixMillis;
use std::fmt;
use std::time::SystemTime;
#[cfg(feature = "test-util")]
use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> UnixMillis;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        SystemTime::now().into()
    }
}

/// A clock that only moves when told to: for tests of expiry, leeway and purging.
///
/// A test helper, available with the `test-util` feature (enable it in `[dev-dependencies]`).
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{Clock, ManualClock, UnixMillis};
///
/// let clock = ManualClock::new(UnixMillis(1_000));
/// clock.advance(Duration::from_millis(500));
/// assert_eq!(clock.now(), UnixMillis(1_500));
/// ```
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

#[cfg(feature = "test-util")]
impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: UnixMillis) -> Self {
        ManualClock {
            now: AtomicI64::new(now.0),
        }
    }

    /// Sets the current instant.
    pub fn set(&self, now: UnixMillis) {
        self.now.store(now.0, Ordering::SeqCst);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

#[cfg(feature = "test-util")]
impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.now.load(Ordering::SeqCst))
    }
}
