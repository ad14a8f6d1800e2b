//! Starting a session with the codec against the shapes real providers publish
//! (Google, Microsoft Entra ID, Okta, Auth0, Keycloak: discovery documents and device
//! authorization answers, as their documentation shows them; codes and secrets made
//! up), and properties over arbitrary answers: no secret the flows hold ever reaches
//! an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use silent_refresh::Secret;
use silent_refresh_oauth2::{
    AuthorizationRequest, ClientAuth, DeviceAuthorizationRequest, DevicePoll, Discovery, Error,
    RefreshGrant, RevocationRequest, TokenTypeHint, WellKnown,
};

fn json(status: u16, body: &str) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(body.as_bytes().to_vec())
        .unwrap()
}

/// A provider's discovery document, and what must come out of it.
struct Provider {
    name: &'static str,
    issuer: &'static str,
    well_known: WellKnown,
    url: &'static str,
    document: &'static str,
    token: &'static str,
    device: Option<&'static str>,
    revocation: Option<&'static str>,
    auth: ClientAuth,
    s256: bool,
    iss: bool,
    dpop: &'static [&'static str],
}

const PROVIDERS: &[Provider] = &[
    Provider {
        name: "Google",
        issuer: "https://accounts.google.com",
        well_known: WellKnown::OpenIdConnect,
        url: "https://accounts.google.com/.well-known/openid-configuration",
        document: r#"{
 "issuer": "https://accounts.google.com",
 "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
 "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
 "token_endpoint": "https://oauth2.googleapis.com/token",
 "userinfo_endpoint": "https://openidconnect.googleapis.com/v1/userinfo",
 "revocation_endpoint": "https://oauth2.googleapis.com/revoke",
 "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
 "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
 "subject_types_supported": ["public"],
 "id_token_signing_alg_values_supported": ["RS256"],
 "scopes_supported": ["openid", "email", "profile"],
 "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
 "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"],
 "code_challenge_methods_supported": ["plain", "S256"],
 "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
}"#,
        token: "https://oauth2.googleapis.com/token",
        device: Some("https://oauth2.googleapis.com/device/code"),
        revocation: Some("https://oauth2.googleapis.com/revoke"),
        auth: ClientAuth::Basic,
        s256: true,
        iss: false,
        dpop: &[],
    },
    Provider {
        name: "Microsoft Entra ID",
        issuer: "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
        well_known: WellKnown::OpenIdConnect,
        url: "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0/.well-known/openid-configuration",
        document: r#"{"token_endpoint":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/oauth2/v2.0/token","token_endpoint_auth_methods_supported":["client_secret_post","private_key_jwt","client_secret_basic"],"jwks_uri":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/discovery/v2.0/keys","response_modes_supported":["query","fragment","form_post"],"subject_types_supported":["pairwise"],"id_token_signing_alg_values_supported":["RS256"],"response_types_supported":["code","id_token","code id_token","id_token token"],"scopes_supported":["openid","profile","email","offline_access"],"issuer":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0","request_uri_parameter_supported":false,"userinfo_endpoint":"https://graph.microsoft.com/oidc/userinfo","authorization_endpoint":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/oauth2/v2.0/authorize","device_authorization_endpoint":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/oauth2/v2.0/devicecode","http_logout_supported":true,"frontchannel_logout_supported":true,"end_session_endpoint":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/oauth2/v2.0/logout","claims_supported":["sub","iss","cloud_instance_name","aud","exp","iat","auth_time","acr","nonce","preferred_username","name","tid","ver","at_hash","c_hash","email"],"kerberos_endpoint":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/kerberos","tenant_region_scope":"WW","cloud_instance_name":"microsoftonline.com","cloud_graph_host_name":"graph.windows.net","msgraph_host":"graph.microsoft.com","rbac_url":"https://pas.windows.net"}"#,
        token: "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/oauth2/v2.0/token",
        device: Some(
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/oauth2/v2.0/devicecode",
        ),
        revocation: None,
        auth: ClientAuth::Basic,
        s256: false,
        iss: false,
        dpop: &[],
    },
    Provider {
        name: "Okta",
        issuer: "https://dev-123456.okta.com/oauth2/default",
        well_known: WellKnown::OAuth,
        url: "https://dev-123456.okta.com/.well-known/oauth-authorization-server/oauth2/default",
        document: r#"{"issuer":"https://dev-123456.okta.com/oauth2/default","authorization_endpoint":"https://dev-123456.okta.com/oauth2/default/v1/authorize","token_endpoint":"https://dev-123456.okta.com/oauth2/default/v1/token","registration_endpoint":"https://dev-123456.okta.com/oauth2/v1/clients","jwks_uri":"https://dev-123456.okta.com/oauth2/default/v1/keys","response_types_supported":["code","token","id_token","code id_token","code token","id_token token","code id_token token"],"response_modes_supported":["query","fragment","form_post","okta_post_message"],"grant_types_supported":["authorization_code","implicit","refresh_token","password","client_credentials","urn:ietf:params:oauth:grant-type:device_code","urn:ietf:params:oauth:grant-type:token-exchange"],"subject_types_supported":["public"],"scopes_supported":["openid","profile","email","address","phone","offline_access","device_sso"],"token_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post","client_secret_jwt","private_key_jwt","none"],"claims_supported":["ver","jti","iss","aud","iat","exp","cid","uid","scp","sub"],"code_challenge_methods_supported":["S256"],"introspection_endpoint":"https://dev-123456.okta.com/oauth2/default/v1/introspect","introspection_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post","client_secret_jwt","private_key_jwt","none"],"revocation_endpoint":"https://dev-123456.okta.com/oauth2/default/v1/revoke","revocation_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post","client_secret_jwt","private_key_jwt","none"],"end_session_endpoint":"https://dev-123456.okta.com/oauth2/default/v1/logout","request_parameter_supported":true,"request_object_signing_alg_values_supported":["HS256","HS384","HS512","RS256","RS384","RS512","ES256","ES384","ES512"],"device_authorization_endpoint":"https://dev-123456.okta.com/oauth2/default/v1/device/authorize","pushed_authorization_request_endpoint":"https://dev-123456.okta.com/oauth2/default/v1/par","dpop_signing_alg_values_supported":["RS256","RS384","RS512","ES256","ES384","ES512"]}"#,
        token: "https://dev-123456.okta.com/oauth2/default/v1/token",
        device: Some("https://dev-123456.okta.com/oauth2/default/v1/device/authorize"),
        revocation: Some("https://dev-123456.okta.com/oauth2/default/v1/revoke"),
        auth: ClientAuth::Basic,
        s256: true,
        iss: false,
        dpop: &["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"],
    },
    Provider {
        name: "Auth0",
        // Auth0's issuer ends with a slash; configured without it, it still matches
        // (an empty path is `/`, RFC 3986 §6.2.3).
        issuer: "https://example-tenant.us.auth0.com",
        well_known: WellKnown::OpenIdConnect,
        url: "https://example-tenant.us.auth0.com/.well-known/openid-configuration",
        document: r#"{"issuer":"https://example-tenant.us.auth0.com/","authorization_endpoint":"https://example-tenant.us.auth0.com/authorize","token_endpoint":"https://example-tenant.us.auth0.com/oauth/token","device_authorization_endpoint":"https://example-tenant.us.auth0.com/oauth/device/code","userinfo_endpoint":"https://example-tenant.us.auth0.com/userinfo","mfa_challenge_endpoint":"https://example-tenant.us.auth0.com/mfa/challenge","jwks_uri":"https://example-tenant.us.auth0.com/.well-known/jwks.json","registration_endpoint":"https://example-tenant.us.auth0.com/oidc/register","revocation_endpoint":"https://example-tenant.us.auth0.com/oauth/revoke","scopes_supported":["openid","profile","offline_access","name","given_name","family_name","nickname","email","email_verified","picture","created_at","identities","phone","address"],"response_types_supported":["code","token","id_token","code token","code id_token","token id_token","code token id_token"],"code_challenge_methods_supported":["S256","plain"],"response_modes_supported":["query","fragment","form_post"],"subject_types_supported":["public"],"token_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post","private_key_jwt"],"claims_supported":["aud","auth_time","created_at","email","email_verified","exp","family_name","given_name","iat","identities","iss","name","nickname","phone_number","picture","sub"],"request_uri_parameter_supported":false,"request_parameter_supported":false,"id_token_signing_alg_values_supported":["HS256","RS256","PS256"],"token_endpoint_auth_signing_alg_values_supported":["RS256","RS384","PS256"],"end_session_endpoint":"https://example-tenant.us.auth0.com/oidc/logout","global_token_revocation_endpoint":"https://example-tenant.us.auth0.com/oauth/global-token-revocation/connection/{connectionName}","global_token_revocation_endpoint_auth_methods_supported":["global-token-revocation+jwt"],"dpop_signing_alg_values_supported":["ES256"]}"#,
        token: "https://example-tenant.us.auth0.com/oauth/token",
        device: Some("https://example-tenant.us.auth0.com/oauth/device/code"),
        revocation: Some("https://example-tenant.us.auth0.com/oauth/revoke"),
        auth: ClientAuth::Basic,
        s256: true,
        iss: false,
        dpop: &["ES256"],
    },
    Provider {
        name: "Keycloak",
        issuer: "https://sso.example.com/realms/acme",
        well_known: WellKnown::OpenIdConnect,
        url: "https://sso.example.com/realms/acme/.well-known/openid-configuration",
        document: r#"{"issuer":"https://sso.example.com/realms/acme","authorization_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/auth","token_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/token","introspection_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/token/introspect","userinfo_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/userinfo","end_session_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/logout","frontchannel_logout_session_supported":true,"frontchannel_logout_supported":true,"jwks_uri":"https://sso.example.com/realms/acme/protocol/openid-connect/certs","check_session_iframe":"https://sso.example.com/realms/acme/protocol/openid-connect/login-status-iframe.html","grant_types_supported":["authorization_code","implicit","refresh_token","password","client_credentials","urn:openid:params:grant-type:ciba","urn:ietf:params:oauth:grant-type:device_code"],"acr_values_supported":["0","1"],"response_types_supported":["code","none","id_token","token","id_token token","code id_token","code token","code id_token token"],"subject_types_supported":["public","pairwise"],"id_token_signing_alg_values_supported":["PS384","RS384","EdDSA","ES384","HS256","HS512","ES256","RS256","HS384","ES512","PS256","PS512","RS512"],"response_modes_supported":["query","fragment","form_post","query.jwt","fragment.jwt","form_post.jwt","jwt"],"registration_endpoint":"https://sso.example.com/realms/acme/clients-registrations/openid-connect","token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_basic","client_secret_post","tls_client_auth","client_secret_jwt"],"claims_supported":["aud","sub","iss","auth_time","name","given_name","family_name","preferred_username","email","acr"],"claim_types_supported":["normal"],"claims_parameter_supported":true,"scopes_supported":["openid","offline_access","profile","email","roles"],"request_parameter_supported":true,"request_uri_parameter_supported":true,"require_request_uri_registration":true,"code_challenge_methods_supported":["plain","S256"],"tls_client_certificate_bound_access_tokens":true,"dpop_signing_alg_values_supported":["PS384","RS384","EdDSA","ES384","ES256","RS256","ES512","PS256","PS512","RS512"],"revocation_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/revoke","revocation_endpoint_auth_methods_supported":["private_key_jwt","client_secret_basic","client_secret_post","tls_client_auth","client_secret_jwt"],"backchannel_logout_supported":true,"backchannel_logout_session_supported":true,"device_authorization_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/auth/device","backchannel_token_delivery_modes_supported":["poll","ping"],"backchannel_authentication_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/ext/ciba/auth","require_pushed_authorization_requests":false,"pushed_authorization_request_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/ext/par/request","mtls_endpoint_aliases":{"token_endpoint":"https://sso.example.com/realms/acme/protocol/openid-connect/token"},"authorization_response_iss_parameter_supported":true}"#,
        token: "https://sso.example.com/realms/acme/protocol/openid-connect/token",
        device: Some("https://sso.example.com/realms/acme/protocol/openid-connect/auth/device"),
        revocation: Some("https://sso.example.com/realms/acme/protocol/openid-connect/revoke"),
        auth: ClientAuth::Basic,
        s256: true,
        iss: true,
        dpop: &[
            "PS384", "RS384", "EdDSA", "ES384", "ES256", "RS256", "ES512", "PS256", "PS512",
            "RS512",
        ],
    },
];

