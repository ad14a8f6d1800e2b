//! The stored session's record: the JSON object a store keeps (its layout is on
//! [`FileStore`](super::FileStore)), and the compare-and-swap rule every store applies.
//! Written once here, so that the file store and other stores (Redis) read and write
//! the same bytes and decide conflicts the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Serialize};
use silent_refresh::time::SystemTime;
use silent_refresh::{Expiry, KeyedToken, Secret, Token};
use zeroize::Zeroizing;

/// The wall clock's epoch, as web-time's `SystemTime` (std's own on native targets)
/// spells it.
const UNIX_EPOCH: SystemTime = SystemTime::UNIX_EPOCH;

/// The value of the `format` field of a session without a DPoP key: the first version,
/// which this version still writes for such a session (so older versions still read it).
pub const FORMAT: &str = "silent-refresh/token/1";
/// The value of the `format` field of a session with a DPoP key (`dpop_key`): a new
/// version, so that an older library refuses it rather than lose the key and prove
/// with another (its refresh token would then be refused).
pub const FORMAT_DPOP: &str = "silent-refresh/token/2";
/// The value of the `format` field of a session with tokens for several keys (rule 13:
/// `tokens`, one per resource or scope besides the session's own): a new version, so
/// that an older library refuses it rather than hand one API's token to another.
pub const FORMAT_KEYED: &str = "silent-refresh/token/3";

/// Why a token could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The token has a relative expiry ([`Expiry::In`]), which means nothing once the
    /// process ends.
    #[error("the token has a relative expiry; a store keeps wall-clock expiries")]
    RelativeExpiry,
    /// JSON encoding failed (out of memory).
    #[error("the token could not be encoded as JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// Whether saving `token`, refreshed from `from` (`None`: a sign-in), over `stored` is
/// a conflict: the store holds a session other than the one `token` was refreshed
/// from (another process refreshed first), and not `token` itself. A conflict is never
/// written over; the stored session is adopted instead.
#[must_use]
pub fn conflicts(stored: Option<&Token>, token: &Token, from: Option<&Secret>) -> bool {
    match (from, stored) {
        (Some(from), Some(stored)) => !holds(stored, from) && !same_token(stored, token),
        _ => false,
    }
}

/// Whether the stored token still holds the refresh credential `from`.
pub(crate) fn holds(stored: &Token, from: &Secret) -> bool {
    stored
        .refresh_token
        .as_ref()
        .is_some_and(|stored| secrets_equal(stored, from))
}

/// Whether the stored token is `token` already (a repeated save).
pub(crate) fn same_token(stored: &Token, token: &Token) -> bool {
    let same_refresh = match (&stored.refresh_token, &token.refresh_token) {
        (Some(a), Some(b)) => secrets_equal(a, b),
        _ => false,
    };
    same_refresh || secrets_equal(&stored.access_token, &token.access_token)
}

/// Compares two secrets in time that depends on their lengths only.
pub fn secrets_equal(a: &Secret, b: &Secret) -> bool {
    let (a, b) = (a.expose().as_bytes(), b.expose().as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// The file as written.
#[derive(Serialize)]
struct RecordOut<'a> {
    format: &'static str,
    access_token: &'a Secret,
    token_type: &'a str,
    scope: Option<&'a str>,
    refresh_token: Option<&'a Secret>,
    expires_at: Option<i64>,
    issued_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_key: Option<&'a Secret>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tokens: Vec<KeyedOut<'a>>,
    saved_at: i64,
}

/// Another key's token, as written (its refresh credential is the session's).
#[derive(Serialize)]
struct KeyedOut<'a> {
    key: &'a str,
    access_token: &'a Secret,
    token_type: &'a str,
    scope: Option<&'a str>,
    expires_at: Option<i64>,
    issued_at: Option<i64>,
}

/// Another key's token, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyedIn {
    key: String,
    access_token: Secret,
    token_type: String,
    #[serde(default)]
    scope: Option<String>,
    expires_at: Option<i64>,
    #[serde(default)]
    issued_at: Option<i64>,
}

