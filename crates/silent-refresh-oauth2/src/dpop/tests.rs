//! Tests of the `dpop` module, run against every backend built (both, with both
//! features on a native target).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use silent_refresh::{AccessToken, FailureKind, Generation, Secret};

use super::backend::{self, Backend};
use super::*;
use crate::{Error, RefreshGrant};

const ES256_PEM: &str = include_str!("../testdata/es256.pem");
const ED25519_PEM: &str = include_str!("../testdata/ed25519.pem");
const RS256_PEM: &str = include_str!("../testdata/rs256.pem");
const SEC1_PEM: &str = include_str!("../testdata/es256.sec1.pem");
const ENCRYPTED_PEM: &str = include_str!("../testdata/es256.encrypted.pem");
const P384_PEM: &str = include_str!("../testdata/p384.pem");
const PUBLIC_PEM: &str = include_str!("../testdata/es256.pub.pem");

/// Thumbprints computed apart from this crate (see `testdata/README.md`).
const ES256_PEM_JKT: &str = "0fv6V7ZBZF-tQ-JByCHcMs9VLz-q_47d3e5k3yebb_E";
const ED25519_PEM_JKT: &str = "MTLT6fUNsB6emqbpVYMUR96JzXulsVOJg2b-46XNVU8";
/// The keys made from 32 bytes of 7, their JWK and thumbprint computed by openssl
/// and Python.
const SEVENS_ES256_JWK: &str = r#"{"crv":"P-256","kty":"EC","x":"HhhTL9R1TALzBB2cdc6zO4P_2BrHzk_ogsyxyYvFiW4","y":"pGwxHE4v9A3ZajZT5uRURdMt_khuztdcepDGoYiBwKM"}"#;
const SEVENS_ES256_JKT: &str = "gWjt7nmB1udyFpLYVp0SxJnI8lJEvl7q8AFYZRqnGV8";
const SEVENS_ED25519_JWK: &str =
    r#"{"crv":"Ed25519","kty":"OKP","x":"6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw"}"#;
const SEVENS_ED25519_JKT: &str = "--6IM5l0OosLj9yWskISYhUA3n_3CURQkmrYMSha_ck";

/// The P-256 group order, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn part(jws: &str, index: usize) -> Value {
    let text = jws.split('.').nth(index).expect("a part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).expect("base64url")).expect("JSON")
}

/// Verifies a proof's signature with jsonwebtoken against the `jwk` of its own header,
/// as a server does, and returns its claims.
fn verify(proof: &str) -> Value {
    let header = jsonwebtoken::decode_header(proof).expect("a JWS header");
    assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
    let jwk = header.jwk.expect("a jwk in the header");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("a public key");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .expect("the signature verifies")
        .claims
}

fn sevens(backend: &Backend, algorithm: DpopAlgorithm) -> DpopKey {
    DpopKey::with_backend(backend, algorithm, &[7; 32]).expect("a key")
}

#[test]
fn both_algorithms_on_every_backend_match_keys_computed_elsewhere() {
    assert!(!backend::all().is_empty());
    for backend in backend::all() {
        let key = sevens(backend, DpopAlgorithm::Es256);
        assert_eq!(key.algorithm(), DpopAlgorithm::Es256);
        assert_eq!(key.public_jwk(), SEVENS_ES256_JWK, "{}", backend.name);
        assert_eq!(key.thumbprint(), SEVENS_ES256_JKT, "{}", backend.name);
        let key = sevens(backend, DpopAlgorithm::EdDsa);
        assert_eq!(key.algorithm(), DpopAlgorithm::EdDsa);
        assert_eq!(key.public_jwk(), SEVENS_ED25519_JWK, "{}", backend.name);
        assert_eq!(key.thumbprint(), SEVENS_ED25519_JKT, "{}", backend.name);
        for (pem, jkt) in [(ES256_PEM, ES256_PEM_JKT), (ED25519_PEM, ED25519_PEM_JKT)] {
            let key = DpopKey::from_pem_with(backend, pem).expect("a PKCS#8 key");
            assert_eq!(key.thumbprint(), jkt, "{}", backend.name);
        }
    }
}

