//! What one connection may cost before it has sent a request: the limits every tollgate listener
//! applies (`tollgate serve` and `tollgate gateway` alike), and the wait for the first bytes that
//! hyper does not time. Defined in `tollgate-program`, which both programs share.

pub use tollgate_program::connection::{Limits, first_bytes};
