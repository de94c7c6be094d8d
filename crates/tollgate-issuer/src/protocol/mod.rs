//! The HTTP side of OAuth shared by every endpoint: bounded bodies, form parameters, and the
//! shapes of answers and errors.

pub(crate) mod form;
pub(crate) mod response;
