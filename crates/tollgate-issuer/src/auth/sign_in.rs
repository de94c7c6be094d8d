//! Password sign-in (the legacy password grant): the throttle first, then the user directory and
//! the password hash, verified whatever else is wrong so that every failure takes as long.

use super::secret::{Hasher, InvalidHash, PasswordHash};
use super::throttle::Throttle;
use crate::directory::{DirectoryError, User, Users};
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
            clock,
            dummy,
        })
    }

    /// The enabled user `username` whose password is `password`.
    pub(crate) async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Arc<User>, SignInError> {
        let attempt = self
            .throttle
            .begin(username, self.clock.now())
            .map_err(SignInError::Throttled)?;
        let user = self
            .users
            .by_username(username)
            .await
            .map_err(SignInError::Unavailable)?;
        // The hash is verified whatever else is wrong, so that every failure takes as long.
        let hash = user.as_ref().map_or(&self.dummy, |u| &u.password);
        let matched = self.hasher.verify_password(hash, password).await;
        match user {
            Some(user) if matched && user.enabled => {
                attempt.succeeded();
                Ok(user)
            }
            _ => {
                attempt.failed(self.clock.now());
                Err(SignInError::Invalid)
            }
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
