//! The `tollgate` program as a library: the configuration file ([`config`]), `tollgate serve`
//! ([`serve`], with its `[replication]` through Redis and its `[[shared_signals]]` receivers
//! committing through the store; the limits every listener applies are
//! `tollgate_program::connection`'s), its Prometheus metrics (`[metrics]`), and the command line
//! ([`cli`], `tollgate revoke` included). The `tollgate` binary is [`cli::main`].
//!
//! To check configuration text the way `tollgate serve` does, without touching the disk, call
//! [`config::parse`].

pub mod cli;
pub mod config;
mod metrics;
mod migrate;
mod replication;
mod revoke;
pub mod serve;
mod setup;
mod signals;
