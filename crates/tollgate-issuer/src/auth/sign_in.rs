//! Password sign-in (the legacy password grant): the throttle first, then the user directory and
//! the password hash, verified whatever else is wrong so that every failure takes as long.

use super::sign_in_throttle::SignInThrottle;
use super::throttle::{Attempt, Throttle};
use crate::directory::{DirectoryError, User, Users};
use crate::secret::{Hasher, InvalidHash, PasswordHash};
use crate::store::{Settled, SharedStore, ThrottlePolicy};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{Clock, UnixMillis};

/// Why a sign-in failed.
#[derive(Debug)]
pub(crate) enum SignInError {
    /// Too many recent failures for this username (or this username from this address): retry
    /// after this long.
    Throttled(Duration),
    /// Unknown user, wrong password or disabled user: one answer for all three.
    Invalid,
    /// The user directory failed.
    Unavailable(DirectoryError),
}

/// Verifies users' passwords, throttled as its [`SignInThrottle`] says.
#[derive(Debug)]
pub(crate) struct SignIn {
    users: Arc<dyn Users>,
    hasher: Hasher,
    /// Which keys an attempt is counted against.
    policy: SignInThrottle,
    /// Every key of every kind, each attempt naming its policy (the kinds never share a key).
    throttle: Throttle,
    /// A store shared with other replicas, which counts failures across all of them; this
    /// process's own throttle still bounds its concurrent attempts.
    shared: Option<Arc<dyn SharedStore>>,
    clock: Arc<dyn Clock>,
    /// Verified against when the user does not exist, made with the costliest configured user
    /// hash's parameters, so that an unknown user costs what a wrong password costs.
    dummy: PasswordHash,
}

impl SignIn {
    /// Makes the dummy hash (one slow argon2 run: call it on start, off the request path).
    pub(crate) fn new(
        users: Arc<dyn Users>,
        hasher: Hasher,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, InvalidHash> {
        let dummy = PasswordHash::dummy_like(users.costliest_password_hash().as_ref())?;
        Ok(SignIn {
            users,
            hasher,
            policy: SignInThrottle::default(),
            throttle: Throttle::default(),
            shared: None,
            clock,
            dummy,
        })
    }

    /// Counts failures in `store` too, so that they add up across every replica sharing it.
    pub(crate) fn shared_with(mut self, store: Arc<dyn SharedStore>) -> Self {
        self.shared = Some(store);
        self
    }

    /// Counts failures against the keys `policy` names.
    pub(crate) fn throttled_by(mut self, policy: SignInThrottle) -> Self {
        self.policy = policy;
        self
    }

    /// The enabled user `username` whose password is `password`; `peer` is the address the
    /// request came from, if the server said.
    pub(crate) async fn verify(
        &self,
        username: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Arc<User>, SignInError> {
        let now = self.clock.now();
        let keys = self.policy.keys(username, peer);
        // Every key must let the attempt through; one that refuses gives the others' slots back
        // (dropped attempts count as neither success nor failure).
        let attempts = keys
            .iter()
            .map(|(key, policy)| self.throttle.begin(key, now, *policy))
            .collect::<Result<Vec<Attempt<'_>>, _>>()
            .map_err(SignInError::Throttled)?;
        if let Some(store) = &self.shared {
            take_shared(store.as_ref(), &keys, now).await?;
        }
        let outcome = self.judge(username, password).await;
        let settled = match &outcome {
            Ok(_) => Settled::Succeeded,
            Err(SignInError::Invalid) => Settled::Failed,
            Err(_) => Settled::Undecided,
        };
        let finished = self.clock.now();
        for attempt in attempts {
            match settled {
                Settled::Succeeded => attempt.succeeded(),
                Settled::Failed => attempt.failed(finished),
                // Dropped: neither success nor failure.
                Settled::Undecided => drop(attempt),
            }
        }
        if let Some(store) = &self.shared {
            settle_shared(store.as_ref(), &keys, settled).await;
        }
        outcome
    }

    /// Looks the user up and verifies the password, whatever else is wrong, so that every
    /// failure takes as long.
    async fn judge(&self, username: &str, password: &str) -> Result<Arc<User>, SignInError> {
        let user = self
            .users
            .by_username(username)
            .await
            .map_err(SignInError::Unavailable)?;
        let hash = user.as_ref().map_or(&self.dummy, |u| &u.password);
        let matched = self.hasher.verify_password(hash, password).await;
        match user {
            Some(user) if matched && user.enabled => Ok(user),
            _ => Err(SignInError::Invalid),
        }
    }

    /// The user with this subject, if any (refresh and userinfo).
    pub(crate) async fn user(&self, subject: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        self.users.by_subject(subject).await
    }

    /// Forgets throttle records that have been quiet long enough.
    pub(crate) fn forget_quiet(&self, now: UnixMillis) {
        self.throttle.forget_quiet(now);
    }
}

/// Counts the attempt against every key in the shared store, in order, or says how long to wait.
/// A key that refuses (or a store that fails) gives back what the keys before it counted, so an
/// attempt refused at its address is not counted against the user's ceiling.
async fn take_shared(
    store: &dyn SharedStore,
    keys: &[(String, ThrottlePolicy)],
    now: UnixMillis,
) -> Result<(), SignInError> {
    for (taken, (key, policy)) in keys.iter().enumerate() {
        // Fail closed: without the shared count, an attempt here could be one too many.
        let blocked = match store.throttle_take(key, now, *policy).await {
            Ok(blocked) => blocked,
            Err(e) => {
                settle_shared(store, &keys[..taken], Settled::Undecided).await;
                return Err(SignInError::Unavailable(DirectoryError::new(e.to_string())));
            }
        };
        if let Some(until) = blocked {
            settle_shared(store, &keys[..taken], Settled::Undecided).await;
            let wait = Duration::from_millis(until.0.saturating_sub(now.0).max(0) as u64);
            return Err(SignInError::Throttled(wait.max(Duration::from_secs(1))));
        }
    }
    Ok(())
}

/// Settles a shared attempt on every key it was counted against.
async fn settle_shared(
    store: &dyn SharedStore,
    keys: &[(String, ThrottlePolicy)],
    settled: Settled,
) {
    for (key, policy) in keys {
        if let Err(e) = store.throttle_settle(key, settled, *policy).await {
            // The attempt stays counted as a failure: the safe side.
            tracing::warn!(error = %e, "cannot settle a sign-in attempt in the shared throttle");
        }
    }
}
