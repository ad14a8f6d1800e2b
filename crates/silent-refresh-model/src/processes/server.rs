//! The simulated identity server: rotates refresh credentials, detects reuse.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{Expiry, Token};

/// One grant (a sign-in's session): its chain of refresh credentials.
#[derive(Debug)]
pub(super) struct Grant {
    /// Every refresh credential issued, oldest first; the last is the newest.
    pub(super) chain: Vec<String>,
    pub(super) alive: bool,
    /// Its newest credential was lost by an unknown outcome.
    pub(super) orphaned: bool,
    /// Another sign-in's save replaced it in the store.
    pub(super) abandoned: bool,
}

/// The simulated identity server: rotates refresh credentials, detects reuse.
#[derive(Debug, Default)]
pub struct Server {
    pub(super) grants: Vec<Grant>,
    /// Refresh credential → (grant, index in its chain).
    pub(super) credentials: HashMap<String, (usize, usize)>,
    /// How many times each credential was presented.
    pub(super) presented: HashMap<String, u32>,
    /// Access token → when it expires.
    pub(super) access: HashMap<String, Instant>,
    pub(super) issued: u64,
}

impl Server {
    /// A new grant and its first token (expiring `ttl` after `now`).
    pub(super) fn sign_in(
        &mut self,
        now: Instant,
        wall: SystemTime,
        ttl: Duration,
    ) -> (usize, Token) {
        let grant = self.grants.len();
        let refresh = format!("rt-{grant}-0");
        self.credentials.insert(refresh.clone(), (grant, 0));
        self.grants.push(Grant {
            chain: vec![refresh.clone()],
            alive: true,
            orphaned: false,
            abandoned: false,
        });
        let mut token = self.access_token(now, ttl).with_refresh_token(refresh);
        token.expiry = Expiry::At(wall + ttl);
        token.issued_at = Some(wall);
        (grant, token)
    }

    pub(super) fn access_token(&mut self, now: Instant, ttl: Duration) -> Token {
        self.issued += 1;
        let access = format!("at-{}", self.issued);
        self.access.insert(access.clone(), now + ttl);
        Token::bearer(access, Expiry::In(ttl))
    }

    /// The grant and position of a refresh credential.
    pub(super) fn rank(&self, refresh: &str) -> Option<(usize, usize)> {
        self.credentials.get(refresh).copied()
    }

    pub(super) fn newest(&self, grant: usize) -> Option<&str> {
        self.grants
            .get(grant)
            .and_then(|g| g.chain.last())
            .map(String::as_str)
    }
}
