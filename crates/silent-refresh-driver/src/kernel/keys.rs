//! The session's keys as the kernel knows them (rule 13): what each key's token is for
//! (its [`Target`]), its lock-free slot, the newest token of each for the store, and
//! the one stored record composed from them all (and split back into each key's).
//!
//! A stored record is the default key's token, carrying the lineage's refresh
//! credential and the session's DPoP key, plus the other keys' access tokens under
//! their targets' names ([`Token::keyed`]). A key with no token of its own yet is
//! stored as nothing; a default key with none is stored as a placeholder (an empty
//! access token expired at the epoch) that carries the credential. Entries under names
//! this process does not know are kept as they were read: other processes sharing the
//! session use them.

use std::sync::Arc;

use silent_refresh::time::{Instant, SystemTime};

use silent_refresh::{AccessToken, Expiry, KeyId, KeyedToken, Secret, Token};
use silent_refresh_oauth2::Target;

use super::fast::KeySlot;

/// The access token of a default key that has none: expired, so no process adopts it;
/// the record carries the lineage's credential all the same.
pub(crate) fn placeholder() -> Token {
    Token::bearer("", Expiry::At(SystemTime::UNIX_EPOCH))
}

/// Whether a stored access token may still be handed out (a wall-clock expiry not
/// passed, or none).
pub(crate) fn usable(token: &Token, wall_now: SystemTime) -> bool {
    !token.access_token.expose().is_empty()
        && match token.expiry {
            Expiry::Never => true,
            Expiry::At(at) => at > wall_now,
            Expiry::In(_) => false,
        }
}

/// `token` as one key's entry: its own access token only (the credential, the DPoP
/// key and the other keys' tokens belong to the record).
fn entry_of(mut token: Token) -> Token {
    token.refresh_token = None;
    token.dpop_key = None;
    token.keyed.clear();
    token
}

/// The token `record` holds for the key named `name` (empty: the default key), with
/// the record's credential and DPoP key: what that key adopts. `None`: the record has
/// no token for it.
pub(crate) fn split(record: &Token, name: &str) -> Option<Token> {
    let mut token = if name.is_empty() {
        record.clone()
    } else {
        record.keyed.iter().find(|e| e.key == name)?.token.clone()
    };
    token.keyed.clear();
    token.refresh_token.clone_from(&record.refresh_token);
    token.dpop_key.clone_from(&record.dpop_key);
    Some(token)
}

/// The record to store: `default` (or the placeholder) with `credential` and `dpop`,
/// the other keys' tokens under their names, and the `foreign` entries whose names no
/// key here has.
pub(crate) fn compose<'a>(
    default: Option<&Token>,
    credential: Option<Secret>,
    dpop: Option<Secret>,
    others: impl IntoIterator<Item = (&'a str, &'a Token)>,
    foreign: &[KeyedToken],
) -> Token {
    let mut record = default.cloned().map_or_else(placeholder, entry_of);
    record.refresh_token = credential;
    record.dpop_key = dpop;
    for (name, token) in others {
        record.keyed.push(KeyedToken {
            key: name.to_owned(),
            token: entry_of(token.clone()),
        });
    }
    let known: Vec<String> = record.keyed.iter().map(|e| e.key.clone()).collect();
    record.keyed.extend(
        foreign
            .iter()
            .filter(|e| !e.key.is_empty() && !known.contains(&e.key))
            .cloned(),
    );
    record
}

/// One key: what its token is for, its slot, what the fast path holds, and its newest
/// token for the store.
pub(super) struct Key {
    pub(super) target: Arc<Target>,
    pub(super) name: String,
    pub(super) slot: Arc<KeySlot>,
    pub(super) published: Option<(Arc<AccessToken>, Option<Instant>)>,
    pub(super) saved: Option<Token>,
}

/// Every key of the session (index: [`KeyId`]), and the record read last.
pub(super) struct Keys {
    keys: Vec<Key>,
    /// The record last read from the store (or found there by a save): a key
    /// registered later takes its entry from it, and its entries of names unknown
    /// here are stored again with every save.
    read: Option<Token>,
}

impl Keys {
    /// The default key alone, with the kernel's own slot.
    pub(super) fn new(default_slot: Arc<KeySlot>) -> Self {
        Self {
            keys: vec![Key {
                target: Arc::new(Target::default()),
                name: String::new(),
                slot: default_slot,
                published: None,
                saved: None,
            }],
            read: None,
        }
    }

    /// The key of `target`, if it has one.
    pub(super) fn find(&self, target: &Target) -> Option<KeyId> {
        let at = self.keys.iter().position(|k| *k.target == *target)?;
        Some(KeyId(u16::try_from(at).ok()?))
    }

