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
  # the local stand-in for cloud VMs logs in as an unprivileged user with sudo
  "sudo:sudo"
  "ps:procps"
  "unshare:util-linux"
  "sha256sum:coreutils"
  "timeout:coreutils"
  "cc:build-essential"
  # build-node-image.sh checks the image has no dynamic dependencies; so does its test.
  "readelf:binutils"
  # etcd-client's build compiles etcd's protobuf definitions.
  "protoc:protobuf-compiler"
  # etcd as a database under test; faultline starts it itself, so the package's service must
  # not start (see the policy-rc.d in ensure_packages).
  "etcd:etcd-server"
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
  # protoc alone lacks the well-known types (descriptor.proto) that etcd's protos import.
  if [ ! -f /usr/include/google/protobuf/descriptor.proto ]; then missing+=("libprotobuf-dev"); fi
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "missing packages: ${missing[*]}; run as root or install them" >&2
      return 1
    fi
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # No package may start a service while installing (etcd-server's would take the ports
    # faultline's own etcd needs); an existing policy is left as it is.
    local policy_ours=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_ours=1
    fi
    local rc=0
    apt-get update -qq || rc=$?
    if [ $rc -eq 0 ]; then
      apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null || rc=$?
    fi
    if [ -n "$policy_ours" ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ $rc -ne 0 ]; then return $rc; fi
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