#[test]
fn providers_discovery_documents() {
    for provider in PROVIDERS {
        let discovery = Discovery::new(provider.issuer)
            .unwrap()
            .only(provider.well_known);
        let request = discovery.request().unwrap();
        assert_eq!(request.uri(), provider.url, "{}", provider.name);
        let metadata = discovery
            .read_response(provider.well_known, &json(200, provider.document))
            .unwrap_or_else(|e| panic!("{}: {e}", provider.name));
        assert_eq!(
            metadata.token_endpoint(),
            provider.token,
            "{}",
            provider.name
        );
        assert_eq!(
            metadata.device_authorization_endpoint(),
            provider.device,
            "{}",
            provider.name
        );
        assert_eq!(
            metadata.revocation_endpoint(),
            provider.revocation,
            "{}",
            provider.name
        );
        assert_eq!(
            metadata.client_auth(true),
            provider.auth,
            "{}",
            provider.name
        );
        assert_eq!(
            metadata
                .code_challenge_methods_supported()
                .iter()
                .any(|m| m == "S256"),
            provider.s256,
            "{}",
            provider.name
        );
        assert_eq!(
            metadata.authorization_response_iss_parameter_supported(),
            provider.iss,
            "{}",
            provider.name
        );
        assert_eq!(
            metadata.dpop_signing_alg_values_supported(),
            provider.dpop,
            "{}",
            provider.name
        );
        assert!(
            metadata.authorization_endpoint().is_some(),
            "{}",
            provider.name
        );
        // The browser sign-in takes the issuer to check `iss` against, as the document
        // says it.
        let flow = AuthorizationRequest::from_metadata(
            &metadata,
            "cli",
            "http://127.0.0.1:1/callback",
            [0; 64],
        )
        .unwrap();
        assert!(
            flow.url()
                .unwrap()
                .starts_with(metadata.authorization_endpoint().unwrap())
        );
    }
}