    /// Adds the key `id` (the session's newest) for `target`.
    pub(super) fn push(&mut self, id: KeyId, target: Target) -> Arc<KeySlot> {
        debug_assert_eq!(usize::from(id.0), self.keys.len());
        let slot = Arc::new(KeySlot::default());
        self.keys.push(Key {
            name: target.name(),
            target: Arc::new(target),
            slot: slot.clone(),
            published: None,
            saved: None,
        });
        slot
    }

    pub(super) fn get(&self, id: KeyId) -> &Key {
        &self.keys[usize::from(id.0)]
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (KeyId, &mut Key)> {
        self.keys
            .iter_mut()
            .enumerate()
            .map(|(at, key)| (KeyId(u16::try_from(at).unwrap_or(u16::MAX)), key))
    }

    /// The slot of `id`.
    pub(super) fn slot(&self, id: KeyId) -> Arc<KeySlot> {
        self.get(id).slot.clone()
    }

    /// New credentials, or signed out: the tokens of the old session are not stored
    /// again.
    pub(super) fn reset(&mut self) {
        for key in &mut self.keys {
            key.saved = None;
        }
        self.read = None;
    }

    /// A record read from the store (at start, under its lock, in a save's conflict):
    /// its entries are the keys' newest tokens, and it is remembered for keys
    /// registered later. Returns each known key's token to adopt.
    pub(super) fn read(&mut self, record: &Token) -> Vec<(KeyId, Token)> {
        let mut adopt = Vec::new();
        for (id, key) in self.iter_mut() {
            if let Some(token) = split(record, &key.name) {
                key.saved = Some(token.clone());
                adopt.push((id, token));
            }
        }
        self.read = Some(record.clone());
        adopt
    }

    /// The entry the last record read holds for a key registered later, with the
    /// lineage's credential now.
    pub(super) fn entry_read(&self, id: KeyId, credential: Option<&Secret>) -> Option<Token> {
        let mut token = split(self.read.as_ref()?, &self.get(id).name)?;
        token.refresh_token = credential.cloned();
        Some(token)
    }

    /// The record a `Persist` of `id`'s `token` stores: `token` becomes the key's
    /// newest, and carries the lineage's newest credential and the DPoP key.
    pub(super) fn compose(&mut self, id: KeyId, token: Token) -> Token {
        let credential = token.refresh_token.clone();
        let dpop = token.dpop_key.clone().or_else(|| {
            self.keys[0]
                .saved
                .as_ref()
                .and_then(|t| t.dpop_key.clone())
                .or_else(|| self.read.as_ref().and_then(|r| r.dpop_key.clone()))
        });
        self.keys[usize::from(id.0)].saved = Some(token);
        let foreign = self.read.as_ref().map_or(&[][..], |r| &r.keyed[..]);
        let others = self.keys[1..]
            .iter()
            .filter_map(|k| Some((k.name.as_str(), k.saved.as_ref()?)));
        compose(
            self.keys[0].saved.as_ref(),
            credential,
            dpop,
            others,
            foreign,
        )
    }

    /// When the fast path's first token must be withdrawn.
    pub(super) fn fast_path_until(&self) -> Option<Instant> {
        self.keys
            .iter()
            .filter_map(|k| k.published.as_ref().and_then(|(_, until)| *until))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> Expiry {
        Expiry::At(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn keys_with(targets: &[Target]) -> Keys {
        let mut keys = Keys::new(Arc::new(KeySlot::default()));
        for (at, target) in targets.iter().enumerate() {
            keys.push(KeyId(u16::try_from(at + 1).unwrap()), target.clone());
        }
        keys
    }

    #[test]
    fn a_record_holds_every_key_under_its_name_and_splits_back() {
        let (a, b) = (
            Target::resource("https://a.example/"),
            Target::audience("b"),
        );
        let mut keys = keys_with(&[a.clone(), b.clone()]);
        let token_a = Token::bearer("at-a", at(100)).with_refresh_token("rt-1");
        let first = keys.compose(KeyId(1), token_a);
        // No default token yet: the placeholder carries the credential.
        assert!(!usable(&first, SystemTime::UNIX_EPOCH));
        assert_eq!(
            first.refresh_token.as_ref().map(Secret::expose),
            Some("rt-1")
        );
        let token_b = Token::bearer("at-b", at(200)).with_refresh_token("rt-2");
        let record = keys.compose(KeyId(2), token_b);
        let names: Vec<_> = record.keyed.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(names, [a.name(), b.name()]);
        assert!(record.keyed.iter().all(|e| e.token.refresh_token.is_none()));
        // Each key gets its own token back, with the newest credential.
        let back_a = split(&record, &a.name()).expect("a's entry");
        assert_eq!(back_a.access_token.expose(), "at-a");
        assert_eq!(
            back_a.refresh_token.as_ref().map(Secret::expose),
            Some("rt-2")
        );
        let back_b = split(&record, &b.name()).expect("b's entry");
        assert_eq!(back_b.access_token.expose(), "at-b");
        assert!(split(&record, &Target::audience("c").name()).is_none());
    }

    #[test]
    fn entries_of_unknown_names_are_kept_and_known_ones_replaced() {
        let a = Target::resource("https://a.example/");
        let other = Target::resource("https://other.example/");
        let mut stored = Token::bearer("at-0", at(50)).with_refresh_token("rt-1");
        stored.keyed = vec![
            KeyedToken {
                key: other.name(),
                token: Token::bearer("at-other", at(60)),
            },
            KeyedToken {
                key: a.name(),
                token: Token::bearer("at-a-old", at(70)),
            },
        ];
        let mut keys = keys_with(std::slice::from_ref(&a));
        let adopted = keys.read(&stored);
        assert_eq!(adopted.len(), 2, "the default key and a");
        let record = keys.compose(
            KeyId(1),
            Token::bearer("at-a-new", at(80)).with_refresh_token("rt-2"),
        );
        assert_eq!(record.access_token.expose(), "at-0");
        let entry = |name: &str| {
            record
                .keyed
                .iter()
                .filter(|e| e.key == name)
                .map(|e| e.token.access_token.expose().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(entry(&a.name()), ["at-a-new"]);
        assert_eq!(entry(&other.name()), ["at-other"]);
    }

    #[test]
    fn a_key_registered_later_takes_its_entry_with_the_newest_credential() {
        let a = Target::resource("https://a.example/");
        let mut stored = Token::bearer("at-0", at(50)).with_refresh_token("rt-old");
        stored.keyed.push(KeyedToken {
            key: a.name(),
            token: Token::bearer("at-a", at(70)),
        });
        let mut keys = keys_with(&[]);
        keys.read(&stored);
        let id = KeyId(1);
        keys.push(id, a);
        let entry = keys
            .entry_read(id, Some(&Secret::new("rt-new")))
            .expect("its entry");
        assert_eq!(entry.access_token.expose(), "at-a");
        assert_eq!(
            entry.refresh_token.as_ref().map(Secret::expose),
            Some("rt-new")
        );
    }

    proptest::proptest! {
        /// Whatever order the keys save in, the record gives every key its own newest
        /// token back, never another key's, with the newest credential; and the
        /// entries of names this process does not know come through untouched.
        #[test]
        fn every_key_gets_its_own_newest_token_back(
            saves in proptest::collection::vec((0usize..5, 0u64..1000), 1..40),
            foreign in proptest::collection::btree_set(0u8..3, 0..3),
        ) {
            let targets: Vec<Target> =
                (1..5).map(|i| Target::resource(format!("https://api-{i}.example/"))).collect();
            let mut keys = keys_with(&targets);
            let mut stored = Token::bearer("at-start", at(1)).with_refresh_token("rt-start");
            stored.keyed = foreign
                .iter()
                .map(|f| KeyedToken {
                    key: format!("audience=other-{f}"),
                    token: Token::bearer(format!("at-other-{f}"), at(2)),
                })
                .collect();
            keys.read(&stored);
            let mut newest: Vec<Option<String>> = vec![None; 5];
            newest[0] = Some("at-start".to_owned());
            let mut record = stored.clone();
            for (step, (key, n)) in saves.iter().enumerate() {
                let access = format!("at-{key}-{n}-{step}");
                let credential = format!("rt-{step}");
                let token = Token::bearer(access.as_str(), at(1000 + *n))
                    .with_refresh_token(credential.as_str());
                record = keys.compose(KeyId(u16::try_from(*key).unwrap()), token);
                newest[*key] = Some(access);
                proptest::prop_assert_eq!(
                    record.refresh_token.as_ref().map(Secret::expose),
                    Some(credential.as_str())
                );
            }
            for (key, expected) in newest.iter().enumerate() {
                let name = if key == 0 { String::new() } else { targets[key - 1].name() };
                let back = split(&record, &name).map(|t| t.access_token.expose().to_owned());
                proptest::prop_assert_eq!(&back, expected, "key {}", key);
            }
            for f in &foreign {
                let name = format!("audience=other-{f}");
                let back = split(&record, &name).map(|t| t.access_token.expose().to_owned());
                proptest::prop_assert_eq!(back, Some(format!("at-other-{f}")));
            }
            let names: Vec<&str> = record.keyed.iter().map(|e| e.key.as_str()).collect();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            proptest::prop_assert_eq!(unique.len(), names.len(), "one entry per name");
        }
    }
}
