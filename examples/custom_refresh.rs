//! `cargo run --example custom_refresh`: the browser pattern, ported. Against an app's
//! own JSON API on 127.0.0.1 (`/auth/login`, `/auth/refresh` rotating refresh tokens,
//! `/api/me`), in each adapter: log in, build a `TokenSource` whose closure refresher
//! calls `/auth/refresh` and reads failures with `classify`, and have 16 tasks (through
//! `AuthorizedClient`) or threads (through the ureq `BearerAuth`) call the API across
//! several 2-second tokens. Exits 0 only when no request failed, at most one refresh was
//! ever in flight, and no refresh token was reused.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use reqwest::Client;
use serde_json::{Value, json};
use silent_refresh::{Config, Credentials, Expiry, RefreshFailure, Secret, Token};
use silent_refresh_oauth2::classify;
use silent_refresh_testkit::app::{ApiServer, CallError, PASSWORD, Report, Runtime};
use silent_refresh_testkit::app::{Scenario, Tally, USERNAME};
use silent_refresh_tokio::AuthorizedClient;
use silent_refresh_ureq::BearerAuth;

type BoxError = Box<dyn Error + Send + Sync>;

type Answer = (StatusCode, HeaderMap, Vec<u8>); // status, headers, body
type Call = Result<StatusCode, CallError>; // what a worker's call of the API got

/// Reads an answer of `/auth/login` or `/auth/refresh`: a token set, or the failure. A
/// bare 401 ends this API's sessions (terminal); the rest is `classify`'s (5xx, 429:
/// retried; a redirect, 404: misconfigured), and no message quotes `sent`.
pub fn read_answer(answer: &Answer, sent: &Secret) -> Result<Token, RefreshFailure> {
    let (status, headers, body) = answer;
    if *status == StatusCode::UNAUTHORIZED {
        return Err(RefreshFailure::terminal("session over: sign in again"));
    }
    classify(*status, headers, body, &[sent])?;
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let (Some(at), Some(secs)) = (v["accessToken"].as_str(), v["expiresIn"].as_u64()) else {
        return Err(RefreshFailure::transient("the answer holds no token"));
    };
    let token = Token::bearer(at, Expiry::In(Duration::from_secs(secs)));
    Ok(match v["refreshToken"].as_str() {
        Some(next) => token.with_refresh_token(next),
        None => token,
    })
}

/// A login's answer as the credentials to start with.
fn signed_in(answer: &Answer) -> Result<Credentials, String> {
    let token = read_answer(answer, &PASSWORD.into());
    let token = token.map_err(|failure| format!("login failed: {}", failure.message))?;
    Ok(Credentials::Token(token))
}

/// tokio: POSTs `body` as JSON; the answer (a network failure is transient: retried).
async fn post(http: &Client, url: &str, body: Value) -> Result<Answer, RefreshFailure> {
    let net = |e: reqwest::Error| RefreshFailure::transient(e.without_url().to_string());
    let request = http.post(url).header(CONTENT_TYPE, "application/json");
    let answer = request.body(body.to_string()).send().await.map_err(net)?;
    let (status, headers) = (answer.status(), answer.headers().clone());
    Ok((status, headers, answer.bytes().await.map_err(net)?.to_vec()))
}

/// tokio: logs in, then an `AuthorizedClient` for `origin` over a source whose closure
/// refresher POSTs `/auth/refresh`, its token endpoint (never sent the access token).
pub async fn tokio_client(origin: &str, config: Config) -> Result<AuthorizedClient, BoxError> {
    let http = Client::builder().redirect(reqwest::redirect::Policy::none());
    let http = http.timeout(config.refresh_timeout()).build()?;
    let login = json!({ "username": USERNAME, "password": PASSWORD });
    let login = post(&http, &format!("{origin}/auth/login"), login).await?;
    let refresh_url = format!("{origin}/auth/refresh");
    let source = silent_refresh_tokio::TokenSource::builder(config)
        .credentials(signed_in(&login)?)
        .token_endpoint(&refresh_url)
        .refresher(move |rt: Option<Secret>| {
            let (http, url) = (http.clone(), refresh_url.clone());
            async move {
                let rt = rt.ok_or_else(|| RefreshFailure::terminal("signed out"))?;
                let body = json!({ "refreshToken": rt.expose() });
                read_answer(&post(&http, &url, body).await?, &rt)
            }
        })
        .build()?;
    let client = AuthorizedClient::builder(source).allow_origin(origin);
    Ok(client.build()?)
}

/// tokio: `GET url` with the token (a 401 is reported and the request sent once more).
pub async fn tokio_get(auth: &AuthorizedClient, http: &Client, url: &str) -> Call {
    let other = |e: reqwest::Error| CallError::other(e.without_url());
    let request = http.get(url).build().map_err(other)?;
    let answer = auth.execute(http, request).await;
    let answer = answer.map_err(|e| CallError::new(e.needs_sign_in(), e))?;
    let status = answer.status();
    answer.bytes().await.map_err(other)?; // the connection goes back to the pool
    Ok(status)
}