#[test]
fn entra_multi_tenant_issuer_is_refused_with_what_to_do() {
    let common = r#"{"issuer":"https://login.microsoftonline.com/{tenantid}/v2.0",
        "token_endpoint":"https://login.microsoftonline.com/common/oauth2/v2.0/token"}"#;
    let error = Discovery::new("https://login.microsoftonline.com/common/v2.0")
        .unwrap()
        .read_response(WellKnown::OpenIdConnect, &json(200, common))
        .expect_err("a templated issuer");
    assert!(matches!(error, Error::IssuerMismatch { .. }));
    assert!(
        error.to_string().contains("your tenant's issuer"),
        "{error}"
    );
}

/// The device answers of each provider: what to show, and the interval.
#[test]
fn providers_device_answers() {
    let client = RefreshGrant::new("https://auth.example.com/token", "cli");
    for (name, body, uri, complete, expires, interval) in [
        (
            "Google (verification_url)",
            r#"{"device_code":"4/4-GMMhmHCXhWEzkobqIHGG_EnNYYsAkukHspeYUk9E8","user_code":"GQVQ-JKEC","verification_url":"https://www.google.com/device","expires_in":1800,"interval":5}"#,
            "https://www.google.com/device",
            None,
            1800,
            5,
        ),
        (
            "Microsoft Entra ID",
            r#"{"user_code":"FTQ7YZBMA","device_code":"FAQABAAEAAAD--DLA3VO7QrddgJg7WevrRand0mAbcd","verification_uri":"https://microsoft.com/devicelogin","expires_in":900,"interval":5,"message":"To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code FTQ7YZBMA to authenticate."}"#,
            "https://microsoft.com/devicelogin",
            None,
            900,
            5,
        ),
        (
            "Entra v1 (quoted numbers)",
            r#"{"user_code":"FTQ7YZBMA","device_code":"FAQAB","verification_url":"https://microsoft.com/devicelogin","expires_in":"900","interval":"5"}"#,
            "https://microsoft.com/devicelogin",
            None,
            900,
            5,
        ),
        (
            "Okta",
            r#"{"device_code":"4ee4d7e0-84a4-4e2c-9e4b-2f1b3a2c1d0e","user_code":"MHXTWKJD","verification_uri":"https://dev-123456.okta.com/activate","verification_uri_complete":"https://dev-123456.okta.com/activate?user_code=MHXTWKJD","expires_in":600,"interval":5}"#,
            "https://dev-123456.okta.com/activate",
            Some("https://dev-123456.okta.com/activate?user_code=MHXTWKJD"),
            600,
            5,
        ),
        (
            "Auth0",
            r#"{"device_code":"Ag_EE...ko1p","user_code":"QTZL-MCBW","verification_uri":"https://example-tenant.us.auth0.com/activate","verification_uri_complete":"https://example-tenant.us.auth0.com/activate?user_code=QTZL-MCBW","expires_in":900,"interval":5}"#,
            "https://example-tenant.us.auth0.com/activate",
            Some("https://example-tenant.us.auth0.com/activate?user_code=QTZL-MCBW"),
            900,
            5,
        ),
        (
            "Keycloak",
            r#"{"device_code":"eyJhbGciOiJIUzUxMiIsInR5cCIgOiAiSldUIn0.e30.x","user_code":"WXYZ-ABCD","verification_uri":"https://sso.example.com/realms/acme/device","verification_uri_complete":"https://sso.example.com/realms/acme/device?user_code=WXYZ-ABCD","expires_in":600,"interval":5}"#,
            "https://sso.example.com/realms/acme/device",
            Some("https://sso.example.com/realms/acme/device?user_code=WXYZ-ABCD"),
            600,
            5,
        ),
    ] {
        let authorization = DeviceAuthorizationRequest::new("https://auth.example.com/device")
            .read_response(&client, &json(200, body))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(authorization.verification_uri(), uri, "{name}");
        assert_eq!(
            authorization.verification_uri_complete(),
            complete,
            "{name}"
        );
        assert_eq!(
            authorization.expires_in(),
            Duration::from_secs(expires),
            "{name}"
        );
        assert_eq!(
            authorization.interval(),
            Duration::from_secs(interval),
            "{name}"
        );
        assert!(!authorization.user_code().is_empty(), "{name}");
    }
}

