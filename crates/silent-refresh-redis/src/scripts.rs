//! The Lua scripts that make each change to the session atomic on the server.
//!
//! The session hash has two fields: `version`, a counter that only grows (a forget
//! increments it too, so a version is never seen twice), and `session`, the stored
//! record (plain JSON, or sealed). Every change compares the version its writer read
//! (compare-and-swap), so a writer that read an older session, such as a lease holder
//! whose lease expired while another process refreshed, never overwrites a newer one.

use std::sync::LazyLock;

use redis::Script;

/// Replaces the session if its version is still `ARGV[1]` (`""`: none yet).
///
/// `KEYS[1]` the session hash, `KEYS[2]` the lease; `ARGV[2]` the new session,
/// `ARGV[3]` the channel to announce it on, `ARGV[4]` the lease owner saving (`""`:
/// none). Returns `{written, lease_still_held}`.
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local version = redis.call('HGET', KEYS[1], 'version') or ''
if version ~= ARGV[1] then
  return {0, 0}
end
local held = 0
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then
  held = 1
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'session', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'saved')
return {1, held}
",
    )
});

/// Deletes the session if its version is still `ARGV[1]`, keeping (and incrementing)
/// the version. `KEYS[1]` the session hash; `ARGV[2]` the channel. Returns 1 when the
/// version matched.
pub(crate) static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local version = redis.call('HGET', KEYS[1], 'version') or ''
if version ~= ARGV[1] then
  return 0
end
if redis.call('HDEL', KEYS[1], 'session') == 1 then
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('PUBLISH', ARGV[2], 'forgotten')
end
return 1
",
    )
});

/// Releases the lease `KEYS[1]` if `ARGV[1]` still owns it, and announces it on
/// `ARGV[2]`. Returns 1 when it was released.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
",
    )
});
