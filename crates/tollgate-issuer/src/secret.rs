//! Passwords and client secrets: argon2id PHC strings, verified off the async runtime with bounded
//! concurrency, compared in constant time, never kept or logged in clear.

use crate::digest::{digests_equal, sha256};
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash as Phc};
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// An argon2 password hash in PHC string format (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(Arc<str>);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the password, but it is still offline-crackable material: keep it out
        // of logs.
        f.write_str("PasswordHash(..)")
    }
}

/// A string that is not an argon2 PHC hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHash(String);

impl fmt::Display for InvalidHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an argon2 PHC hash: {}", self.0)
    }
}

impl std::error::Error for InvalidHash {}

impl PasswordHash {
    /// Parses a PHC string; only the argon2 family is accepted.
    pub fn parse(phc: &str) -> Result<Self, InvalidHash> {
        let parsed = Phc::new(phc).map_err(|e| InvalidHash(e.to_string()))?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(InvalidHash(format!(
                "algorithm `{}` is not argon2",
                parsed.algorithm
            )));
        }
        if parsed.hash.is_none() {
            return Err(InvalidHash("no hash value".into()));
        }
        Ok(PasswordHash(phc.into()))
    }

    /// Hashes `password` with argon2id and a random salt (the crate's recommended parameters:
    /// 19 MiB, 2 passes, 1 lane). Slow by design: call it off the async runtime.
    pub fn hash(password: &[u8]) -> Result<Self, InvalidHash> {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| InvalidHash("no randomness".into()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| InvalidHash(e.to_string()))?;
        let phc = Argon2::default()
            .hash_password(password, &salt)
            .map_err(|e| InvalidHash(e.to_string()))?;
        Ok(PasswordHash(phc.to_string().into()))
    }

    /// A hash of random bytes made with `like`'s algorithm, version and cost (default parameters
    /// without `like`): what an unknown username is verified against, so that it costs what a
    /// real user's password costs. Slow by design: call it off the async runtime.
    pub(crate) fn dummy_like(like: Option<&PasswordHash>) -> Result<Self, InvalidHash> {
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| InvalidHash("no randomness".into()))?;
        let Some(like) = like else {
            return Self::hash(&random);
        };
        let phc = Phc::new(&like.0).map_err(|e| InvalidHash(e.to_string()))?;
        let algorithm = argon2::Algorithm::new(phc.algorithm.as_str())
            .map_err(|e| InvalidHash(e.to_string()))?;
        let version = phc
            .version
            .map(argon2::Version::try_from)
            .transpose()
            .map_err(|e| InvalidHash(e.to_string()))?
            .unwrap_or_default();
        let params = argon2::Params::try_from(&phc).map_err(|e| InvalidHash(e.to_string()))?;
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| InvalidHash("no randomness".into()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| InvalidHash(e.to_string()))?;
        let dummy = Argon2::new(algorithm, version, params)
            .hash_password(&random, &salt)
            .map_err(|e| InvalidHash(e.to_string()))?;
        Ok(PasswordHash(dummy.to_string().into()))
    }

    /// What verifying against this hash costs, in argon2's terms: memory (KiB) × passes × lanes.
    pub(crate) fn cost(&self) -> u64 {
        Phc::new(&self.0)
            .ok()
            .and_then(|phc| argon2::Params::try_from(&phc).ok())
            .map_or(0, |p| {
                u64::from(p.m_cost()) * u64::from(p.t_cost()) * u64::from(p.p_cost())
            })
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `password` matches. Slow by design: call it off the async runtime.
    fn matches(&self, password: &[u8]) -> bool {
        Phc::new(&self.0).is_ok_and(|phc| Argon2::default().verify_password(password, &phc).is_ok())
    }
}

/// A client secret, kept only as a hash. Built with [`ClientSecret::argon2`] (the configured form)
/// or [`ClientSecret::from_plaintext`] (a secret from the environment, hashed at once).
///
/// Opaque on purpose: the remembered digest below must only ever be set by a successful argon2
/// verification, never by a caller.
pub struct ClientSecret(Secret);