/// The poll answers of each provider while the user has not decided, and when they
/// decline.
#[test]
fn providers_poll_answers() {
    let client = RefreshGrant::new("https://auth.example.com/token", "cli");
    let authorization = DeviceAuthorizationRequest::new("https://auth.example.com/device")
        .read_response(
            &client,
            &json(
                200,
                r#"{"device_code":"dc","user_code":"U","verification_uri":"https://a/","expires_in":900,"interval":5}"#,
            ),
        )
        .unwrap();
    let start = Instant::now();
    let mut poll = DevicePoll::new(client.clone(), authorization.clone(), start);
    let mut now = start;
    for (name, status, body) in [
        (
            "Google",
            428,
            r#"{"error":"authorization_pending","error_description":"Precondition Required"}"#,
        ),
        (
            "Entra",
            400,
            r#"{"error":"authorization_pending","error_description":"AADSTS70016: OAuth 2.0 device flow error. Authorization is pending.","error_codes":[70016]}"#,
        ),
        (
            "Okta",
            400,
            r#"{"error":"authorization_pending","error_description":"The device authorization is pending. Please try again later."}"#,
        ),
        (
            "Auth0",
            403,
            r#"{"error":"authorization_pending","error_description":"User has yet to authorize device code."}"#,
        ),
        (
            "GitHub (200)",
            200,
            r#"{"error":"authorization_pending","error_description":"The authorization request is still pending."}"#,
        ),
    ] {
        now = poll.poll_timeout().unwrap();
        poll.poll_request(now).unwrap().unwrap();
        assert!(
            poll.handle_response(now, &json(status, body))
                .unwrap()
                .is_none(),
            "{name}"
        );
    }
    assert_eq!(poll.poll_timeout(), Some(now + Duration::from_secs(5)));
    for (name, status, body) in [
        (
            "Entra",
            400,
            r#"{"error":"authorization_declined","error_description":"AADSTS70000: ..."}"#,
        ),
        (
            "Google",
            403,
            r#"{"error":"access_denied","error_description":"Forbidden"}"#,
        ),
        (
            "Auth0",
            403,
            r#"{"error":"access_denied","error_description":"User cancelled the confirmation prompt or consent page."}"#,
        ),
    ] {
        let mut poll = DevicePoll::new(client.clone(), authorization.clone(), start);
        let at = poll.poll_timeout().unwrap();
        poll.poll_request(at).unwrap().unwrap();
        let error = poll
            .handle_response(at, &json(status, body))
            .expect_err(name);
        assert!(
            matches!(error, Error::AccessDenied { .. }),
            "{name}: {error:?}"
        );
    }
    for (name, body) in [
        (
            "Entra",
            r#"{"error":"expired_token","error_description":"AADSTS70019: ..."}"#,
        ),
        ("Entra v1", r#"{"error":"code_expired"}"#),
        (
            "Okta",
            r#"{"error":"expired_token","error_description":"The device code has expired."}"#,
        ),
    ] {
        let mut poll = DevicePoll::new(client.clone(), authorization.clone(), start);
        let at = poll.poll_timeout().unwrap();
        poll.poll_request(at).unwrap().unwrap();
        assert_eq!(
            poll.handle_response(at, &json(400, body)),
            Err(Error::DeviceCodeExpired),
            "{name}"
        );
    }
}

/// The secrets of the flows, and an answer that echoes them.
const DEVICE_CODE: &str = "dc-Secret-0123456789";
const CLIENT_SECRET: &str = "cs-Secret-0123456789";
const TOKEN: &str = "tk-Secret-0123456789";
const CODE: &str = "ac-Secret-0123456789";

fn statuses() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(200u16),
        Just(302),
        Just(400),
        Just(401),
        Just(403),
        Just(428),
        Just(500),
        Just(503),
        100u16..600
    ]
}

