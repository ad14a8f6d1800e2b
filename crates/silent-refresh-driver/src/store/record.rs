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
use silent_refresh::{Expiry, Secret, Token};
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
    saved_at: i64,
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
}

/// Serialises `token` into a buffer sized once (no reallocation leaves a copy of the
/// secrets behind), as the JSON object described on [`FileStore`](super::FileStore).
///
/// # Errors
///
/// [`EncodeError::RelativeExpiry`] for an [`Expiry::In`] token (a store keeps
/// wall-clock expiries only).
pub fn encode(token: &Token) -> Result<Zeroizing<Vec<u8>>, EncodeError> {
    let expires_at = match token.expiry {
        Expiry::Never => None,
        Expiry::At(at) => Some(to_millis(at)),
        Expiry::In(_) => return Err(EncodeError::RelativeExpiry),
    };
    let record = RecordOut {
        format: if token.dpop_key.is_some() {
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
    let record: RecordIn = serde_json::from_slice(bytes).map_err(|_| {
        "a field appears more than once, or holds a value this version cannot read".to_owned()
    })?;
    let expiry = match record.expires_at {
        None => Expiry::Never,
        Some(millis) => Expiry::At(
            from_millis(millis).ok_or_else(|| "field `expires_at` is out of range".to_owned())?,
        ),
    };
    let issued_at = record
        .issued_at
        .map(|millis| {
            from_millis(millis).ok_or_else(|| "field `issued_at` is out of range".to_owned())
        })
        .transpose()?;
    // Built field by field, so that a new field of `Token` keeps its default here.
    let mut token = Token::bearer(record.access_token, expiry);
    token.token_type = record.token_type;
    token.scope = record.scope;
    token.refresh_token = record.refresh_token;
    token.issued_at = issued_at;
    token.dpop_key = record.dpop_key;
    Ok(token)
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
}

/// Checks that the object is a stored session: our format, every required field, each
/// field of the right type. The reason names fields, never values.
fn check_fields(fields: &BTreeMap<String, Kind>) -> Result<(), String> {
    match fields.get("format") {
        Some(Kind::String { ours: true }) => {}
        Some(_) => {
            return Err(format!(
                "its `format` is neither `{FORMAT}` nor `{FORMAT_DPOP}`: another program, or a later version of \
                 this library, wrote it"
            ));
        }
        None => {
            return Err(
                "it has no `format` field: it is not a session this library wrote".to_owned(),
            );
        }
    }
    let expected = [
        ("access_token", Expected::String, true),
        ("token_type", Expected::String, true),
        ("expires_at", Expected::MillisOrNull, true),
        ("scope", Expected::StringOrNull, false),
        ("refresh_token", Expected::StringOrNull, false),
        ("issued_at", Expected::MillisOrNull, false),
        ("dpop_key", Expected::StringOrNull, false),
    ];
    for (name, expected, required) in expected {
        let Some(kind) = fields.get(name) else {
            if required {
                return Err(format!("field `{name}` is missing"));
            }
            continue;
        };
        let fits = match (expected, kind) {
            (_, Kind::String { .. }) => !matches!(expected, Expected::MillisOrNull),
            (Expected::StringOrNull | Expected::MillisOrNull, Kind::Null) => true,
            (Expected::MillisOrNull, Kind::Integer) => true,
            _ => false,
        };
        if !fits {
            let wanted = match expected {
                Expected::String => "a string",
                Expected::StringOrNull => "a string or null",
                Expected::MillisOrNull => "a whole number of milliseconds or null",
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
        /// Whether the string is [`FORMAT`] or [`FORMAT_DPOP`].
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
            ours: value == FORMAT || value == FORMAT_DPOP,
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
