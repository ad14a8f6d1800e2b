//! The embedded server's APIs (issue 22): each has its own origin and audience; the
//! token endpoint issues a token for one when the refresh names it (RFC 8707
//! `resource`); an API accepts only its own tokens, and answers `403
//! insufficient_scope` naming the scope to a token without the scope it requires.

use std::time::Duration;

use silent_refresh_testkit::server::{AuthServer, ServerConfig};

fn refresh(server: &AuthServer, refresh_token: &str, resource: Option<&str>) -> (String, String) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    let config = server.config();
    let secret = config.client_secret.clone().unwrap_or_default();
    let mut answer = ureq::post(server.token_url())
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{}:{secret}", config.client_id)
                )
            ),
        )
        .send_form(form)
        .expect("a token");
    let json: serde_json::Value =
        serde_json::from_str(&answer.body_mut().read_to_string().expect("a body")).expect("JSON");
    (
        json["access_token"].as_str().expect("access").to_owned(),
        json["refresh_token"].as_str().expect("refresh").to_owned(),
    )
}

fn status(url: &str, token: &str) -> (u16, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let answer = agent
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .call()
        .expect("an answer");
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (answer.status().as_u16(), challenge)
}

#[test]
fn each_api_takes_only_its_own_tokens_and_names_a_missing_scope() {
    let server = AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(60),
        ..ServerConfig::default()
    })
    .expect("the server starts");
    let billing = server.start_api(None).expect("an API");
    let admin = server.start_api(Some("admin")).expect("another API");
    let grant = server.sign_in(Some("api:read"));

    let (main_token, rt) = refresh(&server, &grant.refresh_token, None);
    let (billing_token, rt) = refresh(&server, &rt, Some(billing.audience()));
    let (admin_token, _) = refresh(&server, &rt, Some(admin.audience()));

    assert_eq!(status(&server.resource_url(), &main_token).0, 200);
    assert_eq!(status(&billing.resource_url(), &billing_token).0, 200);
    // Another API's token, or the main resource's, is refused as invalid.
    assert_eq!(status(&billing.resource_url(), &main_token).0, 401);
    assert_eq!(status(&billing.resource_url(), &admin_token).0, 401);
    assert_eq!(status(&server.resource_url(), &billing_token).0, 401);
    // The admin API requires a scope no grant has: 403, naming it.
    let (code, challenge) = status(&admin.resource_url(), &admin_token);
    assert_eq!(code, 403);
    let challenge = challenge.expect("a challenge");
    assert!(challenge.contains("insufficient_scope") && challenge.contains("scope=\"admin\""));

    let billing_stats = billing.take_stats();
    assert_eq!((billing_stats.ok, billing_stats.wrong_audience), (1, 2));
    assert_eq!(admin.take_stats().insufficient_scope, 1);
    assert_eq!(server.take_stats().wrong_audience, 1);
}

#[test]
fn a_resource_the_server_does_not_know_is_refused_with_invalid_target() {
    let server = AuthServer::start(ServerConfig::default()).expect("the server starts");
    let grant = server.sign_in(None);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let config = server.config();
    let mut answer = agent
        .post(server.token_url())
        .send_form([
            ("grant_type", "refresh_token"),
            ("refresh_token", grant.refresh_token.as_str()),
            ("resource", "https://unknown.example/"),
            ("client_id", config.client_id.as_str()),
            (
                "client_secret",
                config.client_secret.as_deref().unwrap_or_default(),
            ),
        ])
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 400);
    let body = answer.body_mut().read_to_string().expect("a body");
    assert!(body.contains("invalid_target"), "{body}");
}
