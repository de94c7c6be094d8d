//! The HTTP side of OAuth shared by every endpoint: bounded bodies, form parameters, and the
//! shapes of answers and errors.

pub(crate) mod form;
pub(crate) mod response;

/// The longest identifier (username, client id, subject) accepted from a request. Identifiers are
/// kept after a request ends (throttle records, cutoffs), so their length is bounded where they
/// enter: a guesser cannot grow memory with long names.
pub(crate) const MAX_IDENTIFIER_LEN: usize = 256;
