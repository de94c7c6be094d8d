//! TLS for every connection a tollgate program accepts or makes, with rustls on the aws-lc-rs
//! provider the workspace already uses:
//!
//! * [`pem`]: certificates, private keys and CA bundles read from PEM files, with errors that
//!   are one line naming the file.
//! * [`server`]: a listener's `[tls]` table ([`TlsTable`], checked by [`server::tls`] into a
//!   [`ServerTls`]) and the rustls server configuration its files make: certificates chosen by
//!   SNI, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, client certificates.
//! * [`TlsAcceptor`]: what a [`Listener`](crate::connection::Listener) serves TLS with, its
//!   certificates swapped by a reload, its handshake failures counted.
//! * [`reload`]: reloading on SIGHUP and when the files change, without dropping a connection.
//! * `testing` (feature `test-util`): certificates for tests.

mod acceptor;
pub mod pem;
pub mod reload;
pub mod server;
#[cfg(feature = "test-util")]
pub mod testing;

pub use acceptor::{TlsAcceptor, TlsStats};
pub use server::{ClientAuth, ServerTls, TlsTable};

/// The crypto provider every TLS configuration here is built with: aws-lc-rs, whatever other
/// provider a dependency may have compiled in (rustls would refuse to pick one then).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