/// The file as read, once [`check_fields`] accepted its shape.
#[derive(Deserialize)]
struct RecordIn {
    access_token: Secret,
    token_type: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    expires_at: Option<i64>,
    #[serde(default)]
    issued_at: Option<i64>,
    #[serde(default)]
    dpop_key: Option<Secret>,
    #[serde(default)]
    tokens: Vec<KeyedIn>,
}

/// The shape of the other keys' tokens, read without their values.
#[derive(Deserialize)]
struct TokensShape {
    #[serde(default)]
    tokens: Vec<BTreeMap<String, Kind>>,
}

/// Serialises `token` into a buffer sized once (no reallocation leaves a copy of the
/// secrets behind), as the JSON object described on [`FileStore`](super::FileStore).
///
/// # Errors
///
/// [`EncodeError::RelativeExpiry`] for an [`Expiry::In`] token (a store keeps
/// wall-clock expiries only).
pub fn encode(token: &Token) -> Result<Zeroizing<Vec<u8>>, EncodeError> {
    let expires_at = stored_expiry(token.expiry)?;
    let tokens = token
        .keyed
        .iter()
        .map(|keyed| {
            Ok(KeyedOut {
                key: &keyed.key,
                access_token: &keyed.token.access_token,
                token_type: &keyed.token.token_type,
                scope: keyed.token.scope.as_deref(),
                expires_at: stored_expiry(keyed.token.expiry)?,
                issued_at: keyed.token.issued_at.map(to_millis),
            })
        })
        .collect::<Result<Vec<_>, EncodeError>>()?;
    let record = RecordOut {
        format: if !tokens.is_empty() {
            FORMAT_KEYED
        } else if token.dpop_key.is_some() {
            FORMAT_DPOP
        } else {
            FORMAT
        },
        access_token: &token.access_token,
        token_type: &token.token_type,
        scope: token.scope.as_deref(),
        refresh_token: token.refresh_token.as_ref(),
        expires_at,
        issued_at: token.issued_at.map(to_millis),
        dpop_key: token.dpop_key.as_ref(),
        tokens,
        saved_at: to_millis(SystemTime::now()),
    };
    let mut counter = Counter(0);
    let mut bytes = serde_json::to_writer_pretty(&mut counter, &record)
        .map(|()| Zeroizing::new(Vec::with_capacity(counter.0 + 1)))
        .and_then(|mut bytes| serde_json::to_writer_pretty(&mut *bytes, &record).map(|()| bytes))
        .map_err(EncodeError::Json)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// An expiry as a store keeps it: milliseconds since the epoch, or none.
fn stored_expiry(expiry: Expiry) -> Result<Option<i64>, EncodeError> {
    match expiry {
        Expiry::Never => Ok(None),
        Expiry::At(at) => Ok(Some(to_millis(at))),
        Expiry::In(_) => Err(EncodeError::RelativeExpiry),
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a stored token, or says (without quoting the bytes: they may hold secrets)
/// why the bytes are not one.
///
/// # Errors
///
/// Why the bytes are not a stored session of this format, naming fields, never values.
pub fn decode(bytes: &[u8]) -> Result<Token, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("it is empty".to_owned());
    }
    let fields: BTreeMap<String, Kind> =
        serde_json::from_slice(bytes).map_err(|error| json_problem(&error))?;
    check_fields(&fields)?;
    if fields.contains_key("tokens") {
        let shape: TokensShape = serde_json::from_slice(bytes)
            .map_err(|_| "field `tokens` is not a list of objects".to_owned())?;
        for (index, entry) in shape.tokens.iter().enumerate() {
            check_keyed_fields(entry)
                .map_err(|reason| format!("entry {index} of `tokens`: {reason}"))?;
        }
    }
    let record: RecordIn = serde_json::from_slice(bytes).map_err(|_| {
        "a field appears more than once, or holds a value this version cannot read".to_owned()
    })?;
    let expiry = read_expiry(record.expires_at, "expires_at")?;
    let issued_at = read_time(record.issued_at, "issued_at")?;
    // Built field by field, so that a new field of `Token` keeps its default here.
    let mut token = Token::bearer(record.access_token, expiry);
    token.token_type = record.token_type;
    token.scope = record.scope;
    token.refresh_token = record.refresh_token;
    token.issued_at = issued_at;
    token.dpop_key = record.dpop_key;
    for entry in record.tokens {
        let mut keyed = Token::bearer(
            entry.access_token,
            read_expiry(entry.expires_at, "tokens.expires_at")?,
        );
        keyed.token_type = entry.token_type;
        keyed.scope = entry.scope;
        keyed.issued_at = read_time(entry.issued_at, "tokens.issued_at")?;
        token.keyed.push(KeyedToken {
            key: entry.key,
            token: keyed,
        });
    }
    Ok(token)
}

/// A stored expiry: milliseconds since the epoch, or none (never expires).
fn read_expiry(millis: Option<i64>, field: &str) -> Result<Expiry, String> {
    Ok(match read_time(millis, field)? {
        None => Expiry::Never,
        Some(at) => Expiry::At(at),
    })
}

/// A stored wall-clock time, if any.
fn read_time(millis: Option<i64>, field: &str) -> Result<Option<SystemTime>, String> {
    millis
        .map(|millis| from_millis(millis).ok_or_else(|| format!("field `{field}` is out of range")))
        .transpose()
}

/// Why the file did not parse as a JSON object, without its content (serde's own
/// messages may quote values).
fn json_problem(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Eof => format!(
            "its JSON ends early, at line {}: it is truncated",
            error.line()
        ),
        Category::Syntax => format!(
            "it is not JSON (syntax error at line {}, column {})",
            error.line(),
            error.column()
        ),
        Category::Data => "it is JSON, but not an object".to_owned(),
        Category::Io => "it could not be read".to_owned(),
    }
}

