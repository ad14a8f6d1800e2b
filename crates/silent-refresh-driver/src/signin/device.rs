//! The device authorization grant (RFC 8628): a code for the user to enter on another
//! device, then polls of the token endpoint at the server's interval until the user
//! has approved (or denied) the sign-in.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use silent_refresh::Credentials;
use silent_refresh_oauth2::{
    DeviceAuthorizationRequest, DevicePoll, Error as OAuth2Error, RefreshGrant, TransportError,
};

use super::Issuer;
use super::cancel::{CancelSignIn, Clockwork};
use crate::oauth2_refresher::HttpClient;
use crate::runtime::SendsWith;
use crate::{Error, TokenSource};

/// A device sign-in to start: [`Issuer::device`]. Ask for the scope the program needs
/// (with `offline_access` where the server wants it for a refresh token), then
/// [`start`](Self::start) it.
#[must_use]
pub struct DeviceFlow<Rt, C> {
    issuer: Issuer<Rt, C>,
    client: RefreshGrant,
    /// `None`: the server has no device authorization endpoint.
    request: Option<DeviceAuthorizationRequest>,
}

impl<Rt, C> fmt::Debug for DeviceFlow<Rt, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceFlow")
            .field("issuer", &self.issuer)
            .field("client", &self.client)
            .field("request", &self.request)
            .finish()
    }
}

impl<Rt, C> Issuer<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// A device sign-in (RFC 8628) of `client` ([`client`](Self::client)): for a
    /// program without a browser at hand, whose user approves on another device.
    pub fn device(&self, client: &RefreshGrant) -> DeviceFlow<Rt, C> {
        let request = self.metadata().device_authorization_endpoint().map(|url| {
            DeviceAuthorizationRequest::new(url).allow_insecure_http(self.allow_insecure_http())
        });
        DeviceFlow {
            issuer: self.clone(),
            client: client.clone(),
            request,
        }
    }
}

impl<Rt, C> DeviceFlow<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// The scope to ask for (space-separated), such as `openid offline_access`.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.request = self.request.map(|request| request.scope(scope));
        self
    }

    /// An extra parameter of the device authorization request (`resource`,
    /// `audience`…).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request = self.request.map(|request| request.param(name, value));
        self
    }

    /// Asks the device authorization endpoint for a code to sign `source` in with:
    /// show the user its [`user_code`](DeviceCode::user_code) and
    /// [`verification_uri`](DeviceCode::verification_uri), then call
    /// [`DeviceCode::sign_in`]. Its lifetime counts on the source's clock from now.
    ///
    /// # Errors
    ///
    /// The server has no device flow ([`Error::NoEndpoint`]), refused the client or
    /// the scope, or answered something unusable ([`Error::OAuth2`]), or gave no answer
    /// ([`Error::NoAnswer`]).
    pub fn start(
        self,
        source: &TokenSource<Rt>,
    ) -> Rt::Wait<impl Future<Output = Result<DeviceCode<Rt, C>, Error>> + use<Rt, C>> {
        let source = source.clone();
        let runtime = self.issuer.runtime().clone();
        runtime.wait(async move {
            let Some(request) = self.request else {
                return Err(Error::NoEndpoint {
                    issuer: self.issuer.metadata().issuer().to_owned(),
                    endpoint: "device_authorization_endpoint",
                    flow: "the device authorization grant",
                    hint: "sign in with the browser (the authorization code flow) instead",
                });
            };
            let sent = source.kernel().clock().now();
            let asked = request.request(&self.client)?;
            let answer = self
                .issuer
                .send("the device authorization endpoint", asked)
                .await?;
            let authorization = request.read_response(&self.client, &answer)?;
            let poll = DevicePoll::new(self.client, authorization, sent)
                .allow_insecure_http(self.issuer.allow_insecure_http());
            Ok(DeviceCode {
                issuer: self.issuer,
                source,
                poll,
                cancel: CancelSignIn::default(),
            })
        })
    }
}

