//! Password sign-in (the legacy password grant): the throttle first, then the user directory and
//! the password hash, verified whatever else is wrong so that every failure takes as long.

use super::secret::{Hasher, InvalidHash, PasswordHash};
use super::throttle::{POLICY, Throttle};
use crate::directory::{DirectoryError, User, Users};
use crate::store::{Settled, Store};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{Clock, UnixMillis};

/// Why a sign-in failed.
#[derive(Debug)]
pub(crate) enum SignInError {
    /// Too many recent failures for this username: retry after this long.
    Throttled(Duration),
    /// Unknown user, wrong password or disabled user: one answer for all three.
    Invalid,
    /// The user directory failed.
    Unavailable(DirectoryError),
}

/// Verifies users' passwords, throttled per username.
#[derive(Debug)]
pub(crate) struct SignIn {
    users: Arc<dyn Users>,
    hasher: Hasher,
    throttle: Throttle,
    /// A store shared with other replicas, which counts failures across all of them; this
    /// process's own throttle still bounds its concurrent attempts.
    shared: Option<Arc<dyn Store>>,
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
            throttle: Throttle::default(),
            shared: None,
            clock,
            dummy,
        })
    }

    /// Counts failures in `store` too, so that they add up across every replica sharing it.
    pub(crate) fn shared_with(mut self, store: Arc<dyn Store>) -> Self {
        self.shared = Some(store);
        self
    }

    /// The enabled user `username` whose password is `password`.
    pub(crate) async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Arc<User>, SignInError> {
        let now = self.clock.now();
        let attempt = self
            .throttle
            .begin(username, now)
            .map_err(SignInError::Throttled)?;
        if let Some(store) = &self.shared {
            // Fail closed: without the shared count, an attempt here could be one too many.
            let blocked = store
                .throttle_take(username, now, POLICY)
                .await
                .map_err(|e| SignInError::Unavailable(DirectoryError::new(e.to_string())))?;
            if let Some(until) = blocked {
                let wait = Duration::from_millis(until.0.saturating_sub(now.0).max(0) as u64);
                return Err(SignInError::Throttled(wait.max(Duration::from_secs(1))));
            }
        }
        let outcome = self.judge(username, password).await;
        let settled = match &outcome {
            Ok(_) => Settled::Succeeded,
            Err(SignInError::Invalid) => Settled::Failed,
            Err(_) => Settled::Undecided,
        };
        match settled {
            Settled::Succeeded => attempt.succeeded(),
            Settled::Failed => attempt.failed(self.clock.now()),
            // Dropped: neither success nor failure.
            Settled::Undecided => drop(attempt),
        }
        if let Some(store) = &self.shared
            && let Err(e) = store.throttle_settle(username, settled, POLICY).await
        {
            // The attempt stays counted as a failure: the safe side.
            tracing::warn!(error = %e, "cannot settle a sign-in attempt in the shared throttle");
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
