#!/usr/bin/env bash
# Puts Datastar 1.0.2's browser bundle at $1 (default target/datastar/datastar.js).
#
# The bundle comes from a crates.io package, rama-http 0.4.0, which ships it as
# src/service/web/endpoint/response/datastar.js: the registry is reachable from every
# machine of this project, a CDN is not. cargo fetches the package (it knows the
# registry and any mirror configured for it); both the package and the bundle are
# checked against pinned sha256 sums, so a changed upload or a wrong file fails loudly.
#
# Idempotent: when the target already holds the right bytes, nothing is fetched.
# The bundle is not committed; run this before anything that serves or tests it.
set -euo pipefail

crate=rama-http
version=0.4.0
member="$crate-$version/src/service/web/endpoint/response/datastar.js"
# The package's sha256, as the registry index lists it (its "cksum").
crate_sha256=7b2b32e574f2bc7e9d2d35153efb0759928661d5ccfd7565005787a1c4179fb2
bundle_sha256=2837d87acf6ee0ba8e4e63765926c25a98d63883b02f88be194a86b81d3fd24a
bundle_version='// Datastar v1.0.2'

out=${1:-target/datastar/datastar.js}

die() {
    printf 'fetch-datastar: %s\n' "$*" >&2
    exit 1
}

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

if [ -f "$out" ] && [ "$(sha256 "$out")" = "$bundle_sha256" ]; then
    echo "fetch-datastar: $out is already Datastar 1.0.2"
    exit 0
fi

command -v cargo >/dev/null 2>&1 || die "cargo is needed to fetch $crate $version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A throwaway manifest that depends on exactly this version, so that `cargo fetch`
# downloads it into cargo's own cache. Its dependencies come along; they are cached
# too, and limiting the fetch to the host target keeps them few.
mkdir -p "$work/probe/src"
: >"$work/probe/src/lib.rs"
cat >"$work/probe/Cargo.toml" <<EOF
[package]
name = "datastar-bundle-probe"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$crate = { version = "=$version", default-features = false }

[workspace]
EOF
host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
cargo fetch --quiet --manifest-path "$work/probe/Cargo.toml" ${host:+--target "$host"} ||
    die "cargo fetch of $crate $version failed"

cargo_home=${CARGO_HOME:-$HOME/.cargo}
archive=
for candidate in "$cargo_home"/registry/cache/*/"$crate-$version.crate"; do
    [ -f "$candidate" ] || continue
    if [ "$(sha256 "$candidate")" = "$crate_sha256" ]; then
        archive=$candidate
        break
    fi
    echo "fetch-datastar: ignoring $candidate: sha256 $(sha256 "$candidate"), expected $crate_sha256" >&2
done
[ -n "$archive" ] || die "no $crate-$version.crate with sha256 $crate_sha256 in $cargo_home/registry/cache"

tar -xzf "$archive" -C "$work" "$member" || die "$archive has no $member"
bundle="$work/$member"
got=$(sha256 "$bundle")
[ "$got" = "$bundle_sha256" ] ||
    die "bundle sha256 mismatch: got $got, expected $bundle_sha256 (from $archive)"
[ "$(head -n 1 "$bundle")" = "$bundle_version" ] ||
    die "bundle does not start with '$bundle_version'"

mkdir -p "$(dirname "$out")"
# Same directory, then rename: a reader never sees half a file.
cp "$bundle" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
echo "fetch-datastar: wrote Datastar 1.0.2 to $out (sha256 $bundle_sha256)"