/// A device code the user is to approve: show [`user_code`](Self::user_code) and
/// [`verification_uri`](Self::verification_uri) (or a link or QR code of
/// [`verification_uri_complete`](Self::verification_uri_complete)), then
/// [`sign_in`](Self::sign_in) waits for the approval. `Debug` never shows the secret
/// device code.
pub struct DeviceCode<Rt: crate::runtime::Caller, C> {
    issuer: Issuer<Rt, C>,
    source: TokenSource<Rt>,
    poll: DevicePoll,
    cancel: CancelSignIn,
}

impl<Rt: crate::runtime::Caller, C> fmt::Debug for DeviceCode<Rt, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCode")
            .field("user_code", &self.user_code())
            .field("verification_uri", &self.verification_uri())
            .field("interval", &self.poll.interval())
            .finish_non_exhaustive()
    }
}

impl<Rt: crate::runtime::Caller, C> DeviceCode<Rt, C> {
    /// The code the user enters at the verification URI.
    #[must_use]
    pub fn user_code(&self) -> &str {
        self.poll.authorization().user_code()
    }

    /// Where the user enters the code.
    #[must_use]
    pub fn verification_uri(&self) -> &str {
        self.poll.authorization().verification_uri()
    }

    /// The verification URI with the code in it, when the server gives one: for a link
    /// or a QR code (the user then only approves).
    #[must_use]
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.poll.authorization().verification_uri_complete()
    }

    /// The text the server suggests showing (Microsoft Entra ID's `message`), if any.
    #[must_use]
    pub fn message(&self) -> Option<&str> {
        self.poll.authorization().message()
    }

    /// How long the code lives, from when it was asked for.
    #[must_use]
    pub fn expires_in(&self) -> Duration {
        self.poll.authorization().expires_in()
    }

    /// A handle that cancels [`sign_in`](Self::sign_in) from elsewhere.
    #[must_use]
    pub fn cancel_handle(&self) -> CancelSignIn {
        self.cancel.clone()
    }
}

impl<Rt, C> DeviceCode<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// Polls the token endpoint at the server's interval (on the source's clock; 5 s
    /// more after each `slow_down`, as long as `authorization_pending`, the interval
    /// again after a failure that may pass) until the user decides, then signs the
    /// source in with the session ([`TokenSource::sign_in`]). Its token is handed to
    /// the store before any request gets it; [`TokenSource::until_durable`] says when
    /// it is stored.
    ///
    /// # Errors
    ///
    /// The user denied it, or the code expired ([`Error::OAuth2`] with the codec's
    /// `AccessDenied` or `DeviceCodeExpired`: start again), the token endpoint refused
    /// the client ([`Error::OAuth2`]), the program cancelled it
    /// ([`Error::SignInCancelled`]). Nothing is signed in then.
    pub fn sign_in(self) -> Rt::Wait<impl Future<Output = Result<(), Error>> + use<Rt, C>> {
        let runtime = self.issuer.runtime().clone();
        runtime.wait(async move {
            let DeviceCode {
                issuer,
                source,
                mut poll,
                cancel,
            } = self;
            let clock = Clockwork::new(source.runtime(), source.kernel().clock());
            loop {
                let Some(due) = poll.poll_timeout() else {
                    // Ended without a token and without saying why: cannot happen, the
                    // codec ends with an error.
                    return Err(OAuth2Error::DeviceCodeExpired.into());
                };
                clock.until(due, &cancel).await?;
                let Some(request) = poll.poll_request(clock.now())? else {
                    continue;
                };
                let sent = issuer.send_token_request(&source, request);
                match cancel.or_cancelled(sent).await {
                    Ok(answer) => {
                        if let Some(token) = poll.handle_response(clock.now(), &answer)? {
                            let token = super::with_session_key(&source, token);
                            source.sign_in(Credentials::Token(token));
                            return Ok(());
                        }
                    }
                    Err(Error::NoAnswer {
                        reason,
                        unreachable,
                        ..
                    }) => {
                        let transport = if unreachable {
                            TransportError::Connect(&reason)
                        } else {
                            TransportError::Other(&reason)
                        };
                        tracing::warn!(%reason, "a poll of the device flow got no answer; polling again");
                        poll.handle_transport_error(clock.now(), &transport);
                    }
                    Err(other) => return Err(other),
                }
            }
        })
    }
}
