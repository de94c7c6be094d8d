//! Who is asking: client authentication and password sign-in with its throttle (the secrets both
//! verify against are [`crate::secret`]'s).

mod client;
mod mtls;
mod sign_in;
mod sign_in_throttle;
mod throttle;

pub use client::PeerAddr;
pub(crate) use client::{ClientAuthenticator, binding};
pub use mtls::{InvalidSubjectDn, SubjectDn};
pub(crate) use sign_in::{SignIn, SignInError};
pub use sign_in_throttle::{SignInThrottle, UnknownSignInThrottle};