#[test]
fn thumbprints_agree_with_rfc_vectors_and_jsonwebtoken() {
    // RFC 9449's example key and the `jkt` its §6.1 gives for it.
    let rfc9449 = json!({
        "kty": "EC",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        "crv": "P-256",
    });
    assert_eq!(
        jwk_thumbprint(&rfc9449).expect("a thumbprint"),
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    );
    // RFC 7638 §3.1's RSA example (extra members are ignored).
    let rfc7638 = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    });
    assert_eq!(
        jwk_thumbprint(&rfc7638).expect("a thumbprint"),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    for backend in backend::all() {
        for algorithm in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
            let key = sevens(backend, algorithm);
            let value: Value = serde_json::from_str(key.public_jwk()).expect("JSON");
            assert_eq!(
                jwk_thumbprint(&value).expect("a thumbprint"),
                key.thumbprint()
            );
            let theirs: jsonwebtoken::jwk::Jwk =
                serde_json::from_str(key.public_jwk()).expect("a JWK jsonwebtoken reads");
            assert_eq!(
                theirs
                    .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                    .expect("a thumbprint"),
                key.thumbprint()
            );
        }
    }
    for bad in [
        json!("EC"),
        json!({"kty": "EC", "crv": "P-256", "x": "a"}),
        json!({"kty": "oct", "k": "a"}),
    ] {
        assert!(
            matches!(jwk_thumbprint(&bad), Err(Error::InvalidDpopKey { .. })),
            "{bad}"
        );
    }
}

#[test]
fn es256_bytes_must_be_a_private_scalar() {
    let mut below_order = P256_ORDER;
    below_order[31] -= 1;
    let mut above = P256_ORDER;
    above[31] += 1;
    for backend in backend::all() {
        for refused in [[0u8; 32], P256_ORDER, above, [0xff; 32]] {
            let error = DpopKey::with_backend(backend, DpopAlgorithm::Es256, &refused)
                .expect_err("not a scalar");
            assert!(error.to_string().contains("draw new bytes"), "{error}");
        }
        let mut one = [0u8; 32];
        one[31] = 1;
        for accepted in [one, below_order] {
            assert!(DpopKey::with_backend(backend, DpopAlgorithm::Es256, &accepted).is_ok());
        }
        // Any 32 bytes are an Ed25519 seed.
        assert!(DpopKey::with_backend(backend, DpopAlgorithm::EdDsa, &[0; 32]).is_ok());
    }
}

#[test]
fn generated_keys_differ_and_sign() {
    for backend in backend::all() {
        for algorithm in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
            let a = DpopKey::generate_with(backend, algorithm).expect("a key");
            let b = DpopKey::generate_with(backend, algorithm).expect("a key");
            assert_ne!(a, b, "{}", backend.name);
            assert_eq!(a.algorithm(), algorithm);
            let proof = a
                .proof(&ProofInput::new(
                    "POST",
                    "https://as.example/token",
                    1,
                    [0; 16],
                ))
                .expect("a proof");
            verify(&proof);
        }
    }
    assert!(DpopKey::generate_with_os_rng(DpopAlgorithm::Es256).is_ok());
}

#[test]
fn pem_round_trips_within_and_across_backends() {
    let backends = backend::all();
    for from in &backends {
        for algorithm in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
            let key = sevens(from, algorithm);
            let pem = key.to_pkcs8_pem().expect("a PEM");
            assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
            assert!(pem.expose().ends_with("-----END PRIVATE KEY-----\n"));
            assert!(pem.expose().lines().all(|line| line.len() <= 64));
            assert_eq!(format!("{pem:?}"), "[redacted]");
            for to in &backends {
                let back = DpopKey::from_pem_with(to, pem.expose()).expect("loads");
                assert_eq!(back, key, "{} to {}", from.name, to.name);
                assert_eq!(back.algorithm(), algorithm);
            }
        }
    }
    // What openssl writes loads too, CRLF line ends and text around it included.
    let crlf = format!("a note\r\n{}", ES256_PEM.replace('\n', "\r\n"));
    assert_eq!(
        DpopKey::from_pkcs8_pem(&crlf).expect("loads").thumbprint(),
        ES256_PEM_JKT
    );
}

