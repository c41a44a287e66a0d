#!/usr/bin/env bash
# Installs what the tests need (Debian 12, root), then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_packages
ensure_iptables_nft
ensure_cargo
ensure_nextest
cargo nextest run --workspace --no-fail-fast "$@"
