# Shared by demo.sh and test.sh: install what is missing on a fresh Debian, find cargo.
# Sourced, not run.

# Debian packages the harness and its tests use, keyed by a command each provides.
FAULTLINE_PKGS=(
  "ssh:openssh-client"
  "sshd:openssh-server"
  "ssh-keygen:openssh-client"
  "iptables:iptables"
  "ip:iproute2"
  "conntrack:conntrack"
  "ps:procps"
  "unshare:util-linux"
  "sha256sum:coreutils"
  "timeout:coreutils"
  "cc:build-essential"
  "chromium:chromium"
  "chromedriver:chromium-driver"
)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

ensure_packages() {
  local missing=() entry cmd pkg
  for entry in "${FAULTLINE_PKGS[@]}"; do
    cmd="${entry%%:*}"; pkg="${entry#*:}"
    if ! have "$cmd"; then missing+=("$pkg"); fi
  done
  # sshd refuses to start without its privilege-separation user.
  if have sshd && ! getent passwd sshd >/dev/null; then missing+=("openssh-server"); fi
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "missing packages: ${missing[*]}; run as root or install them" >&2
      return 1
    fi
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  fi
  mkdir -p /run/sshd
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install a Rust toolchain (rustup) first" >&2
    return 1
  fi
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest" >&2
    cargo install --locked cargo-nextest
  fi
}

# iptables inside the namespaces needs the nf_tables backend (the legacy one needs modules
# that a container kernel may not offer).
ensure_iptables_nft() {
  if [ -x /usr/sbin/iptables-nft ] && command -v update-alternatives >/dev/null 2>&1; then
    if ! iptables --version 2>/dev/null | grep -q nf_tables; then
      update-alternatives --set iptables /usr/sbin/iptables-nft >/dev/null
      update-alternatives --set ip6tables /usr/sbin/ip6tables-nft >/dev/null 2>&1 || true
    fi
  fi
}
