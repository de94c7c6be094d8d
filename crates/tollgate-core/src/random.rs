//! Unguessable identifiers and opaque tokens: random bytes from the system generator, base64url.
//!
//! One home for randomness, so that every token id, grant id and refresh token in tollgate is
//! made the same way.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// 128 random bits, base64url (22 characters): unique without coordination and unguessable.
/// Used for `jti` and grant ids.
pub fn id() -> String {
    base64url::<16>()
}

/// 256 random bits, base64url (43 characters): an opaque bearer secret such as a refresh token.
pub fn secret() -> String {
    base64url::<32>()
}

fn base64url<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    // The system RNG failing is not recoverable; aws-lc aborts on it internally anyway.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_and_secrets_have_their_length_and_differ() {
        assert_eq!(super::id().len(), 22);
        assert_eq!(super::secret().len(), 43);
        assert_ne!(super::id(), super::id());
        assert_ne!(super::secret(), super::secret());
    }
}
