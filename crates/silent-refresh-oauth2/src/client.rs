//! What every HTTP client's refresher does around the codec, written once: the checks
//! when it is built, the request of one exchange, and the reading of its answer or of
//! its transport failure. Still sans-IO: the adapter reads the clock, the random
//! generator and the subject token file, sends the bytes, and hands back what came (an
//! answer, or how its HTTP client failed).

use std::fmt;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use silent_refresh::{RefreshFailure, Secret, Token};

use super::{ExchangeContext, RefreshGrant, redact_location};
use crate::origin::{self, Origin};

/// The default timeout of one refresh exchange, from connecting to the end of the
/// response: the core's default `refresh_timeout`.
pub const DEFAULT_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest token endpoint answer a refresher reads: token responses are a few
/// kilobytes, and a longer answer is a [`TransportError::TooLong`].
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

impl RefreshGrant {
    /// What a refresher checks when it is built, so that one that can never work is
    /// refused at start, not at the first refresh: the token URL is an absolute http(s)
    /// URL, plain `http` only to loopback unless `allow_insecure_http` (the refresh
    /// credential and the client secret would cross the network in clear text), a
    /// timeout above zero, and the grant's own [`check`](Self::check).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`](crate::Error::InvalidUrl),
    /// [`Error::InsecureHttp`](crate::Error::InsecureHttp) naming the origin, or
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the setting.
    pub fn check_refresher(
        &self,
        allow_insecure_http: bool,
        timeout: Duration,
    ) -> Result<(), crate::Error> {
        let origin = Origin::of(&origin::parse_url(self.token_url())?)?;
        if !origin.is_https() && !origin.is_loopback() && !allow_insecure_http {
            return Err(crate::Error::InsecureHttp {
                origin: origin.to_string(),
            });
        }
        if timeout.is_zero() {
            return Err(crate::Error::InvalidConfig(
                "the refresh request's timeout must be greater than zero",
            ));
        }
        self.check()
    }

    /// Starts one exchange with what the adapter read of the world: the wall clock
    /// (`now`), 32 bytes of its random generator (each signed assertion's `jti`; the
    /// generator's error fails the exchange as transient) and, for token exchange,
    /// `read_file` to read the subject token afresh (`std::fs::read`). Returns the
    /// request to send, and the [`Exchange`] that reads what comes back.
    ///
    /// # Errors
    ///
    /// The failure of the random generator, of the subject token source, or of the
    /// request (see [`request_with`](Self::request_with)), each in its class.
    pub fn start_exchange<'a>(
        &'a self,
        refresh_token: Option<&'a Secret>,
        now: SystemTime,
        random: Result<[u8; 32], impl fmt::Display>,
        read_file: impl FnOnce(&Path) -> io::Result<Vec<u8>>,
    ) -> Result<(http::Request<Vec<u8>>, Exchange<'a>), RefreshFailure> {
        let random = random.map_err(|e| {
            RefreshFailure::transient(format!(
                "the operating system's random generator failed ({e}), so no assertion can \
                 be signed"
            ))
        })?;
        let mut context = ExchangeContext::new(now, random);
        if let Some(source) = self.subject_token_source() {
            context = context.with_subject_token(source.fetch(read_file)?);
        }
        let request = self.request_with(refresh_token, &context)?;
        let exchange = Exchange {
            grant: self,
            refresh_token,
            context,
        };
        Ok((request, exchange))
    }
}

/// One exchange on the wire: reads its answer, or how it failed, into a token or a
/// classified [`RefreshFailure`]. Made by [`RefreshGrant::start_exchange`].
#[derive(Debug)]
pub struct Exchange<'a> {
    grant: &'a RefreshGrant,
    refresh_token: Option<&'a Secret>,
    context: ExchangeContext,
}

impl Exchange<'_> {
    /// Reads the token endpoint's answer (the whole body, at most
    /// [`MAX_RESPONSE_BYTES`]). A redirect is never followed: its `Location` is cut to
    /// origin and path ([`redact_location`]) and the failure is misconfigured, asking
    /// for the final token URL. Every secret the exchange sent is redacted from
    /// failure messages.
    ///
    /// # Errors
    ///
    /// The failure the answer stands for (see the [module docs](super)).
    pub fn read_response(
        &self,
        mut response: http::Response<Vec<u8>>,
    ) -> Result<Token, RefreshFailure> {
        if response.status().is_redirection() {
            redact_location(response.headers_mut(), self.grant.token_url());
        }
        self.grant
            .parse_response_with(&response, self.refresh_token, &self.context)
    }
}

