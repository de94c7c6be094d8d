//! The request-rate cap per client id: a token bucket for each `client_id` seen in a verified
//! token, answered with 429 and `Retry-After` when empty.
//!
//! Only verified tokens reach the limiter, so its keys are real client ids of the issuer, not
//! whatever a client makes up; buckets that have refilled are forgotten by [`ClientRateLimit::purge`].

use dashmap::DashMap;
use std::time::{Duration, Instant};

/// Token buckets keyed by client id.
#[derive(Debug)]
pub struct ClientRateLimit {
    rate: f64,
    burst: f64,
    buckets: DashMap<Box<str>, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ClientRateLimit {
    /// `rate` requests per second, up to `burst` at once.
    pub fn new(rate: f64, burst: u32) -> Self {
        ClientRateLimit {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
        }
    }

    /// Takes one request from `client`'s bucket: `Err(wait)` when it is empty, `wait` being the
    /// time until a request is allowed again.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut bucket = self.buckets.entry(client.into()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Forgets the buckets that would be full by now (their clients have been quiet long
    /// enough): memory follows the clients active recently.
    pub fn purge(&self) {
        let now = Instant::now();
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.rate < self.burst
        });
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_empty_and_refill() {
        let limit = ClientRateLimit::new(10.0, 3);
        for _ in 0..3 {
            assert!(limit.check("a").is_ok());
        }
        let wait = limit.check("a").unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(limit.check("b").is_ok(), "clients have their own buckets");
        std::thread::sleep(Duration::from_millis(120));
        assert!(limit.check("a").is_ok());
        limit.purge();
        assert_eq!(
            limit.len(),
            1,
            "b has refilled and is forgotten; a is not full yet"
        );
    }
}
