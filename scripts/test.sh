#!/usr/bin/env bash
# Installs what the tests need (Debian 12, root), builds the node image, then runs the whole
# workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_packages
ensure_iptables_nft
ensure_cargo
ensure_nextest
# The node image the controller uploads (static, ~10 MB, rather than the controller itself);
# about a second when target/ already holds it. The image test fails rather than skips without it.
scripts/build-node-image.sh
export FAULTLINE_REQUIRE_NODE_IMAGE=1
cargo nextest run --workspace --no-fail-fast "$@"