/// Blocking: POSTs `body` as JSON; the answer (a network failure is transient: retried).
fn post_blocking(agent: &ureq::Agent, url: &str, body: Value) -> Result<Answer, RefreshFailure> {
    let net = |e: ureq::Error| RefreshFailure::transient(e.to_string());
    let request = agent.post(url).header(CONTENT_TYPE, "application/json");
    let mut answer = request.send(body.to_string()).map_err(net)?;
    let body = answer.body_mut().read_to_vec().map_err(net)?;
    Ok((answer.status(), answer.headers().clone(), body))
}

/// Blocking: logs in, then a ureq agent with the `BearerAuth` middleware for `origin`,
/// over a source whose closure refresher POSTs `/auth/refresh` (its token endpoint: the
/// middleware passes requests there through untouched).
pub fn blocking_agent(origin: &str, config: Config) -> Result<ureq::Agent, BoxError> {
    let agent = |timeout| {
        let config = ureq::Agent::config_builder().http_status_as_error(false);
        config.max_redirects(0).timeout_global(Some(timeout))
    };
    let http: ureq::Agent = agent(config.refresh_timeout()).build().into();
    let login = json!({ "username": USERNAME, "password": PASSWORD });
    let login = post_blocking(&http, &format!("{origin}/auth/login"), login)?;
    let (refresh_url, timeout) = (format!("{origin}/auth/refresh"), config.request_timeout());
    let source = silent_refresh_ureq::TokenSource::builder(config)
        .credentials(signed_in(&login)?)
        .token_endpoint(&refresh_url)
        .refresher(move |rt: Option<Secret>| {
            let rt = rt.ok_or_else(|| RefreshFailure::terminal("signed out"))?;
            let body = json!({ "refreshToken": rt.expose() });
            read_answer(&post_blocking(&http, &refresh_url, body)?, &rt)
        })
        .build()?;
    let auth = BearerAuth::builder(source).allow_origin(origin);
    Ok(auth.build_agent(agent(timeout))?)
}

/// Blocking: `GET url` with the token (a 401 is reported and the request sent once more).
pub fn blocking_get(agent: &ureq::Agent, url: &str) -> Call {
    match agent.get(url).call() {
        Ok(mut answer) => {
            answer.body_mut().read_to_vec().map_err(CallError::other)?; // back to the pool
            Ok(answer.status())
        }
        Err(ureq::Error::Other(e)) => match e.downcast_ref::<silent_refresh_ureq::Error>() {
            Some(e) => Err(CallError::new(e.needs_sign_in(), e)),
            None => Err(CallError::other(e)),
        },
        Err(e) => Err(CallError::other(e)),
    }
}

/// Starts the API, signs in, and has the scenario's workers call `GET /api/me` until
/// its time is up.
pub fn run(scenario: &Scenario) -> Result<Report, BoxError> {
    let server = ApiServer::start(scenario.server.clone())?;
    let (origin, me, tally) = (server.origin(), server.me_url(), Arc::new(Tally::default()));
    let (end, pause) = (Instant::now() + scenario.duration, scenario.pause);
    match scenario.runtime {
        Runtime::Tokio => tokio::runtime::Runtime::new()?.block_on(async {
            let client = tokio_client(&origin, scenario.config()).await?;
            let http = Client::new();
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..scenario.workers {
                let (client, http, me, tally) =
                    (client.clone(), http.clone(), me.clone(), tally.clone());
                workers.spawn(async move {
                    while Instant::now() < end {
                        tally.record(tokio_get(&client, &http, &me).await);
                        tokio::time::sleep(pause).await;
                    }
                });
            }
            workers.join_all().await;
            Ok::<_, BoxError>(())
        })?,
        Runtime::Blocking => {
            let agent = blocking_agent(&origin, scenario.config())?;
            std::thread::scope(|scope| {
                for _ in 0..scenario.workers {
                    scope.spawn(|| {
                        while Instant::now() < end {
                            tally.record(blocking_get(&agent, &me));
                            std::thread::sleep(pause);
                        }
                    });
                }
            });
        }
    }
    Ok(tally.report(scenario.runtime, server.stats()))
}

fn main() -> Result<ExitCode, BoxError> {
    let mut passed = true;
    for runtime in [Runtime::Tokio, Runtime::Blocking] {
        let scenario = Scenario::example(runtime);
        println!("{}", scenario.describe());
        let report = run(&scenario)?;
        println!("{}\n{}", report.summary(), report.json());
        passed &= report.passed();
    }
    Ok(ExitCode::from(u8::from(!passed)))
}
