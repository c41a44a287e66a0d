#!/usr/bin/env bash
# Builds the node image uploaded to hosts: `faultline-node`, statically linked against
# glibc (Debian's libc6-dev ships libc.a) so it runs on any x86_64 Linux whatever its glibc,
# with debug info stripped so the upload stays small.
#
#   scripts/build-node-image.sh [--release]
#
# Output: target/x86_64-unknown-linux-gnu/<debug|release>/faultline-node, where the
# controller (target/<profile>/faultline) looks for it. musl would need the
# x86_64-unknown-linux-musl rustup target, which is not installable from the package
# registries; static glibc needs nothing beyond libc6-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
args=()
if [[ "${1:-}" == "--release" ]]; then profile=release; args+=(--release); fi
target=x86_64-unknown-linux-gnu
# Target-specific flags: build scripts and proc macros (host builds) stay dynamic.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo" \
  cargo build -q -p faultline-node --bin faultline-node --target "$target" "${args[@]}"
out="${CARGO_TARGET_DIR:-target}/$target/$profile/faultline-node"
# RUSTFLAGS, when set, replaces the target-specific flags above (and so crt-static).
if ! command -v readelf >/dev/null 2>&1; then
  echo "build-node-image: readelf not found (apt-get install binutils); cannot check $out is static" >&2
  exit 1
fi
if readelf -d "$out" | grep -q NEEDED; then
  echo "build-node-image: $out is dynamically linked (is RUSTFLAGS set? it overrides crt-static)" >&2
  exit 1
fi
ls -l "$out" | awk '{print "build-node-image: " $NF " (" $5 " bytes, static)"}'
