//! Target `config`: the `tollgate serve` configuration file, through
//! `tollgate_server::config::parse` (no disk access).

use std::path::Path;

/// The input (UTF-8, else ignored) is the text of a configuration file named `fuzz.toml`.
///
/// Panics if parsing panics or is not deterministic, or if an error is not one line naming the
/// file (`fuzz.toml[:line:column]: key: message`).
///
/// Whether an error echoes a secret is not checked here: the fuzzer's first crash was that check
/// tripping on a client *id* spelled like an argon2 hash, which the message rightly names (see the
/// test `a_client_id_spelled_like_a_hash_may_be_named`).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let first = tollgate_server::config::parse(text, path);
    let second = tollgate_server::config::parse(text, path);
    match (&first, &second) {
        (Ok(config), Ok(again)) => {
            assert_eq!(config.listen(), again.listen());
            assert_eq!(config.issuer(), again.issuer());
            assert_eq!(config.data_dir(), again.data_dir());
            assert!(
                config.max_connections() > 0,
                "a server that serves no connection"
            );
        }
        (Err(error), Err(again)) => {
            crate::check_config_error(error.message(), again.message());
        }
        _ => panic!("parse is not deterministic: {first:?} then {second:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_configuration_parses() {
        let demo = include_str!("../../../examples/tollgate.toml");
        assert!(tollgate_server::config::parse(demo, Path::new("fuzz.toml")).is_ok());
        config(demo.as_bytes());
        config(b"issuer = 1");
    }

    /// The config target's first crash (fuzz/artifacts/config/crash-26dc75ab…, now
    /// fuzz/corpus/config/regress-client-id-like-a-hash.toml): a harness bug, not a parser bug.
    #[test]
    fn a_client_id_spelled_like_a_hash_may_be_named() {
        let input = include_str!("../../../fuzz/corpus/config/regress-client-id-like-a-hash.toml");
        let error = tollgate_server::config::parse(input, Path::new("fuzz.toml")).unwrap_err();
        assert!(error.message().contains("client `$argon2id"), "{error}");
        config(input.as_bytes());
    }
}
