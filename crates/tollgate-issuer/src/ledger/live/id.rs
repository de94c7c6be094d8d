//! Token and grant ids as tollgate makes them (`random::id`: 16 random bytes as 22 characters of
//! base64url), held as their 16 bytes rather than as text: less than half the size, no heap.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How long a tollgate id's text is.
const TEXT_LEN: usize = 22;

/// A 128-bit id. Bytes rather than `u128`, whose 16-byte alignment would pad the records that
/// hold one beside 4- and 8-byte fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Id128([u8; 16]);

impl Id128 {
    /// The id `text` is, if it is exactly what `random::id` makes of 16 bytes. Any other text
    /// (another issuer's UUID, a longer or shorter id, base64 with padding or stray trailing
    /// bits) is `None` and must be kept as text: only the canonical encoding turns back into the
    /// same text, which is what revocation lookups compare.
    pub(super) fn parse(text: &str) -> Option<Id128> {
        if text.len() != TEXT_LEN {
            return None;
        }
        // `decode_slice` wants room for its estimate (18 bytes for 22 characters).
        let mut bytes = [0u8; 18];
        // The engine refuses padding and non-zero trailing bits, so decoding is one-to-one: the
        // 16 bytes encode back to exactly `text` (the tests check it).
        let written = URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()?;
        if written != 16 {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[..16]);
        Some(Id128(id))
    }

    /// The id's text, written into `buf` (no allocation: the batch count encodes every live id).
    pub(super) fn text<'b>(&self, buf: &'b mut [u8; TEXT_LEN]) -> &'b str {
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.0, buf)
            .expect("16 bytes are 22 base64url characters");
        std::str::from_utf8(&buf[..written]).expect("base64url is ASCII")
    }

    /// Calls `f` with the id's text.
    pub(super) fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let mut buf = [0u8; TEXT_LEN];
        f(self.text(&mut buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tollgate_ids_round_trip() {
        for _ in 0..1000 {
            let text = tollgate_core::random::id();
            let id = Id128::parse(&text).expect("a tollgate id");
            assert_eq!(id.with_text(str::to_owned), text);
        }
        let zero = "AAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(Id128::parse(zero), Some(Id128([0; 16])));
        let ones = "_____________________w";
        assert_eq!(Id128::parse(ones), Some(Id128([0xff; 16])));
    }

    #[test]
    fn other_texts_stay_text() {
        for foreign in [
            "",
            "a1",
            "0b7c6a1e-2f3d-4c5b-8a9e-1f2e3d4c5b6a",
            // Non-zero trailing bits: would decode to the same bytes as "...A".
            "AAAAAAAAAAAAAAAAAAAAAB",
            "AAAAAAAAAAAAAAAAAAAAA=",
            // Standard base64 alphabet, not base64url.
            "+AAAAAAAAAAAAAAAAAAAAA",
            // 23 and 21 characters.
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA",
            // 22 bytes but not 22 characters.
            "AAAAAAAAAAAAAAAAAAAé",
        ] {
            assert_eq!(Id128::parse(foreign), None, "{foreign:?}");
        }
    }
}
