//! Tokens are issued only for tenants that exist: the configuration's `tenants`, the tenants below
//! them, and the root. A client or user of the root tenant may act in every tenant, but naming
//! one that was never declared is `400 invalid_request`, with either grant.

mod support;

use support::*;

async fn token_request(
    server: &Server,
    client: (&str, &str),
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    post_form(&http(), &server.url("/connect/token"), client, form).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_tenant_client_or_user_gets_no_token_for_an_undeclared_tenant() {
    let dir = tempfile::tempdir().unwrap();
    // The demo configuration declares /Acme, /Acme/EU and /Globex; `svc` and `admin` are of `/`.
    let server = Server::start(dir.path(), &config(dir.path()));
    let cc = |tenant: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("tenant_path", tenant),
        ]
    };
    let password = |tenant: &'static str, password: &'static str| {
        [
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", password),
            ("tenant_path", tenant),
        ]
    };

    for tenant in ["/Nope", "/Acmex", "/Nope/Acme"] {
        let (status, body) = token_request(&server, SVC, &cc(tenant)).await;
        assert_eq!(status, 400, "client_credentials for {tenant}: {body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("tenant_path")),
            "{body}"
        );
        let (status, body) =
            token_request(&server, INTEGRATION, &password(tenant, "admin-password")).await;
        assert_eq!(status, 400, "password for {tenant}: {body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
    // Answered before any password is verified: a wrong one gets the same answer, so it tells a
    // guesser nothing about the user.
    let (status, body) = token_request(&server, INTEGRATION, &password("/Nope", "wrong")).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &"invalid_request".into()),
        "{body}"
    );

    // Declared tenants, their sub-tenants and the root are served as before.
    for tenant in ["/", "/Acme", "/Acme/EU", "/Acme/EU/Paris", "/Globex"] {
        let (status, body) = token_request(&server, SVC, &cc(tenant)).await;
        assert_eq!(status, 200, "client_credentials for {tenant}: {body}");
        let (status, body) =
            token_request(&server, INTEGRATION, &password(tenant, "admin-password")).await;
        assert_eq!(status, 200, "password for {tenant}: {body}");
    }
    server.stop();
}
