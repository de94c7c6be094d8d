//! Instants as milliseconds since the Unix epoch, the unit every revocation comparison uses.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant in milliseconds since the Unix epoch (UTC).
///
/// Revocation cutoffs and issue instants are compared at this precision: `iat` alone has whole
/// seconds, which is too coarse to tell a token issued just before a cutoff from one just after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The earliest representable instant; used as "no cutoff".
    pub const MIN: UnixMillis = UnixMillis(i64::MIN);

    /// Converts whole Unix seconds (as in `iat` / `exp`) to milliseconds, saturating.
    pub fn from_secs(secs: i64) -> Self {
        UnixMillis(secs.saturating_mul(1000))
    }

    /// Whole seconds, rounded towards negative infinity.
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The instant `d` later, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        UnixMillis(self.0.saturating_add(ms))
    }

    /// The instant `d` earlier, saturating.
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        UnixMillis(self.0.saturating_sub(ms))
    }
}

impl From<SystemTime> for UnixMillis {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => UnixMillis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => UnixMillis(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}