/// The type a field is expected to have.
#[derive(Clone, Copy)]
enum Expected {
    String,
    StringOrNull,
    MillisOrNull,
    Array,
}

/// Checks that the object is a stored session: our format, every required field, each
/// field of the right type. The reason names fields, never values.
fn check_fields(fields: &BTreeMap<String, Kind>) -> Result<(), String> {
    match fields.get("format") {
        Some(Kind::String { ours: true }) => {}
        Some(_) => {
            return Err(format!(
                "its `format` is none of `{FORMAT}`, `{FORMAT_DPOP}` and `{FORMAT_KEYED}`: another program, or a later \
                 version of this library, wrote it"
            ));
        }
        None => {
            return Err(
                "it has no `format` field: it is not a session this library wrote".to_owned(),
            );
        }
    }
    check_kinds(
        fields,
        &[
            ("access_token", Expected::String, true),
            ("token_type", Expected::String, true),
            ("expires_at", Expected::MillisOrNull, true),
            ("scope", Expected::StringOrNull, false),
            ("refresh_token", Expected::StringOrNull, false),
            ("issued_at", Expected::MillisOrNull, false),
            ("dpop_key", Expected::StringOrNull, false),
            ("tokens", Expected::Array, false),
        ],
    )
}

/// Checks one entry of `tokens`: every field it needs, of the right type, and no other.
fn check_keyed_fields(fields: &BTreeMap<String, Kind>) -> Result<(), String> {
    const KNOWN: [&str; 6] = [
        "key",
        "access_token",
        "token_type",
        "scope",
        "expires_at",
        "issued_at",
    ];
    if let Some(unknown) = fields.keys().find(|name| !KNOWN.contains(&name.as_str())) {
        return Err(format!("field `{unknown}` is not one this version reads"));
    }
    check_kinds(
        fields,
        &[
            ("key", Expected::String, true),
            ("access_token", Expected::String, true),
            ("token_type", Expected::String, true),
            ("expires_at", Expected::MillisOrNull, true),
            ("scope", Expected::StringOrNull, false),
            ("issued_at", Expected::MillisOrNull, false),
        ],
    )
}

