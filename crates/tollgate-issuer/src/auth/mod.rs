//! Who is asking: client authentication, password sign-in with its throttle, and the secrets both
//! verify against.

mod client;
pub(crate) mod secret;
mod sign_in;
mod sign_in_throttle;
mod throttle;

pub(crate) use client::ClientAuthenticator;
pub use client::PeerAddr;
pub(crate) use sign_in::{SignIn, SignInError};
pub use sign_in_throttle::{SignInThrottle, UnknownSignInThrottle};
