//! `oauth2_client`'s service credentials: which grant it sends (`--grant`), how the
//! client authenticates (`--auth`), its signing key (`--private-key PATH`) and the
//! subject token file of a token exchange (`--subject-token-file PATH`). Keys and
//! tokens come only from files, the client secret only from the environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use silent_refresh::{Credentials, Secret};
use silent_refresh_oauth2::{
    ClientAuth, JwtAssertion, RefreshGrant, SigningKey, SubjectTokenSource, TokenExchange,
};

use crate::dpop_key::DpopChoice;
use silent_refresh_testkit::keys::{self, PublicKey};
use silent_refresh_testkit::server::{AuthServer, ServerConfig};

/// The options this module reads from the command line (each takes a value).
pub const OPTIONS: [&str; 3] = ["--grant", "--private-key", "--subject-token-file"];

/// Which grant each exchange sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrantChoice {
    /// `refresh_token` (the default): a user's session.
    #[default]
    RefreshToken,
    /// `client_credentials`: the client's own token.
    ClientCredentials,
    /// The JWT bearer grant: an assertion signed with `--private-key`, issued by the
    /// client id.
    JwtBearer,
    /// Token exchange of the token in `--subject-token-file`, read on every exchange.
    TokenExchange,
}

impl GrantChoice {
    /// The name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::JwtBearer => "jwt_bearer",
            Self::TokenExchange => "token_exchange",
        }
    }
}

/// The service-credential settings of a run.
#[derive(Clone, Debug, Default)]
pub struct Service {
    /// The grant.
    pub grant: GrantChoice,
    /// The signing key (`--private-key`, or generated for the embedded server), for
    /// `private_key_jwt` and the JWT bearer grant.
    pub key: Option<SigningKey>,
    /// Its public key, for the embedded server to check assertions with.
    pub public_key: Option<PublicKey>,
    /// The subject token file of a token exchange.
    pub subject_token_file: Option<PathBuf>,
    /// Whether and with which key requests are proven (`--dpop`, `--dpop-key`).
    pub dpop: DpopChoice,
}

/// `--auth basic|post|none|private_key_jwt` (`none`: a public client, its id in the
/// body and no secret, even with `OAUTH_CLIENT_SECRET` set).
///
/// # Errors
///
/// Another value.
pub fn parse_auth(value: Option<&str>) -> Result<ClientAuth, String> {
    match value {
        None | Some("basic") => Ok(ClientAuth::Basic),
        Some("post") => Ok(ClientAuth::Post),
        Some("none") => Ok(ClientAuth::None),
        Some("private_key_jwt") => Ok(ClientAuth::PrivateKeyJwt),
        Some(other) => Err(format!(
            "--auth must be basic, post or none, or private_key_jwt, not `{other}`"
        )),
    }
}