#[test]
fn a_pem_that_is_not_a_dpop_key_says_what_it_is() {
    for (pem, says) in [
        ("", "not PEM"),
        ("hello", "not PEM"),
        (SEC1_PEM, "openssl pkcs8 -topk8"),
        (ENCRYPTED_PEM, "encrypted"),
        (PUBLIC_PEM, "public key"),
        (RS256_PEM, "RSA"),
        (P384_PEM, "another curve"),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a valid P-256 or Ed25519",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
            "base64",
        ),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n", "no END"),
    ] {
        for backend in backend::all() {
            let error = DpopKey::from_pem_with(backend, pem).expect_err("refused");
            let text = error.to_string();
            assert!(matches!(error, Error::InvalidDpopKey { .. }), "{text}");
            assert!(text.contains(says), "{says}: {text}");
            assert!(text.contains("PKCS#8"), "{text}");
        }
    }
    let long = "A".repeat(20_000);
    assert!(DpopKey::from_pkcs8_pem(&long).is_err());
}

#[test]
fn debug_shows_the_thumbprint_never_the_private_key() {
    let key = DpopKey::from_pkcs8_pem(ES256_PEM).expect("a key");
    let printed = format!("{key:?}");
    assert!(printed.contains(ES256_PEM_JKT), "{printed}");
    assert!(printed.contains("Es256"), "{printed}");
    let body: String = ES256_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in ES256_PEM.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!printed.contains(&line[..20]), "{printed}");
    }
    assert!(!printed.contains(&body[..20]));
}

