//! TLS for every connection a tollgate program accepts or makes, with rustls on the aws-lc-rs
//! provider the workspace already uses:
//!
//! * [`pem`]: certificates, private keys and CA bundles read from PEM files, with errors that
//!   are one line naming the file;
//! * [`client`]: connections the programs make (the gateway's `https://` upstreams): trust,
//!   client certificates, ALPN, the handshake.

pub mod client;
pub mod pem;

/// The crypto provider every TLS configuration here is built with: aws-lc-rs, whatever other
/// provider a dependency may have compiled in (rustls would refuse to pick one then).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
