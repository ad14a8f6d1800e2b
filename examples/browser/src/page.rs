//! The page (see the crate docs).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use js_sys::{Object, Reflect};
use silent_refresh_wasm::oauth2::{AuthorizationRequest, Discovery, Metadata};
use silent_refresh_wasm::silent_refresh::{
    Config, Credentials, Event, RefreshFailure, Secret, Token,
};
use silent_refresh_wasm::{
    AuthorizedClient, AuthorizedFetch, FetchClient, LocalHttpClient, OAuth2Refresher, Refresher,
    Runtime, TabsStore, TokenSource, Wasm,
};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;

/// Where this tab keeps a sign-in on its way (sessionStorage: this tab only): the
/// settings' query and the 64 random bytes the authorization request was made from.
const PENDING: &str = "silent-refresh-example:pending";

/// How long the page waits between two calls of the API.
const PAUSE: Duration = Duration::from_millis(250);

/// How long a discovery or code exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The page's settings, from its URL query.
struct Settings {
    issuer: String,
    client_id: String,
    scope: Option<String>,
    api: String,
    /// The query they came from, to come back to after the sign-in.
    query: String,
}

impl Settings {
    fn from_query(query: &str) -> Result<Self, String> {
        let query = query.trim_start_matches('?');
        let get = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let need = |name: &str| get(name).ok_or(format!("the page's query has no `{name}`"));
        Ok(Self {
            issuer: need("issuer")?,
            client_id: need("client_id")?,
            scope: get("scope"),
            api: need("api")?,
            query: query.to_owned(),
        })
    }
}

/// The running report, as `window.silentRefreshReport`.
#[derive(Default)]
struct Report {
    ok: Cell<u64>,
    failed: Cell<u64>,
    refreshes: Rc<Cell<u64>>,
    signed_in: Cell<bool>,
}

impl Report {
    fn publish(&self) {
        let report = Object::new();
        let set = |name: &str, value: JsValue| {
            let _ = Reflect::set(&report, &name.into(), &value);
        };
        set("ok", JsValue::from_f64(self.ok.get() as f64));
        set("failed", JsValue::from_f64(self.failed.get() as f64));
        set("refreshes", JsValue::from_f64(self.refreshes.get() as f64));
        set("signed_in", JsValue::from_bool(self.signed_in.get()));
        let _ = Reflect::set(&js_sys::global(), &"silentRefreshReport".into(), &report);
        status(&format!(
            "{} · {} answered, {} failed, {} refreshes in this tab",
            if self.signed_in.get() {
                "signed in"
            } else {
                "signed out"
            },
            self.ok.get(),
            self.failed.get(),
            self.refreshes.get()
        ));
    }
}

/// The OAuth 2.0 refresher, counting the exchanges this tab makes.
struct Counted {
    inner: OAuth2Refresher,
    count: Rc<Cell<u64>>,
}

impl Refresher for Counted {
    async fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        self.count.set(self.count.get() + 1);
        log("refresh: exchanging the refresh token");
        self.inner.refresh(refresh_token).await
    }

    fn token_endpoint(&self) -> Option<&str> {
        self.inner.token_endpoint()
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        self.inner.exchange_timeout()
    }
}

/// Starts the page.
#[wasm_bindgen(start)]
pub fn start() {
    wasm_bindgen_futures::spawn_local(async {
        let report = Rc::new(Report::default());
        report.publish();
        if let Err(error) = run(&report).await {
            log(&format!("stopped: {error}"));
            status(&format!("stopped: {error}"));
        }
    });
}