fn bodies() -> impl Strategy<Value = String> {
    let secret = prop_oneof![
        Just(DEVICE_CODE),
        Just(CLIENT_SECRET),
        Just(TOKEN),
        Just(CODE)
    ];
    let field = prop_oneof![
        Just("error"),
        Just("error_description"),
        Just("device_code"),
        Just("user_code"),
        Just("verification_uri"),
        Just("issuer"),
        Just("token_endpoint"),
        Just("access_token"),
        Just("expires_in"),
    ];
    let text = "[ -~]{0,30}";
    prop_oneof![
        // A JSON object echoing a secret in some field.
        (
            proptest::collection::vec((field, secret.clone(), text), 0..5),
            proptest::option::of(prop_oneof![
                Just("authorization_pending"),
                Just("slow_down"),
                Just("access_denied"),
                Just("expired_token"),
                Just("invalid_grant"),
                Just("invalid_client"),
                Just("unsupported_token_type"),
                Just("x"),
            ])
        )
            .prop_map(|(fields, error)| {
                let mut object = serde_json::Map::new();
                for (name, secret, text) in fields {
                    object.insert(
                        name.to_owned(),
                        serde_json::Value::from(format!("{text}{secret}{text}")),
                    );
                }
                if let Some(error) = error {
                    object.insert("error".to_owned(), error.into());
                }
                serde_json::Value::Object(object).to_string()
            }),
        // Not JSON: a page that quotes a secret.
        (secret.clone(), text).prop_map(|(secret, text)| format!("<html>{text} {secret}</html>")),
        // A truncated JSON body holding a secret.
        secret.prop_map(|secret| format!(
            r#"{{"error":"invalid_request","error_description":"{secret}"#
        )),
    ]
}

