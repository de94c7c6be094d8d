//! The `tollgate` program as a library: the configuration file ([`config`]), `tollgate serve`
//! ([`serve`]), and the command line ([`cli`]). The `tollgate` binary is [`cli::main`].
//!
//! To check configuration text the way `tollgate serve` does, without touching the disk, call
//! [`config::parse`].
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod serve;
mod setup;
