//! Rule 15 at the token endpoint, as a property of the OAuth 2.0 refresher: whatever the
//! token endpoint answers, one exchange sends at most two requests, both presenting the
//! same refresh credential, each with a proof of the session's key; the second only
//! after a `use_dpop_nonce` answer to the first, and carrying that nonce. A second
//! challenge in a row is read as any answer (transient, never "sign in again"). Every
//! token carries the session's key, to be stored with it.
#![cfg(feature = "dpop")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use proptest::prelude::*;
use silent_refresh::{FailureKind, RefreshFailure, Secret};
use silent_refresh_driver::Error;
use silent_refresh_driver::oauth2_refresher::{BlockingHttpClient, HttpClient, OAuth2Refresher};
use silent_refresh_driver::runtime::threads::Refresher;
use silent_refresh_oauth2::RefreshGrant;
use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey, DpopSession};

/// One answer of the scripted token endpoint.
#[derive(Clone, Debug)]
enum Answer {
    /// `400 use_dpop_nonce` with this nonce.
    Challenge(u8),
    /// A DPoP-bound token.
    Token,
    /// `503`.
    Unavailable,
    /// `400 invalid_grant`.
    Dead,
}

/// What the endpoint saw: each request's refresh token and its proof's nonce.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A client that answers from a script and records what it was sent.
struct Scripted {
    script: Arc<Mutex<Vec<Answer>>>,
    seen: Seen,
}

impl HttpClient for Scripted {
    type Settings = (Arc<Mutex<Vec<Answer>>>, Seen);

    fn build(settings: Option<Self::Settings>, _timeout: Duration) -> Result<Self, Error> {
        let (script, seen) = settings.expect("a script");
        Ok(Self { script, seen })
    }
}

fn claim(proof: &str, name: &str) -> Option<String> {
    let payload = proof.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    json[name].as_str().map(str::to_owned)
}

impl BlockingHttpClient for Scripted {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        _timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, RefreshFailure> {
        let body = String::from_utf8(request.body().clone()).expect("a form");
        let refresh_token = form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == "refresh_token")
            .map(|(_, v)| v.into_owned())
            .expect("a refresh token");
        let proof = request
            .headers()
            .get("dpop")
            .and_then(|v| v.to_str().ok())
            .expect("every request carries a proof");
        assert_eq!(claim(proof, "htm").as_deref(), Some("POST"));
        self.seen
            .lock()
            .unwrap()
            .push((refresh_token, claim(proof, "nonce")));
        let answer = {
            let mut script = self.script.lock().unwrap();
            if script.is_empty() {
                Answer::Token
            } else {
                script.remove(0)
            }
        };
        let json = |status: u16, body: &str| {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(body.as_bytes().to_vec())
                .expect("a response")
        };
        Ok(match answer {
            Answer::Challenge(n) => {
                let mut response = json(400, r#"{"error":"use_dpop_nonce"}"#);
                response
                    .headers_mut()
                    .insert("dpop-nonce", format!("nonce-{n}").parse().expect("a value"));
                response
            }
            Answer::Token => json(
                200,
                r#"{"access_token":"at","token_type":"DPoP","expires_in":60,"refresh_token":"rt-2"}"#,
            ),
            Answer::Unavailable => json(503, r#"{"error":"temporarily_unavailable"}"#),
            Answer::Dead => json(400, r#"{"error":"invalid_grant"}"#),
        })
    }
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        3 => any::<u8>().prop_map(Answer::Challenge),
        3 => Just(Answer::Token),
        1 => Just(Answer::Unavailable),
        1 => Just(Answer::Dead),
    ]
}

proptest! {
    #[test]
    fn a_nonce_challenge_is_answered_once_within_the_same_exchange(
        script in proptest::collection::vec(answer(), 0..4),
    ) {
        let seen: Seen = Arc::default();
        let queue = Arc::new(Mutex::new(script.clone()));
        let session = DpopSession::new(DpopKey::from_random_bytes(DpopAlgorithm::Es256, &[3; 32]).unwrap());
        let refresher = OAuth2Refresher::<Scripted>::builder(RefreshGrant::new("http://127.0.0.1:1/token", "cli"))
            .client((queue, seen.clone()))
            .dpop(session.clone())
            .build()
            .unwrap();
        let result = refresher.refresh(Some(Secret::new("rt-1")));
        let seen = seen.lock().unwrap().clone();
        // At most two requests, one credential.
        prop_assert!(!seen.is_empty() && seen.len() <= 2, "{seen:?}");
        prop_assert!(seen.iter().all(|(rt, _)| rt == "rt-1"), "{seen:?}");
        let first = script.first().cloned().unwrap_or(Answer::Token);
        match first {
            Answer::Challenge(n) => {
                // Sent again at once, with the nonce.
                prop_assert_eq!(seen.len(), 2);
                prop_assert_eq!(seen[1].1.clone(), Some(format!("nonce-{n}")));
            }
            _ => prop_assert_eq!(seen.len(), 1),
        }
        let last = script.get(seen.len() - 1).cloned().unwrap_or(Answer::Token);
        match (last, &result) {
            (Answer::Token, Ok(token)) => {
                prop_assert_eq!(token.token_type.as_str(), "DPoP");
                prop_assert_eq!(token.dpop_key.as_ref(), Some(&session.key_pem().unwrap()));
            }
            (Answer::Challenge(_), Err(failure)) | (Answer::Unavailable, Err(failure)) => {
                prop_assert_eq!(failure.kind, FailureKind::Transient);
            }
            (Answer::Dead, Err(failure)) => {
                prop_assert_eq!(failure.kind, FailureKind::Terminal);
                prop_assert!(failure.message.contains(&session.thumbprint()), "{}", failure.message);
            }
            (last, result) => prop_assert!(false, "{last:?} gave {result:?}"),
        }
    }
}