/// Checks that each named field is there when required, and of the expected type.
fn check_kinds(
    fields: &BTreeMap<String, Kind>,
    expected: &[(&str, Expected, bool)],
) -> Result<(), String> {
    for &(name, expected, required) in expected {
        let Some(kind) = fields.get(name) else {
            if required {
                return Err(format!("field `{name}` is missing"));
            }
            continue;
        };
        let fits = match (expected, kind) {
            (_, Kind::String { .. }) => {
                !matches!(expected, Expected::MillisOrNull | Expected::Array)
            }
            (Expected::StringOrNull | Expected::MillisOrNull, Kind::Null) => true,
            (Expected::MillisOrNull, Kind::Integer) => true,
            (Expected::Array, Kind::Array) => true,
            _ => false,
        };
        if !fits {
            let wanted = match expected {
                Expected::String => "a string",
                Expected::StringOrNull => "a string or null",
                Expected::MillisOrNull => "a whole number of milliseconds or null",
                Expected::Array => "an array",
            };
            return Err(format!(
                "field `{name}` is {}, not {wanted}",
                kind.describe()
            ));
        }
    }
    Ok(())
}

/// The JSON type of a value, read without keeping the value.
enum Kind {
    Null,
    Bool,
    Integer,
    Number,
    String {
        /// Whether the string is [`FORMAT`], [`FORMAT_DPOP`] or [`FORMAT_KEYED`].
        ours: bool,
    },
    Array,
    Object,
}

impl Kind {
    fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Integer => "a whole number",
            Kind::Number => "a number out of range",
            Kind::String { .. } => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> de::Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Bool)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Integer)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Kind, E> {
        Ok(if i64::try_from(value).is_ok() {
            Kind::Integer
        } else {
            Kind::Number
        })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Kind, E> {
        Ok(Kind::String {
            ours: value == FORMAT || value == FORMAT_DPOP || value == FORMAT_KEYED,
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Kind, D::Error> {
        Kind::deserialize(deserializer)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Kind::Array)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Kind::Object)
    }
}

/// Wall-clock time as milliseconds since the Unix epoch, rounded down (saturating).
pub(crate) fn to_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let millis = before.as_millis() + u128::from(before.subsec_nanos() % 1_000_000 != 0);
            i64::try_from(millis).map_or(i64::MIN, |millis| -millis)
        }
    }
}