#[test]
fn a_proof_verifies_against_its_own_jwk_with_the_claims_given() {
    let token = Secret::new("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
    for backend in backend::all() {
        for algorithm in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
            let key = sevens(backend, algorithm);
            let input = ProofInput::new(
                "GET",
                "HTTPS://Resource.Example.org:443/protectedresource?x=1#f",
                1_562_262_618,
                [9; 16],
            )
            .nonce(Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"))
            .access_token(&token);
            let proof = key.proof(&input).expect("a proof");
            let header = part(&proof, 0);
            assert_eq!(
                header,
                json!({
                    "typ": "dpop+jwt",
                    "alg": algorithm.name(),
                    "jwk": serde_json::from_str::<Value>(key.public_jwk()).expect("JSON"),
                })
            );
            assert!(header["jwk"].get("d").is_none(), "no private member");
            let claims = verify(&proof);
            assert_eq!(
                claims,
                json!({
                    "jti": URL_SAFE_NO_PAD.encode([9; 16]),
                    "htm": "GET",
                    "htu": "https://resource.example.org/protectedresource",
                    "iat": 1_562_262_618,
                    "nonce": "eyJ7S_zG.eyJH0-Z.HX4w-7v",
                    // RFC 9449 §7.1's example access token and its `ath`.
                    "ath": "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo",
                })
            );
            assert!(!proof.contains(token.expose()));
            // A token request: no nonce, no ath.
            let proof = key
                .proof(&ProofInput::new(
                    "POST",
                    "https://as.example/token",
                    5,
                    [1; 16],
                ))
                .expect("a proof");
            let claims = verify(&proof);
            assert!(claims.get("ath").is_none() && claims.get("nonce").is_none());
            assert_eq!(claims["htm"], "POST");
            // Each jti makes a new proof.
            let other = key
                .proof(&ProofInput::new(
                    "POST",
                    "https://as.example/token",
                    5,
                    [2; 16],
                ))
                .expect("a proof");
            assert_ne!(part(&proof, 1)["jti"], part(&other, 1)["jti"]);
        }
    }
    assert_eq!(
        ath(token.expose()),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn bad_proof_inputs_are_refused() {
    let key = DpopKey::from_pkcs8_pem(ES256_PEM).expect("a key");
    let proof =
        |method, url, nonce| key.proof(&ProofInput::new(method, url, 0, [0; 16]).nonce(nonce));
    for (method, url, nonce) in [
        ("", "https://a.example/", None),
        ("GE T", "https://a.example/", None),
        ("GET", "https://a.example/", Some("")),
        ("GET", "https://a.example/", Some("a b")),
        ("GET", "https://a.example/", Some("a\"b")),
        ("GET", "https://a.example/", Some("a\\b")),
        ("GET", "https://a.example/", Some("é")),
    ] {
        assert!(
            matches!(proof(method, url, nonce), Err(Error::DpopProof { .. })),
            "{method} {nonce:?}"
        );
    }
    let long = "n".repeat(MAX_NONCE_LEN + 1);
    assert!(proof("GET", "https://a.example/", Some(&long)).is_err());
    for url in [
        "",
        "/relative",
        "ftp://a.example/",
        "https:///nohost",
        "not a url",
    ] {
        assert!(
            matches!(proof("GET", url, None), Err(Error::InvalidUrl { .. })),
            "{url}"
        );
    }
}

#[test]
fn htu_is_normalised_as_rfc_9449_has_servers_compare_it() {
    for (url, expected) in [
        (
            "https://as.example.com/token",
            "https://as.example.com/token",
        ),
        (
            "https://as.example.com/token?grant=x#frag",
            "https://as.example.com/token",
        ),
        (
            "HTTPS://AS.Example.COM/Token",
            "https://as.example.com/Token",
        ),
        ("https://as.example.com:443/t", "https://as.example.com/t"),
        ("http://as.example.com:80/t", "http://as.example.com/t"),
        (
            "https://as.example.com:8443/t",
            "https://as.example.com:8443/t",
        ),
        ("http://as.example.com:443/t", "http://as.example.com:443/t"),
        ("https://as.example.com", "https://as.example.com/"),
        ("https://as.example.com?x", "https://as.example.com/"),
        (
            "https://user:secret@as.example.com/t",
            "https://as.example.com/t",
        ),
        ("https://[::1]:8080/t", "https://[::1]:8080/t"),
        (
            "http://127.0.0.1:3000/api/resource",
            "http://127.0.0.1:3000/api/resource",
        ),
        ("https://a.example/a/./b/../c/", "https://a.example/a/c/"),
        ("https://a.example/a/b/..", "https://a.example/a/"),
        ("https://a.example/../../x", "https://a.example/x"),
        (
            "https://a.example/%7euser/%2fdoc%2F",
            "https://a.example/~user/%2Fdoc%2F",
        ),
        // A `%` that starts no percent-encoding is encoded, so a second pass keeps it.
        ("https://a.example/%a%30", "https://a.example/%25a0"),
        ("https://a.example/50%", "https://a.example/50%25"),
        ("https://a.example/%2E%2E/x", "https://a.example/x"),
        ("https://a.example/a%20b", "https://a.example/a%20b"),
        ("https://a.example/%41%62", "https://a.example/Ab"),
    ] {
        assert_eq!(htu(url).expect(url), expected, "{url}");
        // Normalising is idempotent.
        assert_eq!(htu(expected).expect(expected), expected, "{expected}");
    }
}

#[test]
fn the_nonce_cache_keeps_one_nonce_per_origin_and_is_bounded() {
    let mut cache = NonceCache::with_capacity(2);
    assert!(cache.is_empty());
    assert!(cache.insert("https://as.example/token", "a-1"));
    assert!(cache.insert("https://api.example/x", "r-1"));
    assert_eq!(cache.get("https://AS.example:443/other"), Some("a-1"));
    assert_eq!(cache.get("http://as.example/token"), None, "another scheme");
    assert_eq!(
        cache.get("https://as.example:8443/token"),
        None,
        "another port"
    );
    assert!(cache.insert("https://as.example/token", "a-2"));
    assert_eq!(cache.get("https://as.example/token"), Some("a-2"));
    // A third origin evicts the one updated longest ago (api, not as).
    assert!(cache.insert("https://third.example/", "t-1"));
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get("https://api.example/x"), None);
    assert_eq!(cache.get("https://as.example/"), Some("a-2"));
    // Invalid nonces and URLs change nothing.
    for nonce in ["", "a b", "a\"b", "é"] {
        assert!(!cache.insert("https://as.example/", nonce), "{nonce:?}");
    }
    assert!(!cache.insert("not a url", "n"));
    assert!(!cache.insert("https://as.example/", &"n".repeat(MAX_NONCE_LEN + 1)));
    assert_eq!(cache.get("https://as.example/"), Some("a-2"));
    // From response headers, successes too; the last valid value of several.
    let mut headers = HeaderMap::new();
    assert!(!cache.observe("https://as.example/", &headers));
    headers.append(DPOP_NONCE, HeaderValue::from_static("a-3"));
    headers.append(DPOP_NONCE, HeaderValue::from_static("not valid"));
    assert!(cache.observe("https://as.example/", &headers));
    assert_eq!(cache.get("https://as.example/"), Some("a-3"));
    assert!(cache.remove("https://as.example/"));
    assert_eq!(cache.get("https://as.example/"), None);
    assert_eq!(
        NonceCache::default().capacity(),
        NonceCache::DEFAULT_CAPACITY
    );
    assert_eq!(NonceCache::with_capacity(0).capacity(), 1);
    let printed = format!("{cache:?}");
    assert!(printed.contains("third.example"), "{printed}");
}

fn json_headers(nonce: Option<&'static str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(nonce) = nonce {
        headers.insert(DPOP_NONCE, HeaderValue::from_static(nonce));
    }
    headers
}

#[test]
fn the_token_endpoint_challenge_is_a_400_use_dpop_nonce_with_a_nonce() {
    let body = br#"{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}"#;
    assert_eq!(
        token_nonce_challenge(
            StatusCode::BAD_REQUEST,
            &json_headers(Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")),
            body
        )
        .as_deref(),
        Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
    );
    // A form body says the same.
    let mut form = HeaderMap::new();
    form.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    form.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
    assert_eq!(
        token_nonce_challenge(StatusCode::BAD_REQUEST, &form, b"error=use_dpop_nonce").as_deref(),
        Some("n-1")
    );
    // Not a challenge: no nonce, an invalid one, another status, another error, no error.
    for (status, headers, body) in [
        (StatusCode::BAD_REQUEST, json_headers(None), &body[..]),
        (
            StatusCode::BAD_REQUEST,
            json_headers(Some("a b")),
            &body[..],
        ),
        (StatusCode::UNAUTHORIZED, json_headers(Some("n")), &body[..]),
        (StatusCode::OK, json_headers(Some("n")), &body[..]),
        (
            StatusCode::BAD_REQUEST,
            json_headers(Some("n")),
            br#"{"error":"invalid_grant"}"#,
        ),
        (
            StatusCode::BAD_REQUEST,
            json_headers(Some("n")),
            br#"{"error":"invalid_dpop_proof"}"#,
        ),
        (
            StatusCode::BAD_REQUEST,
            json_headers(Some("n")),
            b"<html>use_dpop_nonce</html>",
        ),
    ] {
        assert_eq!(
            token_nonce_challenge(status, &headers, body),
            None,
            "{status}"
        );
    }
}

#[test]
fn a_second_use_dpop_nonce_is_transient_and_a_refused_proof_misconfigured() {
    let grant = RefreshGrant::new("https://as.example/token", "app");
    let answer = |body: &str| {
        http::Response::builder()
            .status(400)
            .header("content-type", "application/json")
            .header("dpop-nonce", "n-2")
            .body(body.as_bytes().to_vec())
            .expect("a response")
    };
    let failure = grant
        .parse_response(&answer(r#"{"error":"use_dpop_nonce"}"#))
        .expect_err("refused");
    assert_eq!(failure.kind, FailureKind::Transient, "{}", failure.message);
    assert!(
        failure.message.contains("DPoP nonce"),
        "{}",
        failure.message
    );
    let failure = grant
        .parse_response(&answer(r#"{"error":"invalid_dpop_proof"}"#))
        .expect_err("refused");
    assert_eq!(
        failure.kind,
        FailureKind::Misconfigured,
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("system clock"),
        "{}",
        failure.message
    );
    assert!(!failure.message.contains("sign in"), "{}", failure.message);
}

#[test]
fn a_dpop_token_type_makes_a_bound_token_never_sent_as_bearer() {
    let grant = RefreshGrant::new("https://as.example/token", "app");
    for (token_type, bound) in [
        ("DPoP", true),
        ("dpop", true),
        ("DPOP", true),
        ("Bearer", false),
        ("bearer", false),
    ] {
        let body =
            format!(r#"{{"access_token":"at-1","token_type":"{token_type}","expires_in":60}}"#);
        let answer = http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .expect("a response");
        let token = grant.parse_response(&answer).expect("a token");
        assert_eq!(is_bound(&token.token_type), bound, "{token_type}");
        let granted = AccessToken {
            generation: Generation(1),
            secret: token.access_token.clone(),
            token_type: token.token_type.clone(),
            scope: None,
            usable_until: None,
        };
        let header = granted.authorization();
        if bound {
            assert_eq!(token.token_type, TOKEN_TYPE);
            assert_eq!(header.as_str(), "DPoP at-1");
        } else {
            assert_eq!(header.as_str(), "Bearer at-1");
        }
    }
}

fn www_authenticate(values: &[&'static str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(value),
        );
    }
    headers.insert(DPOP_NONCE, HeaderValue::from_static("n-9"));
    headers
}

#[test]
fn the_resource_challenge_is_a_401_dpop_use_dpop_nonce_among_other_challenges() {
    for values in [
        &[
            r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
        ][..],
        &[r#"Bearer realm="x", DPoP algs="ES256", error="use_dpop_nonce""#],
        &[
            r#"Bearer realm="a, b", error="use_dpop_nonce""#,
            r#"dpop error=use_dpop_nonce"#,
        ],
        &[r#"Basic realm="x",DPoP   error = "use_dpop_nonce""#],
    ] {
        assert_eq!(
            resource_nonce_challenge(StatusCode::UNAUTHORIZED, &www_authenticate(values))
                .as_deref(),
            Some("n-9"),
            "{values:?}"
        );
    }
    for (status, values) in [
        // The error belongs to the Bearer challenge, not the DPoP one.
        (
            401,
            &[r#"Bearer error="use_dpop_nonce", DPoP algs="ES256""#][..],
        ),
        (401, &[r#"DPoP error="invalid_token""#]),
        (401, &[r#"DPoP algs="ES256""#]),
        (401, &[r#"Bearer realm="DPoP error=\"use_dpop_nonce\"""#]),
        (403, &[r#"DPoP error="use_dpop_nonce""#]),
        (400, &[r#"DPoP error="use_dpop_nonce""#]),
    ] {
        let status = StatusCode::from_u16(status).expect("a status");
        assert_eq!(
            resource_nonce_challenge(status, &www_authenticate(values)),
            None,
            "{values:?}"
        );
    }
    // No DPoP-Nonce: not a challenge the client can answer.
    let mut headers = www_authenticate(&[r#"DPoP error="use_dpop_nonce""#]);
    headers.remove(DPOP_NONCE);
    assert_eq!(
        resource_nonce_challenge(StatusCode::UNAUTHORIZED, &headers),
        None
    );
}

#[test]
fn challenges_parse_as_rfc_9110_writes_them() {
    let all = Challenge::parse_all(
        r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
    );
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].scheme(), "DPoP");
    assert_eq!(all[0].param("error"), Some("use_dpop_nonce"));
    assert_eq!(
        all[0].param("error_description"),
        Some("Resource server requires nonce in DPoP proof")
    );
    let all = Challenge::parse_all(r#"Bearer realm="x", DPoP algs="ES256""#);
    assert_eq!(
        all.iter().map(Challenge::scheme).collect::<Vec<_>>(),
        ["Bearer", "DPoP"]
    );
    assert_eq!(all[0].params(), [("realm".to_owned(), "x".to_owned())]);
    assert_eq!(all[1].param("algs"), Some("ES256"));
    // token68, quoted commas and escapes, empty values, bare schemes, garbage.
    let all = Challenge::parse_all(
        r#"Negotiate abc+/9==, Basic, Custom a="x, \"y\"", b=tok , c="", , Other"#,
    );
    assert_eq!(
        all.iter().map(Challenge::scheme).collect::<Vec<_>>(),
        ["Negotiate", "Basic", "Custom", "Other"]
    );
    assert_eq!(all[0].token68(), Some("abc+/9=="));
    assert!(all[0].params().is_empty());
    assert_eq!(all[1].token68(), None);
    assert_eq!(all[2].param("a"), Some(r#"x, "y""#));
    assert_eq!(all[2].param("B"), Some("tok"));
    assert_eq!(all[2].param("c"), Some(""));
    assert!(Challenge::parse_all("").is_empty());
    assert!(Challenge::parse_all(" , ,").is_empty());
    assert!(
        Challenge::parse_all("realm=x").is_empty(),
        "a param without a scheme"
    );
    let all = Challenge::parse_all(r#"DPoP error="unterminated"#);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].param("error"), None);
}

#[test]
fn bound_token_types_are_recognised() {
    assert!(is_bound("DPoP") && is_bound("dpop"));
    assert!(!is_bound("Bearer") && !is_bound("") && !is_bound("DPoP2"));
}

proptest::proptest! {
    #[test]
    fn no_access_token_or_private_key_in_any_debug_or_error(
        token in "[A-Za-z0-9._~+/-]{8,60}",
        method in "[A-Z!#]{0,6}",
        url in "(https?://)?[a-z.]{0,12}(:[0-9]{1,5})?(/[a-z%0-9.~]{0,8}){0,3}(\\?[a-z=&]{0,8})?",
        nonce in proptest::option::of("[!-~ ]{0,12}"),
        seed in proptest::array::uniform32(proptest::prelude::any::<u8>()),
    ) {
        let key = DpopKey::from_random_bytes(DpopAlgorithm::Es256, &seed);
        let key = match key {
            Ok(key) => key,
            Err(error) => {
                // Only out-of-range scalars are refused, and the error never quotes them.
                let text = format!("{error} {error:?}");
                proptest::prop_assert!(text.contains("draw new bytes"));
                return Ok(());
            }
        };
        let pem = key.to_pkcs8_pem().expect("a PEM");
        let body: String = pem.expose().lines().filter(|l| !l.starts_with("-----")).collect();
        let secret = Secret::new(token.clone());
        let input = ProofInput::new(&method, &url, 1, seed[..16].try_into().expect("16 bytes"))
            .nonce(nonce.as_deref())
            .access_token(&secret);
        let mut printed = format!("{key:?} {input:?} {pem:?}");
        match key.proof(&input) {
            Ok(proof) => {
                proptest::prop_assert!(!proof.contains(&token));
                let claims = part(&proof, 1);
                let expected = ath(&token);
                proptest::prop_assert_eq!(claims["ath"].as_str(), Some(expected.as_str()));
            }
            Err(error) => printed.push_str(&format!("{error} {error:?}")),
        }
        proptest::prop_assert!(!printed.contains(&token), "{}", printed);
        proptest::prop_assert!(!printed.contains(&body[..24]), "{}", printed);
    }

    #[test]
    fn any_header_value_parses_without_panicking(value in "[ -~]{0,80}") {
        let challenges = Challenge::parse_all(&value);
        for challenge in &challenges {
            proptest::prop_assert!(!challenge.scheme().is_empty());
        }
    }

    #[test]
    fn htu_never_keeps_a_query_a_fragment_or_user_information(
        user in "[a-z]{1,8}",
        path in "(/[a-zA-Z0-9%._~-]{0,6}){0,4}",
        query in "[a-z=&]{0,8}",
    ) {
        // The password holds a `!`, which the paths drawn here never do.
        let url = format!("https://{user}:pw!@host.example{path}?{query}#frag");
        let htu = htu(&url).expect("a URL");
        proptest::prop_assert!(htu.starts_with("https://host.example/"), "{}", htu);
        proptest::prop_assert!(!htu.contains('?') && !htu.contains('#') && !htu.contains("pw!"), "{}", htu);
        proptest::prop_assert_eq!(super::htu(&htu).expect("still a URL"), htu.clone());
    }
}