impl Service {
    /// Reads `--grant`, `--private-key` and `--subject-token-file`. The key is loaded
    /// here, so a key that does not parse stops the tool before anything is sent.
    /// With the embedded server a missing key is generated (ES256), and a missing
    /// subject token file is made in the temporary folder.
    ///
    /// # Errors
    ///
    /// An unknown grant, a key file that cannot be read or parsed, a key or subject
    /// token file that the grant and `--auth` need and that is missing.
    pub fn parse(
        grant: Option<&str>,
        auth: ClientAuth,
        private_key: Option<&str>,
        subject_token_file: Option<&str>,
        embedded: bool,
    ) -> Result<Self, String> {
        let grant = match grant {
            None | Some("refresh_token") => GrantChoice::RefreshToken,
            Some("client_credentials") => GrantChoice::ClientCredentials,
            Some("jwt_bearer") => GrantChoice::JwtBearer,
            Some("token_exchange") => GrantChoice::TokenExchange,
            Some(other) => {
                return Err(format!(
                    "--grant must be refresh_token, client_credentials, jwt_bearer or token_exchange, not `{other}`"
                ));
            }
        };
        let needs_key = auth == ClientAuth::PrivateKeyJwt || grant == GrantChoice::JwtBearer;
        let (key, public_key) = match private_key {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the private key {path}: {e}"))?;
                let key = SigningKey::from_pem(&pem).map_err(|e| format!("{path}: {e}"))?;
                (Some(key), keys::public_key_of(&pem).ok())
            }
            None if needs_key && embedded => {
                let pair = keys::generate_es256()?;
                let key = SigningKey::from_pem(&pair.private_pem).map_err(|e| e.to_string())?;
                (Some(key), Some(pair.public))
            }
            None if needs_key => {
                return Err(format!(
                    "--private-key PATH is required with --auth private_key_jwt and --grant jwt_bearer (now --grant {})",
                    grant.name()
                ));
            }
            None => (None, None),
        };
        if !needs_key && key.is_some() {
            return Err(
                "--private-key is used only with --auth private_key_jwt or --grant jwt_bearer"
                    .to_owned(),
            );
        }
        let subject_token_file = subject_token_file.map(PathBuf::from);
        match (grant, &subject_token_file) {
            (GrantChoice::TokenExchange, None) if !embedded => {
                return Err("--grant token_exchange needs --subject-token-file PATH".to_owned());
            }
            (GrantChoice::TokenExchange, _) | (_, None) => {}
            (_, Some(_)) => {
                return Err(
                    "--subject-token-file is used only with --grant token_exchange".to_owned(),
                );
            }
        }
        Ok(Self {
            grant,
            key,
            public_key,
            subject_token_file,
            dpop: DpopChoice::Off,
        })
    }

    /// Whether the grant starts from a refresh token (`OAUTH_REFRESH_TOKEN` or
    /// `--token-file`).
    #[must_use]
    pub fn needs_refresh_token(&self) -> bool {
        self.grant == GrantChoice::RefreshToken
    }

    /// The grant for the token endpoint `token_url` and client `client_id`, with the
    /// client secret (if any), `auth`, and `scope`.
    ///
    /// # Errors
    ///
    /// A setting the grant needs is missing.
    pub fn grant(
        &self,
        token_url: &str,
        client_id: &str,
        client_secret: Option<&Secret>,
        auth: ClientAuth,
        scope: Option<&str>,
    ) -> Result<RefreshGrant, String> {
        let mut grant = match self.grant {
            GrantChoice::RefreshToken => RefreshGrant::new(token_url, client_id),
            GrantChoice::ClientCredentials => {
                RefreshGrant::client_credentials(token_url, client_id)
            }
            GrantChoice::JwtBearer => {
                let key = self
                    .key
                    .clone()
                    .ok_or("--grant jwt_bearer needs --private-key")?;
                let assertion = JwtAssertion::new(key, client_id).subject(client_id);
                RefreshGrant::jwt_bearer(token_url, assertion)
            }
            GrantChoice::TokenExchange => {
                let path = self
                    .subject_token_file
                    .clone()
                    .ok_or("--grant token_exchange needs --subject-token-file")?;
                RefreshGrant::token_exchange(
                    token_url,
                    client_id,
                    TokenExchange::new(SubjectTokenSource::file(path)),
                )
            }
        };
        if auth == ClientAuth::PrivateKeyJwt {
            let key = self
                .key
                .clone()
                .ok_or("--auth private_key_jwt needs --private-key")?;
            // The JWT bearer grant has no client id of its own: the client's is its
            // assertion's issuer.
            grant = grant.client_id(client_id).private_key_jwt(key);
        } else if let Some(secret) = client_secret
            && self.grant != GrantChoice::JwtBearer
        {
            grant = grant.client_secret(secret.clone()).auth(auth);
        }
        if let Some(scope) = scope {
            grant = grant.scope(scope);
        }
        grant.check().map_err(|e| e.to_string())?;
        Ok(grant)
    }

    /// The credentials a token source starts from: the refresh token for the
    /// refresh-token grant (if one is given), otherwise none (the grant authenticates
    /// by itself at every exchange).
    #[must_use]
    pub fn credentials(&self, refresh_token: Option<&Secret>) -> Option<Credentials> {
        match self.grant {
            GrantChoice::RefreshToken => {
                refresh_token.map(|token| Credentials::RefreshToken(token.clone()))
            }
            _ => Some(Credentials::ClientCredentials { token: None }),
        }
    }

    /// The embedded server's settings for this service: the client's public key, the
    /// client id as the JWT bearer grant's trusted issuer, and DPoP mode with `--dpop`.
    pub fn configure_server(&self, server: &mut ServerConfig) {
        self.dpop.configure_server(server);
        if let Some(public) = &self.public_key {
            server.client_public_key = Some(public.clone());
            server.jwt_bearer_issuer = Some((server.client_id.clone(), public.clone()));
        }
    }
}