enum Secret {
    /// The first successful verification is slow; after it, the SHA-256 of the secret is
    /// remembered so that later requests cost a digest and a constant-time comparison, not an
    /// argon2 run (client secrets are high-entropy machine secrets: a fast digest of one reveals
    /// nothing a brute force could use).
    Argon2 {
        hash: PasswordHash,
        verified: Arc<Mutex<Option<[u8; 32]>>>,
        /// Held while this secret is being verified with argon2: one client id occupies at most
        /// one hashing thread, however many guesses arrive at once, and the password sign-ins
        /// sharing the pool keep their pace.
        verifying: Arc<tokio::sync::Mutex<()>>,
    },
    Sha256([u8; 32]),
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Secret::Argon2 { .. } => "ClientSecret::Argon2(..)",
            Secret::Sha256(_) => "ClientSecret::Sha256(..)",
        })
    }
}

impl ClientSecret {
    /// A secret configured as an argon2 PHC hash.
    pub fn argon2(hash: PasswordHash) -> Self {
        ClientSecret(Secret::Argon2 {
            hash,
            verified: Arc::new(Mutex::new(None)),
            verifying: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// A secret given in clear; only its SHA-256 is kept.
    pub fn from_plaintext(secret: &str) -> Self {
        ClientSecret(Secret::Sha256(sha256(secret.as_bytes())))
    }
}

/// A verification queued for the hashing threads.
type Job = Box<dyn FnOnce() -> bool + Send>;

/// Runs argon2 verifications on a few dedicated threads, so that a flood of sign-in attempts
/// queues instead of starving the async runtime. Dedicated threads rather than Tokio's blocking
/// pool: each verification allocates its memory cost (19 MiB by default), and the allocator keeps
/// that memory per thread; a fixed set of threads bounds it to `limit` times the cost, where a
/// growing blocking pool would hold it for every thread it ever ran on.
#[derive(Clone)]
pub(crate) struct Hasher {
    jobs: mpsc::Sender<(Job, oneshot::Sender<bool>)>,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("queue_capacity", &self.jobs.capacity())
            .finish()
    }
}

/// Verifications waiting for a thread, at most; beyond it callers wait for room.
const QUEUE: usize = 1024;

impl Hasher {
    /// Starts `limit` hashing threads; they stop when the last `Hasher` clone is dropped.
    pub(crate) fn new(limit: usize) -> Result<Self, String> {
        let (jobs, queue) = mpsc::channel::<(Job, oneshot::Sender<bool>)>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..limit.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("tollgate-hash-{i}"))
                .spawn(move || {
                    loop {
                        // One thread waits on the queue at a time; the others wait for the lock.
                        let next = match queue.lock() {
                            Ok(mut queue) => queue.blocking_recv(),
                            Err(_) => None,
                        };
                        let Some((job, reply)) = next else { return };
                        let _ = reply.send(job());
                    }
                })
                .map_err(|e| format!("cannot start a hashing thread: {e}"))?;
        }
        Ok(Hasher { jobs })
    }

    /// Whether `password` matches `hash`.
    pub(crate) async fn verify_password(&self, hash: &PasswordHash, password: &str) -> bool {
        let hash = hash.clone();
        let password = password.as_bytes().to_vec();
        self.run(move || hash.matches(&password)).await
    }

    /// Whether `presented` is the client's secret. `None` (unknown client) costs a digest and a
    /// comparison, like a known client whose secret was already verified once.
    pub(crate) async fn verify_client_secret(
        &self,
        secret: Option<&ClientSecret>,
        presented: &str,
    ) -> bool {
        let digest = sha256(presented.as_bytes());
        match secret {
            None => {
                let _ = digests_equal(&digest, &[0u8; 32]);
                false
            }
            Some(ClientSecret(Secret::Sha256(expected))) => digests_equal(&digest, expected),
            Some(ClientSecret(Secret::Argon2 {
                hash,
                verified,
                verifying,
            })) => {
                let remembered = || verified.lock().ok().and_then(|guard| *guard);
                if let Some(known) = remembered() {
                    return digests_equal(&digest, &known);
                }
                // Many first requests of one client arrive together: one at a time, and each
                // re-checks the remembered digest, so that only the first right one pays for
                // argon2 and wrong ones queue here rather than in the shared pool.
                let _one_at_a_time = verifying.lock().await;
                if let Some(known) = remembered() {
                    return digests_equal(&digest, &known);
                }
                let (hash, bytes) = (hash.clone(), presented.as_bytes().to_vec());
                let matched = self.run(move || hash.matches(&bytes)).await;
                if matched && let Ok(mut guard) = verified.lock() {
                    *guard = Some(digest);
                }
                matched
            }
        }
    }

