//! The network address a request came from, as a request extension.

use std::net::IpAddr;

/// The network address a request came from, as the server that accepted its connection saw it.
///
/// The `tollgate` binary puts it in each request's extensions; so may any program. Readers:
///
/// * the token service throttles failed client authentications per client id *and* address:
///   someone guessing a client's secret from one address then delays only their own guesses,
///   not the client calling from elsewhere (without it, per client id alone);
/// * `tollgate_layer::client_cert::FromTrustedProxy` reads a client certificate from a proxy's
///   header only when this address is one of the trusted proxies (without it, never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub IpAddr);
