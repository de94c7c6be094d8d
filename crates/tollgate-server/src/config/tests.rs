//! The configuration's checks, one behaviour each.

use super::file::default_listen;
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    super::parse(text, Path::new("t.toml"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn errors_name_the_key_and_the_line() {
    let text = "issuer = \"http://x\"\n\n[[clients]]\nid = \"a\"\ngrants = \"password\"\n";
    let err = error(text);
    assert!(err.starts_with("t.toml:5:"), "{err}");
    assert!(err.contains("clients[0].grants"), "{err}");

    let err = error("issuer = \"x\"\nlisten = \"nowhere\"\n");
    assert!(err.starts_with("t.toml:2:"), "{err}");
    assert!(err.contains("listen"), "{err}");

    let err = error("issuer = \"x\"\nlsten = 1\n");
    assert!(err.contains("t.toml:2:") && err.contains("lsten"), "{err}");

    let err = error("issuer = \n");
    assert!(err.starts_with("t.toml:1:"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn defaults_apply() {
    let config = parse("issuer = \"http://x\"\n").unwrap();
    assert_eq!(config.listen, default_listen());
    assert_eq!(config.store, StoreKind::Sqlite);
    assert_eq!(config.tokens.access_token_lifetime, 300);
    assert_eq!(config.admin_role, "admin");
    assert_eq!(config.data_dir, Path::new("./data"));
    assert_eq!(
        config.header_read_timeout(),
        Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT)
    );
    assert_eq!(config.max_connections(), DEFAULT_MAX_CONNECTIONS);
}

#[test]
fn paths_are_relative_to_the_file() {
    let config = super::parse(
        "issuer = \"http://x\"\ndata_dir = \"d\"\n[[keys]]\nkid = \"k\"\nalgorithm = \"EdDSA\"\nfile = \"k.der\"\nsigning = true\n",
        Path::new("/etc/tollgate/tollgate.toml"),
    )
    .unwrap();
    assert_eq!(config.data_dir, Path::new("/etc/tollgate/d"));
    assert_eq!(config.keys[0].path, Path::new("/etc/tollgate/k.der"));
}

#[test]
fn server_limits_are_checked() {
    let config =
        parse("issuer = \"x\"\n[server]\nheader_read_timeout = 3\nmax_connections = 7\n").unwrap();
    assert_eq!(config.header_read_timeout(), Duration::from_secs(3));
    assert_eq!(config.max_connections(), 7);
    let err = error("issuer = \"x\"\n[server]\nheader_read_timeout = 0\n");
    assert!(
        err.starts_with("t.toml:3:") && err.contains("server.header_read_timeout"),
        "{err}"
    );
    let err = error("issuer = \"x\"\n[server]\nmax_connections = 0\n");
    assert!(
        err.starts_with("t.toml:3:") && err.contains("server.max_connections"),
        "{err}"
    );
    let err = error("issuer = \"x\"\n[server]\nmax_connections = \"a\"\n");
    assert!(
        err.starts_with("t.toml:3:19: server.max_connections: invalid type"),
        "a spanned value is named by its key alone: {err}"
    );
    let err = error("issuer = \"x\"\n[server]\nmax_conections = 1\n");
    assert!(err.contains("max_conections"), "{err}");
}

#[test]
fn the_sign_in_throttle_is_one_of_three_and_both_by_default() {
    let config = parse("issuer = \"x\"\n").unwrap();
    assert_eq!(config.sign_in_throttle, SignInThrottle::Both);
    for (name, policy) in [
        ("username", SignInThrottle::Username),
        ("username_and_address", SignInThrottle::UsernameAndAddress),
        ("both", SignInThrottle::Both),
    ] {
        let config = parse(&format!(
            "issuer = \"x\"\n[sign_in]\nthrottle = \"{name}\"\n"
        ))
        .unwrap();
        assert_eq!(config.sign_in_throttle, policy);
    }
    let err = error("issuer = \"x\"\n[sign_in]\nthrottle = \"per_ip\"\n");
    assert_eq!(
        err,
        "t.toml:3:12: sign_in.throttle: unknown sign-in throttle `per_ip` \
         (username, username_and_address, both)"
    );
    let err = error("issuer = \"x\"\n[sign_in]\nthrottle = 1\n");
    assert!(
        err.starts_with("t.toml:3:12: sign_in.throttle: invalid type"),
        "{err}"
    );
    let err = error("issuer = \"x\"\n[sign_in]\nthrotle = \"both\"\n");
    assert!(err.contains("throtle"), "{err}");
}

#[test]
fn the_tenant_list_restricts() {
    let err = error("issuer = \"x\"\ntenants = [\"/\", \"/A\"]\n");
    assert!(err.starts_with("t.toml:2:") && err.contains("`/`"), "{err}");
    let users = "issuer = \"x\"\ntenants = [\"/A\"]\n[[users]]\nusername = \"u\"\n\
                 password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$0HYi9wEY6gDoEsnZPMKZdw$RwOZH9IwvdSZolfZP5A/5Bm/pAiOfdHr5en/ZMcoGSg\"\n";
    assert!(parse(&format!("{users}tenants = [\"/A/B\", \"/\"]\n")).is_ok());
    let err = error(&format!("{users}tenants = [\"/B\"]\n"));
    assert!(
        err.contains("users[0].tenants") && err.contains("`/B` is not declared"),
        "{err}"
    );
}

#[test]
fn keys_are_checked_without_reading_them() {
    let key = "[[keys]]\nkid = \"k\"\nalgorithm = \"EdDSA\"\nfile = \"missing.der\"\n";
    let err = error(&format!("issuer = \"x\"\n{key}"));
    assert!(err.contains("signing = true"), "{err}");
    let err = error(&format!(
        "issuer = \"x\"\n{key}signing = true\n{key}signing = true\n"
    ));
    assert!(err.contains("keys[1].signing"), "{err}");
    let err = error(
        "issuer = \"x\"\n[[keys]]\nkid = \"k\"\nalgorithm = \"HS256\"\nfile = \"f\"\nsigning = true\n",
    );
    assert!(err.contains("keys[0].algorithm"), "{err}");
}

#[test]
fn replication_through_sentinel_or_cluster() {
    let table = "issuer = \"x\"\n[replication]\n";
    let config = parse(&format!(
        "{table}redis_url = \"redis+sentinel://:pw@10.0.0.1,10.0.0.2:26380/main\"\n"
    ))
    .unwrap();
    let target = config.replication().unwrap().target();
    assert_eq!(
        target.to_string(),
        "redis+sentinel://:***@10.0.0.1,10.0.0.2:26380/main"
    );
    assert_eq!(
        target.replica_acks().replicas,
        1,
        "WAIT for one replica by default"
    );
    let config = parse(&format!(
        "{table}redis_url = \"redis+cluster://n1:7000,n2:7001\"\nmin_replicas_acked = 2\n"
    ))
    .unwrap();
    assert_eq!(
        config
            .replication()
            .unwrap()
            .target()
            .replica_acks()
            .replicas,
        2
    );
    let err = error(&format!(
        "{table}redis_url = \"redis+sentinel://:secret@h1,h2\"\n"
    ));
    assert!(
        err.starts_with("t.toml:3:") && err.contains("name the primary"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    let err = error(&format!(
        "{table}redis_url = \"redis://h/\"\nmin_replicas_acked = 65\n"
    ));
    assert!(
        err.starts_with("t.toml:4:") && err.contains("replication.min_replicas_acked"),
        "{err}"
    );
}

#[test]
fn replication_is_optional_and_checked() {
    assert!(parse("issuer = \"x\"\n").unwrap().replication().is_none());
    let config =
        parse("issuer = \"x\"\n[replication]\nredis_url = \"redis://:pw@127.0.0.1:6390/\"\n")
            .unwrap();
    let replication = config.replication().unwrap();
    assert_eq!(replication.key_prefix(), "tollgate");
    assert_eq!(replication.keys().stream, "{tollgate}:revocations");
    assert_eq!(replication.snapshot_every(), DEFAULT_SNAPSHOT_EVERY);
    assert_eq!(
        replication.target().to_string(),
        "redis://:***@127.0.0.1:6390/"
    );

    let table = "issuer = \"x\"\n[replication]\n";
    let err = error(&format!("{table}redis_url = \"http://:secret@h/\"\n"));
    assert!(
        err.starts_with("t.toml:3:") && err.contains("replication.redis_url"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    let err = error(&format!("{table}key_prefix = \"a\"\n"));
    assert!(err.contains("redis_url"), "{err}");
    let url = "redis_url = \"redis://h/\"\n";
    let err = error(&format!("{table}{url}key_prefix = \"a}}b\"\n"));
    assert!(
        err.starts_with("t.toml:4:") && err.contains("replication.key_prefix"),
        "{err}"
    );
    let err = error(&format!("{table}{url}redis_password = \"x\"\n"));
    assert!(err.contains("redis_password"), "{err}");
    let err = error(&format!(
        "{table}{url}password_env = \"TOLLGATE_TEST_SURELY_UNSET_VARIABLE\"\n"
    ));
    assert!(
        err.starts_with("t.toml:4:") && err.contains("replication.password_env"),
        "{err}"
    );
    let config = parse(&format!(
        "{table}{url}key_prefix = \"eu\"\nsnapshot_every = 0\n"
    ))
    .unwrap();
    let replication = config.replication().unwrap();
    assert_eq!(replication.keys().epoch, "{eu}:epoch");
    assert_eq!(replication.snapshot_every(), 0);
    assert_eq!(replication.on_unreadable(), OnUnreadable::Refuse);
    let config = parse(&format!("{table}{url}on_unreadable = \"skip\"\n")).unwrap();
    assert_eq!(
        config.replication().unwrap().on_unreadable(),
        OnUnreadable::Skip
    );
    let err = error(&format!("{table}{url}on_unreadable = \"ignore\"\n"));
    assert!(
        err.starts_with("t.toml:4:") && err.contains("replication.on_unreadable"),
        "{err}"
    );
    let err = error(&format!("{table}{url}ca_file = \"no-such-ca.pem\"\n"));
    assert!(
        err.starts_with("t.toml:4:") && err.contains("replication.ca_file"),
        "{err}"
    );
    let err = error(&format!("{table}{url}ca_file = \"Cargo.toml\"\n"));
    assert!(
        err.contains("replication.ca_file") && err.contains("rediss://"),
        "a CA for a plain-text URL: {err}"
    );
}

#[test]
fn postgres_store_is_checked() {
    let store = "issuer = \"x\"\nstore = \"postgres\"\n";
    let err = error(store);
    assert!(err.contains("[postgres]"), "{err}");
    let table = format!("{store}[postgres]\n");
    let config = parse(&format!(
        "{table}url = \"postgresql://app:inline@db:5433/tg\"\n"
    ))
    .unwrap();
    let postgres = config.postgres.unwrap();
    assert_eq!(postgres.target.to_string(), "postgresql://app@db:5433/tg");
    assert_eq!(postgres.pool_size, DEFAULT_POSTGRES_POOL_SIZE);
    assert!(!format!("{postgres:?}").contains("inline"));

    let err = error(&format!(
        "{table}url = \"postgresql://app:secret@h/db?nope=1\"\n"
    ));
    assert!(
        err.starts_with("t.toml:4:") && err.contains("postgres.url"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    let url = "url = \"postgresql://app@h/db\"\n";
    let err = error(&format!(
        "{table}{url}password_env = \"TOLLGATE_TEST_SURELY_UNSET_VARIABLE\"\n"
    ));
    assert!(
        err.starts_with("t.toml:5:") && err.contains("postgres.password_env"),
        "{err}"
    );
    let err = error(&format!("{table}{url}pool_size = 3\n"));
    assert!(
        err.starts_with("t.toml:5:") && err.contains("postgres.pool_size"),
        "{err}"
    );
    let err = error(&format!("{table}{url}password = \"x\"\n"));
    assert!(err.contains("password"), "{err}");
    let err = error(&format!("issuer = \"x\"\n[postgres]\n{url}"));
    assert!(
        err.starts_with("t.toml:3:") && err.contains("store"),
        "a [postgres] table the store ignores: {err}"
    );
}

#[test]
fn metrics_are_off_unless_configured() {
    assert_eq!(parse("issuer = \"x\"\n").unwrap().metrics_listen(), None);
    let config = parse("issuer = \"x\"\n[metrics]\n").unwrap();
    assert_eq!(config.metrics_listen(), Some(DEFAULT_METRICS_LISTEN));
    let config = parse("issuer = \"x\"\n[metrics]\nlisten = \"0.0.0.0:9100\"\n").unwrap();
    assert_eq!(
        config.metrics_listen(),
        Some("0.0.0.0:9100".parse().unwrap())
    );

    let err = error("issuer = \"x\"\n[metrics]\nlisten = \"localhost\"\n");
    assert!(
        err.starts_with("t.toml:3:10: metrics.listen: invalid socket address"),
        "{err}"
    );
    let err = error("issuer = \"x\"\n[metrics]\nport = 9464\n");
    assert!(
        err.starts_with("t.toml:3:") && err.contains("port"),
        "{err}"
    );
    let err = error(
        "issuer = \"x\"\nlisten = \"127.0.0.1:8080\"\n[metrics]\nlisten = \"127.0.0.1:8080\"\n",
    );
    assert!(
        err.starts_with("t.toml:4:") && err.contains("metrics.listen: must differ"),
        "{err}"
    );
}

#[test]
fn odd_input_is_an_error_not_a_panic() {
    for text in [
        "",
        "issuer = \"\"",
        "\u{feff}issuer = \"x\"\nlisten = 5",
        "issuer = \"é\"\n[tokens]\naccess_token_lifetime = 0\n",
        "issuer = \"x\"\n[[users]]\nusername = \"ü\"\npassword_hash = \"ü\"\n",
        "issuer = \"x\"\n[server]\nmax_connections = -1\n",
        "issuer = \"x\"\n[server]\nheader_read_timeout = 18446744073709551615\n",
    ] {
        let err = error(text);
        assert!(err.starts_with("t.toml"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn shared_signals_leave_this_servers_tokens_and_paths_alone_and_need_replication() {
    // PATH: a variable every process has (a test cannot set one: no unsafe code).
    let table = |transmitter: &str, extra: &str| {
        format!(
            "issuer = \"http://x\"\n[[shared_signals]]\ntransmitter = \"{transmitter}\"\n\
             audience = \"a\"\nbearer_token_env = \"PATH\"\n{extra}"
        )
    };
    let provider = "token_issuers = [\"https://id.example\"]\n";
    for (text, wanted) in [
        (
            table("https://ssf.example", "token_issuers = [\"http://x\"]\n"),
            "shared_signals[0].token_issuers: `http://x` is this server's own issuer",
        ),
        (
            table("http://x", ""),
            "not set, so it is the transmitter `http://x`, which is this server's own issuer",
        ),
        (
            table(
                "https://ssf.example",
                &format!(
                    "{provider}delivery = \"push\"\npush_path = \"/connect/token\"\n\
                     push_url = \"https://x.example/connect/token\"\n"
                ),
            ),
            "shared_signals[0].push_path: is the token service's /connect/token",
        ),
    ] {
        let err = error(&text);
        assert!(err.contains(wanted), "{text}\n=> {err}");
    }

    let alone = parse(&table("https://ssf.example", provider)).unwrap();
    let err = alone.check_shared_signals_replicated().unwrap_err();
    assert!(err.contains("shared_signals: needs [replication]"), "{err}");
    let replicated = format!(
        "{}[replication]\nredis_url = \"redis://127.0.0.1:6379/\"\n",
        table("https://ssf.example", provider)
    );
    assert!(
        parse(&replicated)
            .unwrap()
            .check_shared_signals_replicated()
            .is_ok()
    );
    let mut through_redis = alone;
    through_redis
        .replicate_through("redis://127.0.0.1:6379/")
        .unwrap();
    assert!(through_redis.check_shared_signals_replicated().is_ok());
}

/// The client `svc` of `config`'s directory.
fn svc(config: &Config) -> std::sync::Arc<tollgate_issuer::Client> {
    use tollgate_issuer::Clients;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(config.directory.client("svc"))
        .unwrap()
        .unwrap()
}

#[test]
fn mutual_tls_clients_are_checked() {
    let client = |extra: &str| {
        format!(
            "issuer = \"http://x\"\n[[clients]]\nid = \"svc\"\ngrants = [\"client_credentials\"]\n{extra}"
        )
    };
    let config = parse(&client(
        "token_endpoint_auth_method = \"tls_client_auth\"\n\
         tls_client_auth_subject_dn = \"CN=svc,O=Example,C=SE\"\n",
    ))
    .unwrap();
    let registered = svc(&config);
    assert!(registered.binds_tokens());
    assert_eq!(
        registered.authentication,
        ClientAuthentication::TlsClientAuth(CertificateName::SubjectDn(
            SubjectDn::parse("cn=svc, o=Example, c=SE").unwrap()
        ))
    );
    let x5t = "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0";
    let config = parse(&client(&format!(
        "token_endpoint_auth_method = \"self_signed_tls_client_auth\"\n\
         certificate_thumbprints = [\"{x5t}\"]\n"
    )))
    .unwrap();
    assert_eq!(
        svc(&config).authentication,
        ClientAuthentication::SelfSignedTlsClientAuth(vec![x5t.to_owned()])
    );
    let config = parse(&client(
        "secret_env = \"HOME\"\ntls_client_certificate_bound_access_tokens = true\n",
    ))
    .unwrap();
    let client_with_secret = svc(&config);
    assert!(client_with_secret.certificate_bound_access_tokens);
    assert_eq!(
        client_with_secret.authentication,
        ClientAuthentication::Secret
    );

    for (extra, expected) in [
        (
            "token_endpoint_auth_method = \"tls_client_auth\"\n",
            "clients[0].token_endpoint_auth_method: tls_client_auth needs exactly one",
        ),
        (
            "token_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_san_dns = \"a\"\ntls_client_auth_san_uri = \"b\"\n",
            "tls_client_auth needs exactly one",
        ),
        (
            "token_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_subject_dn = \"svc\"\n",
            "clients[0].tls_client_auth_subject_dn: not an RFC 4514",
        ),
        (
            "token_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_san_ip = \"host\"\n",
            "clients[0].tls_client_auth_san_ip: not an IP address",
        ),
        (
            "token_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_san_dns = \"a\"\nsecret_env = \"HOME\"\n",
            "has no secret",
        ),
        (
            "token_endpoint_auth_method = \"self_signed_tls_client_auth\"\n",
            "clients[0].certificate_thumbprints: self_signed_tls_client_auth needs",
        ),
        (
            "token_endpoint_auth_method = \"self_signed_tls_client_auth\"\ncertificate_thumbprints = [\"abc\"]\n",
            "clients[0].certificate_thumbprints: each must be",
        ),
        (
            "token_endpoint_auth_method = \"private_key_jwt\"\n",
            "clients[0].token_endpoint_auth_method: unknown method `private_key_jwt`",
        ),
        (
            "secret_env = \"HOME\"\ntls_client_auth_san_dns = \"a\"\n",
            "clients[0].tls_client_auth_san_dns: only for",
        ),
    ] {
        let err = error(&client(extra));
        assert!(err.contains(expected), "{extra}\n got: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