async fn run(report: &Rc<Report>) -> Result<(), String> {
    let window = web_sys::window().ok_or("no window")?;
    let location = window.location();
    let search = location.search().map_err(|_| "no location")?;
    let pending = session_storage()?.get_item(PENDING).ok().flatten();
    // Back from the sign-in: the settings are the ones kept before leaving.
    let returning = search.contains("code=") || search.contains("error=");
    let settings = match (&pending, returning) {
        (Some(pending), true) => {
            Settings::from_query(pending.split_once(' ').map_or("", |(query, _)| query))?
        }
        _ => Settings::from_query(&search)?,
    };
    let origin = location.origin().map_err(|_| "no origin")?;
    let path = location.pathname().map_err(|_| "no path")?;
    let redirect_uri = format!("{origin}{path}");

    let metadata = discover(&settings.issuer).await?;
    let grant = metadata.grant(settings.client_id.clone());
    let store = TabsStore::new(format!(
        "example {} {}",
        settings.issuer, settings.client_id
    ));
    let refresher = Counted {
        inner: OAuth2Refresher::builder(grant.clone())
            .build()
            .map_err(|e| e.to_string())?,
        count: report.refreshes.clone(),
    };
    let source = TokenSource::builder(Config::default())
        .store(store.clone())
        .refresher(refresher)
        .build()
        .map_err(|e| e.to_string())?;
    store.follow(&source);

    if let (Some(pending), true) = (pending, returning) {
        session_storage()?
            .remove_item(PENDING)
            .map_err(|_| "sessionStorage refused")?;
        let random = pending.split_once(' ').map_or("", |(_, random)| random);
        let flow = authorization(&metadata, &settings, &redirect_uri, random)?;
        let href = location.href().map_err(|_| "no href")?;
        let code = flow.read_redirect(&href).map_err(|e| e.to_string())?;
        let request = flow
            .token_request(&grant, &code)
            .map_err(|e| e.to_string())?;
        let response = FetchClient
            .send(request, TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let token = flow
            .read_token_response(&grant, &code, &response)
            .map_err(|e| e.to_string())?;
        source.sign_in(Credentials::Token(token));
        log("signed in");
        // The page's own URL again: no code in the history.
        let back = format!("{path}?{}", settings.query);
        let _ = window
            .history()
            .map_err(|_| "no history")?
            .replace_state_with_url(&JsValue::NULL, "", Some(&back));
    } else if store.stored().await.map_err(|e| e.to_string())?.is_none() {
        // No tab holds a session: sign in, coming back to this page.
        let mut random = [0u8; 64];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        let random = URL_SAFE_NO_PAD.encode(random);
        let flow = authorization(&metadata, &settings, &redirect_uri, &random)?;
        let url = flow.url().map_err(|e| e.to_string())?;
        session_storage()?
            .set_item(PENDING, &format!("{} {random}", settings.query))
            .map_err(|_| "sessionStorage refused")?;
        log("no session in any tab: signing in");
        location
            .assign(&url)
            .map_err(|_| "could not leave the page")?;
        return Ok(());
    } else {
        log("adopted the session the other tabs share");
    }

    let api = AuthorizedClient::builder(source.clone())
        .allow_url(&settings.api)
        .build()
        .map_err(|e| e.to_string())?;
    let mut events = source.subscribe();
    loop {
        while let Some(event) = events.try_recv() {
            if let Event::TokenAdopted {
                generation,
                attempt,
            } = event
            {
                let from = if attempt.is_some() {
                    "a refresh"
                } else {
                    "another tab or the sign-in"
                };
                log(&format!("token {} adopted, from {from}", generation.0));
            }
        }
        let request = http::Request::get(&settings.api)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        match api.fetch(request).await {
            Ok(response) if response.status().is_success() => {
                report.ok.set(report.ok.get() + 1);
                report.signed_in.set(true);
            }
            Ok(response) => {
                report.failed.set(report.failed.get() + 1);
                log(&format!("GET {}: {}", settings.api, response.status()));
            }
            Err(error) => {
                report.failed.set(report.failed.get() + 1);
                report.signed_in.set(!error.needs_sign_in());
                log(&format!("GET {}: {error}", settings.api));
            }
        }
        report.publish();
        Wasm.sleep(PAUSE).await;
    }
}

/// The authorization request made from `random` (64 bytes, base64url): the same
/// bytes make the same request, so it survives the page's leaving for the sign-in.
fn authorization(
    metadata: &Metadata,
    settings: &Settings,
    redirect_uri: &str,
    random: &str,
) -> Result<AuthorizationRequest, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(random)
        .map_err(|_| "the pending sign-in is damaged")?;
    let random: [u8; 64] = bytes
        .try_into()
        .map_err(|_| "the pending sign-in is damaged")?;
    let flow = AuthorizationRequest::from_metadata(
        metadata,
        settings.client_id.clone(),
        redirect_uri,
        random,
    )
    .map_err(|e| e.to_string())?;
    Ok(match &settings.scope {
        Some(scope) => flow.scope(scope.clone()),
        None => flow,
    })
}

/// The issuer's metadata, discovered with `fetch`.
async fn discover(issuer: &str) -> Result<Metadata, String> {
    let mut discovery = Discovery::new(issuer).map_err(|e| e.to_string())?;
    loop {
        let request = discovery.request().map_err(|e| e.to_string())?;
        let response = FetchClient
            .send(request, TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(metadata) = discovery
            .handle_response(&response)
            .map_err(|e| e.to_string())?
        {
            return Ok(metadata);
        }
    }
}

fn session_storage() -> Result<web_sys::Storage, String> {
    web_sys::window()
        .and_then(|window| window.session_storage().ok().flatten())
        .ok_or_else(|| "this page has no sessionStorage".to_owned())
}

/// A line in the page's log (the last 200 are kept).
fn log(line: &str) {
    let Some(element) = element("log") else {
        return;
    };
    let mut text = element.text_content().unwrap_or_default();
    let now = js_sys::Date::new_0().to_iso_string();
    text.push_str(&format!("{} {line}\n", String::from(now)));
    let lines: Vec<&str> = text.lines().collect();
    let kept = lines[lines.len().saturating_sub(200)..].join("\n");
    element.set_text_content(Some(&format!("{kept}\n")));
}

fn status(text: &str) {
    if let Some(element) = element("status") {
        element.set_text_content(Some(text));
    }
}

fn element(id: &str) -> Option<web_sys::Element> {
    web_sys::window()?.document()?.get_element_by_id(id)
}
