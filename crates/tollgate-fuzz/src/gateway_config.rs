//! Target `gateway_config` (feature `gateway`): the text of a `gateway.toml`, through
//! `tollgate_gateway::config::parse` (key files it names are read relative to the working
//! directory; nothing is fetched or bound).

use std::path::Path;

/// The input (UTF-8, else ignored) is the text of a configuration file named `fuzz.toml`.
///
/// Panics if parsing panics or is not deterministic, if an error is not one line naming the
/// file (`fuzz.toml[:line:column]: key: message`), or if an accepted configuration serves no
/// connection or no worker.
pub fn gateway_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let first = tollgate_gateway::config::parse(text, path);
    let second = tollgate_gateway::config::parse(text, path);
    match (&first, &second) {
        (Ok(config), Ok(again)) => {
            assert_eq!(config.listen(), again.listen());
            assert_eq!(config.ops_listen(), again.ops_listen());
            assert!(
                (1..=1024).contains(&config.workers()),
                "{}",
                config.workers()
            );
        }
        (Err(error), Err(again)) => {
            crate::check_config_error(&error.to_string(), &again.to_string());
        }
        _ => panic!("parse is not deterministic: {first:?} then {second:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_is_judged() {
        gateway_config(include_bytes!("../../../contrib/gateway.toml"));
        gateway_config(include_bytes!("../../../examples/gateway-issuers.toml"));
        gateway_config(b"issuer = 1");
        gateway_config(b"");
    }
}