/// How an exchange that got no (whole) answer failed, as the adapter's HTTP client
/// says it. The text given must hold no URL (its query may hold secrets).
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum TransportError<'a> {
    /// No connection could be made: connection refused, no DNS answer, connect
    /// timeout. The failure is [`RefreshFailure::unreachable`]: requests without a
    /// usable token fail fast while the backoff runs.
    Connect(&'a dyn fmt::Display),
    /// No whole answer within the exchange's timeout (given).
    Timeout(Duration),
    /// The answer is longer than [`MAX_RESPONSE_BYTES`].
    TooLong,
    /// Anything else after connecting: TLS, a reset connection, a broken body.
    Other(&'a dyn fmt::Display),
}

impl fmt::Debug for TransportError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(error) => f.debug_tuple("Connect").field(&error.to_string()).finish(),
            Self::Timeout(timeout) => f.debug_tuple("Timeout").field(timeout).finish(),
            Self::TooLong => f.write_str("TooLong"),
            Self::Other(error) => f.debug_tuple("Other").field(&error.to_string()).finish(),
        }
    }
}

impl TransportError<'_> {
    /// The refresh failure this stands for: unreachable for [`Connect`](Self::Connect),
    /// transient otherwise.
    #[must_use]
    pub fn failure(&self) -> RefreshFailure {
        match self {
            Self::Connect(error) => RefreshFailure::unreachable(format!(
                "could not connect to the token endpoint: {error}; check that it is up and \
                 reachable from here (DNS, firewall, proxy)"
            )),
            Self::Timeout(timeout) => RefreshFailure::transient(format!(
                "no answer within the refresh request's timeout of {timeout:?}; raise it with \
                 OAuth2RefresherBuilder::timeout if the server is that slow"
            )),
            Self::TooLong => RefreshFailure::transient(format!(
                "the token endpoint's response is longer than {MAX_RESPONSE_BYTES} bytes"
            )),
            Self::Other(error) => RefreshGrant::transport_failure(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silent_refresh::FailureKind;

    #[test]
    fn insecure_token_urls_are_refused_beyond_loopback() {
        let check = |url: &str, allow: bool| {
            RefreshGrant::new(url, "app").check_refresher(allow, DEFAULT_EXCHANGE_TIMEOUT)
        };
        assert!(matches!(
            check("http://auth.example.com/token", false),
            Err(crate::Error::InsecureHttp { origin }) if origin == "http://auth.example.com:80"
        ));
        assert!(check("http://auth.example.com/token", true).is_ok());
        for url in [
            "https://auth.example.com/token",
            "http://127.0.0.1:8080/token",
            "http://127.9.9.9/token",
            "http://localhost/token",
            "http://[::1]:9000/token",
        ] {
            assert!(check(url, false).is_ok(), "{url}");
        }
        assert!(matches!(
            check("ftp://auth.example.com/token", true),
            Err(crate::Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            RefreshGrant::new("https://auth.example.com/token", "app")
                .check_refresher(false, Duration::ZERO),
            Err(crate::Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn transport_errors_are_classified() {
        let refused = TransportError::Connect(&"connection refused").failure();
        assert_eq!(refused.kind, FailureKind::Transient);
        assert!(refused.unreachable);
        assert!(
            refused.message.contains("connection refused"),
            "{}",
            refused.message
        );
        for other in [
            TransportError::Timeout(Duration::from_secs(3)),
            TransportError::TooLong,
            TransportError::Other(&"connection reset"),
        ] {
            let failure = other.failure();
            assert_eq!(failure.kind, FailureKind::Transient, "{other:?}");
            assert!(!failure.unreachable, "{other:?}");
        }
    }

    #[test]
    fn a_redirect_is_misconfigured_and_names_no_query() {
        let grant = RefreshGrant::new("https://auth.example.com/token", "app");
        let sent = Secret::new("rt-1");
        let (request, exchange) = grant
            .start_exchange(
                Some(&sent),
                SystemTime::UNIX_EPOCH,
                Ok::<_, &str>([0; 32]),
                |_| Err(io::ErrorKind::NotFound.into()),
            )
            .expect("a request");
        assert_eq!(request.method(), "POST");
        let answer = http::Response::builder()
            .status(307)
            .header("location", "/v2/token?code=s3cret")
            .body(Vec::new())
            .expect("a response");
        let failure = exchange.read_response(answer).expect_err("refused");
        assert_eq!(failure.kind, FailureKind::Misconfigured);
        assert!(
            failure
                .message
                .contains("https://auth.example.com/v2/token"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains("s3cret"), "{}", failure.message);
    }

    #[test]
    fn a_failed_random_generator_fails_the_exchange_as_transient() {
        let grant = RefreshGrant::new("https://auth.example.com/token", "app");
        let failure = grant
            .start_exchange(None, SystemTime::UNIX_EPOCH, Err("no entropy"), |_| {
                Ok(Vec::new())
            })
            .expect_err("no exchange");
        assert_eq!(failure.kind, FailureKind::Transient);
        assert!(
            failure.message.contains("no entropy"),
            "{}",
            failure.message
        );
    }
}
