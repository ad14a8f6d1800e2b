#!/usr/bin/env bash
# Builds the browser example (release, wasm32-unknown-unknown), runs wasm-bindgen
# (--target web) on it, and prints, as its last line, the folder to serve as it is:
# index.html, silent_refresh_browser_example.js and its _bg.wasm. Any static server
# on any origin serves it; the embedded test server does (AuthServer::serve_folder).
#
#   examples/browser/build.sh         the release build
#   examples/browser/build.sh --dev   a debug build (faster to build: what the tests use)
#
# Needs: rustup target add wasm32-unknown-unknown, and wasm-bindgen-cli at the version
# of the wasm-bindgen crate in Cargo.lock (cargo install wasm-bindgen-cli --version X).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
profile=release
if [ "${1:-}" = --dev ]; then profile=debug; fi
out="$target/browser-example-$profile"
cd "$root"
if [ "$profile" = release ]; then
    cargo build --locked --release --target wasm32-unknown-unknown -p silent-refresh-browser-example >&2
else
    cargo build --locked --target wasm32-unknown-unknown -p silent-refresh-browser-example >&2
fi
rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" \
    "$target/wasm32-unknown-unknown/$profile/silent_refresh_browser_example.wasm" >&2
cp "$here/static/index.html" "$out/"
echo "$out"