fn answer(status: u16, body: &str, form: bool) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header(
            "content-type",
            if form {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            },
        )
        .header(
            "location",
            format!("https://other.example/path?token={TOKEN}&code={CODE}"),
        )
        .body(body.as_bytes().to_vec())
        .unwrap()
}

/// `error` holds none of `secrets` (those the step held), in its message or `Debug`.
fn assert_no_secret(what: &str, error: &Error, secrets: &[&str]) {
    for text in [error.to_string(), format!("{error:?}")] {
        for secret in secrets {
            assert!(!text.contains(secret), "{what}: {text}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_secret_reaches_an_error(status in statuses(), body in bodies(), form in any::<bool>()) {
        let response = answer(status, &body, form);
        let client = RefreshGrant::new("https://auth.example.com/token", "cli")
            .client_secret(CLIENT_SECRET)
            .auth(ClientAuth::Post);
        let device = DeviceAuthorizationRequest::new("https://auth.example.com/device");
        if let Err(error) = device.read_response(&client, &response) {
            // Only the client secret was sent: a server may echo other text.
            assert_no_secret("device authorization", &error, &[CLIENT_SECRET]);
        }

        let authorization = device
            .read_response(
                &client,
                &json(200, &format!(r#"{{"device_code":"{DEVICE_CODE}","user_code":"U","verification_uri":"https://a/","expires_in":60}}"#)),
            )
            .unwrap();
        let start = Instant::now();
        let mut poll = DevicePoll::new(client.clone(), authorization, start);
        let at = poll.poll_timeout().unwrap();
        poll.poll_request(at).unwrap().unwrap();
        if let Err(error) = poll.handle_response(at, &response) {
            assert_no_secret("device poll", &error, &[CLIENT_SECRET, DEVICE_CODE]);
        }

        let flow = AuthorizationRequest::new("https://auth.example.com/a", "cli", "http://127.0.0.1:1/callback", [3; 64]);
        let code = flow
            .read_redirect(&format!("/callback?code={CODE}&state={}", flow.state().expose()))
            .unwrap();
        if let Err(error) = flow.read_token_response(&client, &code, &response) {
            assert_no_secret("code exchange", &error, &[CLIENT_SECRET, CODE]);
        }

        let revocation = RevocationRequest::new("https://auth.example.com/revoke");
        if let Err(error) = revocation.read_response(&client, &Secret::new(TOKEN), TokenTypeHint::RefreshToken, &response) {
            assert_no_secret("revocation", &error, &[CLIENT_SECRET, TOKEN]);
        }
    }

    #[test]
    fn no_redirect_parameter_but_the_servers_words_reaches_an_error(
        error in proptest::option::of("[ -~]{0,20}"),
        state_ok in any::<bool>(),
        iss in proptest::option::of("[ -~]{0,20}"),
    ) {
        let flow = AuthorizationRequest::new("https://auth.example.com/a", "cli", "http://127.0.0.1:1/callback", [9; 64])
            .issuer("https://auth.example.com", false);
        let state = if state_ok { flow.state().expose().to_owned() } else { "forged".to_owned() };
        let mut target = format!("/callback?code={CODE}&state={state}");
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(error) = &error {
            query.append_pair("error", error);
        }
        if let Some(iss) = &iss {
            query.append_pair("iss", iss);
        }
        let extra = query.finish();
        if !extra.is_empty() {
            target.push('&');
            target.push_str(&extra);
        }
        match flow.read_redirect(&target) {
            Ok(code) => {
                prop_assert!(state_ok && error.is_none());
                prop_assert_eq!(code.secret().expose(), CODE);
            }
            Err(failure) => {
                assert_no_secret("redirect", &failure, &[CODE]);
                prop_assert!(!failure.to_string().contains(flow.state().expose()));
            }
        }
    }
}