/// The kubelet of the embedded token exchange: keeps a projected token in a file,
/// rotated every half of its lifetime, until dropped (then the file is removed if the
/// rotator made it).
pub struct Rotator {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    made: Option<PathBuf>,
}

impl Rotator {
    /// Writes a first token into `path` (or a new file in the temporary folder) and
    /// rotates it on a thread of its own. Returns the rotator and the file's path.
    ///
    /// # Errors
    ///
    /// When the file cannot be written or the thread cannot start.
    pub fn start(
        server: &AuthServer,
        path: Option<&Path>,
        lifetime: Duration,
    ) -> Result<(Self, PathBuf), String> {
        let (path, made) = match path {
            Some(path) => (path.to_owned(), None),
            None => {
                let path = std::env::temp_dir().join(format!(
                    "oauth2_client-subject-token-{}",
                    std::process::id()
                ));
                (path.clone(), Some(path))
            }
        };
        let rotate = |server: &AuthServer| {
            server
                .rotate_subject_token(
                    &path,
                    "system:serviceaccount:default:oauth2-client",
                    lifetime,
                )
                .map_err(|e| {
                    format!(
                        "cannot write the subject token file {}: {e}",
                        path.display()
                    )
                })
        };
        rotate(server)?;
        let stop = Arc::new(AtomicBool::new(false));
        // The server outlives the run; the thread gets its own handle on the file and
        // a copy of what it needs to sign (a token per rotation, made by the server).
        let tokens = server.subject_token_maker();
        let thread = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::Builder::new()
                .name("subject token rotator".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::park_timeout(lifetime / 2);
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let token = tokens("system:serviceaccount:default:oauth2-client", lifetime);
                        let temporary = path.with_extension("rotating");
                        if std::fs::write(&temporary, token)
                            .and_then(|()| std::fs::rename(&temporary, &path))
                            .is_err()
                        {
                            break;
                        }
                    }
                })
                .map_err(|e| format!("cannot start the subject token rotator: {e}"))?
        };
        Ok((
            Self {
                stop,
                thread: Some(thread),
                made,
            },
            path,
        ))
    }
}

impl Drop for Rotator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        if let Some(path) = &self.made {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_names_grants_and_methods() {
        assert_eq!(parse_auth(None), Ok(ClientAuth::Basic));
        assert_eq!(
            parse_auth(Some("private_key_jwt")),
            Ok(ClientAuth::PrivateKeyJwt)
        );
        assert!(parse_auth(Some("mtls")).is_err());
        let default = Service::parse(None, ClientAuth::Basic, None, None, false).expect("default");
        assert_eq!(default.grant, GrantChoice::RefreshToken);
        assert!(default.needs_refresh_token());
        assert!(Service::parse(Some("password"), ClientAuth::Basic, None, None, false).is_err());
        // Keys and subject tokens are needed where the grant or method signs.
        for (grant, auth) in [
            (Some("jwt_bearer"), ClientAuth::Basic),
            (Some("client_credentials"), ClientAuth::PrivateKeyJwt),
            (Some("token_exchange"), ClientAuth::Basic),
        ] {
            assert!(
                Service::parse(grant, auth, None, None, false).is_err(),
                "{grant:?}"
            );
        }
        let embedded = Service::parse(Some("jwt_bearer"), ClientAuth::Basic, None, None, true)
            .expect("a key is generated for the embedded server");
        assert!(embedded.key.is_some() && embedded.public_key.is_some());
        assert!(
            Service::parse(
                Some("client_credentials"),
                ClientAuth::Basic,
                None,
                Some("/x"),
                false
            )
            .is_err()
        );
    }

    #[test]
    fn a_key_that_does_not_parse_stops_the_tool_at_once() {
        let dir = std::env::temp_dir().join(format!("grants-key-{}", std::process::id()));
        std::fs::write(
            &dir,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let error = Service::parse(None, ClientAuth::PrivateKeyJwt, dir.to_str(), None, false)
            .expect_err("refused");
        let _ = std::fs::remove_file(&dir);
        assert!(error.contains("PKCS#8"), "{error}");
    }
}