    /// Runs `job` on a hashing thread. If the threads are gone, fails closed.
    async fn run(&self, job: impl FnOnce() -> bool + Send + 'static) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send((Box::new(job), reply)).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_only_argon2_is_accepted() {
        let hash = PasswordHash::hash(b"correct horse").unwrap();
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(PasswordHash::parse(hash.as_str()).is_ok());
        assert!(hash.matches(b"correct horse"));
        assert!(!hash.matches(b"correct horse "));
        assert!(PasswordHash::parse("plaintext").is_err());
        assert!(
            PasswordHash::parse("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA").is_err()
        );
        assert_eq!(format!("{hash:?}"), "PasswordHash(..)");
    }

    #[tokio::test]
    async fn client_secrets_verify_and_are_remembered_only_as_digests() {
        let hasher = Hasher::new(2).unwrap();
        let secret = ClientSecret::argon2(PasswordHash::hash(b"s3cret").unwrap());
        assert!(!hasher.verify_client_secret(Some(&secret), "wrong").await);
        if let ClientSecret(Secret::Argon2 { verified, .. }) = &secret {
            assert!(
                verified.lock().unwrap().is_none(),
                "a failure is not remembered"
            );
        }
        assert!(hasher.verify_client_secret(Some(&secret), "s3cret").await);
        assert!(hasher.verify_client_secret(Some(&secret), "s3cret").await);
        assert!(!hasher.verify_client_secret(Some(&secret), "s3cre").await);
        assert!(!hasher.verify_client_secret(None, "s3cret").await);
        let plain = ClientSecret::from_plaintext("env-secret");
        assert!(
            hasher
                .verify_client_secret(Some(&plain), "env-secret")
                .await
        );
        assert!(
            !hasher
                .verify_client_secret(Some(&plain), "env-secreT")
                .await
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_client_id_occupies_at_most_one_hashing_thread() {
        // Concurrent first guesses for one client take one hashing thread at a time: the other
        // thread stays free for everyone else. (Without the bound, four guesses fill both
        // threads and queue two more ahead of the other user: three verifications' wait.)
        let pool = Hasher::new(2).unwrap();
        let other = PasswordHash::hash(b"pw").unwrap();
        let mut beside_guesses = std::time::Duration::MAX;
        let mut alone = std::time::Duration::ZERO;
        for _round in 0..3 {
            let fresh = Arc::new(ClientSecret::argon2(PasswordHash::hash(b"s3cret").unwrap()));
            let guesses: Vec<_> = (0..4)
                .map(|i| {
                    let (pool, fresh) = (pool.clone(), fresh.clone());
                    tokio::spawn(async move {
                        let guess = format!("guess-{i}");
                        pool.verify_client_secret(Some(&fresh), &guess).await
                    })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let started = std::time::Instant::now();
            assert!(pool.verify_password(&other, "pw").await);
            beside_guesses = beside_guesses.min(started.elapsed());
            for guess in guesses {
                assert!(!guess.await.unwrap());
            }
            let started = std::time::Instant::now();
            assert!(pool.verify_password(&other, "pw").await);
            alone = alone.max(started.elapsed());
        }
        assert!(
            beside_guesses < alone * 2,
            "took {beside_guesses:?} beside a client's guesses, {alone:?} alone"
        );
    }

    #[tokio::test]
    async fn passwords_verify_on_the_hashing_threads() {
        let hasher = Hasher::new(1).unwrap();
        let hash = PasswordHash::hash(b"pw").unwrap();
        assert!(hasher.verify_password(&hash, "pw").await);
        assert!(!hasher.verify_password(&hash, "pW").await);
    }

    #[test]
    fn the_dummy_hash_costs_what_the_costliest_user_hash_costs() {
        // A hash made elsewhere with a higher cost than tollgate's defaults.
        let params = argon2::Params::new(8 * 1024, 4, 2, None).unwrap();
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let costly = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let costly = PasswordHash::parse(&costly).unwrap();
        let dummy = PasswordHash::dummy_like(Some(&costly)).unwrap();
        assert_eq!(dummy.cost(), costly.cost());
        assert_eq!(dummy.cost(), 8 * 1024 * 4 * 2);
        assert!(
            dummy.as_str().starts_with("$argon2id$v=19$m=8192,t=4,p=2$"),
            "{}",
            dummy.as_str()
        );
        assert_ne!(dummy.as_str(), costly.as_str());
        let default = PasswordHash::dummy_like(None).unwrap();
        assert_eq!(default.cost(), PasswordHash::hash(b"x").unwrap().cost());
    }
}