/// The inverse of [`to_millis`]; `None` when the system cannot represent the time.
fn from_millis(millis: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_millis(millis.unsigned_abs());
    if millis >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dpop_session_keeps_its_key_in_version_2_and_version_1_still_reads() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut token = Token::bearer("at-1", Expiry::At(wall)).with_refresh_token("rt-1");
        token.token_type = "DPoP".to_owned();
        token.dpop_key = Some(Secret::new(
            "-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n",
        ));
        let bytes = encode(&token).expect("encoded");
        let text = std::str::from_utf8(&bytes).expect("UTF-8");
        assert!(text.contains(FORMAT_DPOP), "{text}");
        let read = decode(&bytes).expect("read back");
        assert_eq!(read.dpop_key, token.dpop_key);
        assert_eq!(read.token_type, "DPoP");
        // Without a key: still version 1, which older versions read.
        token.dpop_key = None;
        let bytes = encode(&token).expect("encoded");
        let text = std::str::from_utf8(&bytes).expect("UTF-8");
        assert!(
            text.contains(FORMAT) && !text.contains("dpop_key"),
            "{text}"
        );
        let old = br#"{"format":"silent-refresh/token/1","access_token":"a","token_type":"Bearer","expires_at":null}"#;
        assert_eq!(decode(old).expect("version 1 reads").dpop_key, None);
        // The key never shows in an error about the record.
        let bad = br#"{"format":"silent-refresh/token/2","access_token":"a","token_type":"Bearer","expires_at":null,"dpop_key":7}"#;
        let error = decode(bad).expect_err("a number is no key");
        assert!(error.contains("dpop_key"), "{error}");
    }

    #[test]
    fn a_session_with_several_keys_keeps_each_token_under_its_key_in_version_3() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut token = Token::bearer("at-default", Expiry::At(wall)).with_refresh_token("rt-1");
        let mut orders = Token::bearer("at-orders", Expiry::At(wall + Duration::from_secs(60)));
        orders.scope = Some("orders:read".to_owned());
        orders.issued_at = Some(wall);
        token.keyed.push(KeyedToken {
            key: "resource=https%3A%2F%2Forders.example%2F".to_owned(),
            token: orders,
        });
        token.keyed.push(KeyedToken {
            key: "audience=billing".to_owned(),
            token: Token::bearer("at-billing", Expiry::Never),
        });
        let bytes = encode(&token).expect("encoded");
        let text = std::str::from_utf8(&bytes).expect("UTF-8");
        assert!(text.contains(FORMAT_KEYED), "{text}");
        let read = decode(&bytes).expect("read back");
        assert_eq!(read, token);
        // One key: the version older libraries read.
        token.keyed.clear();
        let text = String::from_utf8(encode(&token).expect("encoded").to_vec()).expect("UTF-8");
        assert!(text.contains(FORMAT) && !text.contains("tokens"), "{text}");
        // A malformed entry is named, its values never shown.
        let bad = br#"{"format":"silent-refresh/token/3","access_token":"a","token_type":"Bearer","expires_at":null,"tokens":[{"key":"k","access_token":"secret-at","token_type":"Bearer","expires_at":"soon"}]}"#;
        let error = decode(bad).expect_err("a string is no time");
        assert!(
            error.contains("entry 0") && error.contains("expires_at"),
            "{error}"
        );
        assert!(!error.contains("secret-at"), "{error}");
        let extra = br#"{"format":"silent-refresh/token/3","access_token":"a","token_type":"Bearer","expires_at":null,"tokens":[{"key":"k","access_token":"x","token_type":"Bearer","expires_at":null,"refresh_token":"rt"}]}"#;
        let error = decode(extra).expect_err("a key's own refresh token is not stored");
        assert!(error.contains("refresh_token"), "{error}");
        let relative = {
            let mut token = Token::bearer("a", Expiry::Never);
            token.keyed.push(KeyedToken {
                key: "k".to_owned(),
                token: Token::bearer("b", Expiry::In(Duration::from_secs(5))),
            });
            token
        };
        assert!(matches!(
            encode(&relative),
            Err(EncodeError::RelativeExpiry)
        ));
    }

    #[test]
    fn millis_round_down_both_sides_of_the_epoch() {
        let after = UNIX_EPOCH + Duration::from_micros(1_500);
        assert_eq!(to_millis(after), 1);
        let before = UNIX_EPOCH - Duration::from_micros(1_500);
        assert_eq!(to_millis(before), -2);
        for millis in [-5_000, -1, 0, 1, 1_767_225_600_000] {
            let time = from_millis(millis).expect("representable");
            assert_eq!(to_millis(time), millis);
        }
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_equal(&Secret::new("rt-1"), &Secret::new("rt-1")));
        assert!(!secrets_equal(&Secret::new("rt-1"), &Secret::new("rt-2")));
        assert!(!secrets_equal(&Secret::new("rt-1"), &Secret::new("rt-10")));
        assert!(secrets_equal(&Secret::new(""), &Secret::new("")));
    }

    #[test]
    fn encoding_is_sized_exactly_once() {
        let token = Token::bearer("at", Expiry::Never).with_refresh_token("rt");
        let bytes = encode(&token).expect("encodes");
        // The newline was the only push past the measured length.
        assert_eq!(bytes.capacity(), bytes.len());
    }
}
