//! A sign-out that ends the session at the authorization server (RFC 7009) before it
//! forgets it here.

use std::future::Future;

use silent_refresh::Secret;
use silent_refresh_oauth2::{Error as OAuth2Error, RefreshGrant, RevocationRequest, TokenTypeHint};

use super::Issuer;
use crate::kernel::Revocable;
use crate::oauth2_refresher::HttpClient;
use crate::runtime::SendsWith;
use crate::runtime::threads::{NoThread, on_a_thread};
use crate::{Error, TokenSource};

/// How a revoking sign-out ended (the session is forgotten here in every case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedOut {
    /// The server revoked the refresh token (and the access token): the session is
    /// over there too.
    Revoked,
    /// The server has no revocation endpoint in its metadata: the session is
    /// forgotten here, and its refresh token stays valid at the server until it
    /// expires (or the user ends it in the server's account page).
    NotRevocable,
    /// There was no session to revoke (never signed in, or signed out already).
    NoSession,
}

impl<Rt, C> Issuer<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// Signs `source` out, ending its session at the server first: waits until the
    /// store has been read ([`TokenSource::ready`]), revokes the refresh token and then
    /// the access token at the revocation endpoint (RFC 7009, authenticated as
    /// `client`), signs the source out ([`TokenSource::sign_out`]: every waiting call
    /// is rejected, the token cleared) and forgets the stored session, waiting until
    /// the store has done it. A refresh token rotated while the revocation was on the
    /// wire is revoked too.
    ///
    /// [`TokenSource::sign_out`] stays the sign-out of programs without a revocation
    /// endpoint: it revokes nothing.
    ///
    /// # Errors
    ///
    /// The revocation failed ([`Error::NotRevoked`], saying why): the session is
    /// forgotten here all the same. The store could not forget it (its error: the
    /// session is still stored), or could not be read first
    /// ([`Error::StoreNotRead`]); a call from inside the token-change callback
    /// ([`Error::Reentrant`]).
    pub fn sign_out<'a>(
        &'a self,
        source: &'a TokenSource<Rt>,
        client: &'a RefreshGrant,
    ) -> Rt::Wait<impl Future<Output = Result<SignedOut, Error>> + 'a> {
        self.runtime().wait(async move {
            let kernel = source.kernel();
            // A session still in the store would be forgotten without being revoked.
            source
                .store_read_within(kernel.request_timeout())
                .await?;
            let held = kernel.revocable()?;
            let revocation = self.metadata().revocation_endpoint().map(|url| {
                RevocationRequest::new(url).allow_insecure_http(self.allow_insecure_http())
            });
            let mut failure = None;
            if let Some(revocation) = &revocation {
                failure = self.revoke(revocation, client, &held).await.err();
            }
            let at_sign_out = kernel.sign_out_taking()?;
            if let Some(revocation) = &revocation
                && at_sign_out.refresh_token.as_ref().map(Secret::expose)
                    != held.refresh_token.as_ref().map(Secret::expose)
            {
                // Rotated by a refresh while the first revocation was on the wire.
                let rotated = self.revoke(revocation, client, &at_sign_out).await;
                failure = failure.or(rotated.err());
            }
            self.forget(source).await?;
            let held_any = held.refresh_token.is_some() || held.access_token.is_some();
            match (failure, &revocation) {
                (Some(reason), _) => {
                    tracing::warn!(%reason, "signed out, but the session was not revoked at the server");
                    Err(Error::NotRevoked { reason })
                }
                (None, _) if !held_any => Ok(SignedOut::NoSession),
                (None, None) => Ok(SignedOut::NotRevocable),
                (None, Some(_)) => Ok(SignedOut::Revoked),
            }
        })
    }

    /// Revokes the refresh token, then the access token, of `held`; why it failed.
    async fn revoke(
        &self,
        revocation: &RevocationRequest,
        client: &RefreshGrant,
        held: &Revocable,
    ) -> Result<(), String> {
        let mut failure = None;
        let tokens = [
            (&held.refresh_token, TokenTypeHint::RefreshToken),
            (&held.access_token, TokenTypeHint::AccessToken),
        ];
        for (token, hint) in tokens {
            let Some(token) = token else {
                continue;
            };
            let revoked = async {
                let asked = revocation.request(client, token, hint)?;
                let answer = self.send("the revocation endpoint", asked).await?;
                revocation.read_response(client, token, hint, &answer)?;
                Ok::<(), Error>(())
            };
            match revoked.await {
                Ok(()) => {}
                // Servers that revoke only refresh tokens: the access token lives on
                // until it expires, the session does not.
                Err(Error::OAuth2(OAuth2Error::UnsupportedTokenType { .. }))
                    if hint == TokenTypeHint::AccessToken => {}
                Err(error) => {
                    failure.get_or_insert(error.to_string());
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Waits for the driver's forget (and a save queued before it) to have run, then
    /// forgets the stored session itself, to know that it is gone.
    async fn forget(&self, source: &TokenSource<Rt>) -> Result<(), Error> {
        let kernel = source.kernel();
        let Some(store) = kernel.store().cloned() else {
            return Ok(());
        };
        if !source.store_idle_within(kernel.request_timeout()).await {
            tracing::warn!("the token store is still busy after the sign-out; forgetting anyway");
        }
        let forget = move || store.forget();
        match on_a_thread("silent-refresh-store", forget, NoThread::RunHere).await {
            Some(forgot) => forgot,
            None => Err(Error::StoreUnavailable {
                store: "the token store".to_owned(),
                action: "forgotten",
                source: "it panicked".into(),
            }),
        }
    }
}
