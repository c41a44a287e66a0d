//! Addresses, interface names and the host tools a local cluster needs.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Tools `cluster up` runs, with the Debian package that provides each.
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("iptables", "iptables"),
];

/// Finds `tool` on PATH or in the sbin directories a non-login root shell may lack.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(d.into());
    }
    dirs.into_iter().map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Every missing tool, worded as what to install.
pub fn missing_tools() -> Option<String> {
    let missing: Vec<_> = TOOLS
        .iter()
        .filter(|(t, _)| find_tool(t).is_none())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.dedup();
    Some(format!(
        "missing {}; install with: apt-get install -y {}",
        missing
            .iter()
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
            .join(", "),
        pkgs.join(" ")
    ))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a tool and fails with its stderr if it exits non-zero.
pub fn run(tool: &str, args: &[&str]) -> anyhow::Result<String> {
    let path = find_tool(tool).with_context(|| format!("{tool} not found"))?;
    let out = Command::new(&path)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {tool}"))?;
    if !out.status.success() {
        bail!(
            "`{tool} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a tool, ignoring failure (for teardown of things that may already be gone).
pub fn run_quiet(tool: &str, args: &[&str]) -> bool {
    let Some(path) = find_tool(tool) else {
        return false;
    };
    Command::new(path)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Short tag used in interface names (IFNAMSIZ is 16 with the NUL): the name itself when it
/// fits, else a prefix plus a hash.
pub fn tag(name: &str) -> String {
    if name.len() <= 8 {
        name.to_string()
    } else {
        format!("{}{:05x}", &name[..3], fnv(name) & 0xfffff)
    }
}

pub fn bridge_name(name: &str) -> String {
    format!("flb{}", tag(name))
}

pub fn veth_name(name: &str, index: usize) -> String {
    format!("fl{}v{}", tag(name), index)
}

pub fn netns_name(name: &str, node: &str) -> String {
    format!("fl-{name}-{node}")
}

pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Prefix {
    pub fn parse(s: &str) -> Option<Prefix> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, l.parse().ok()?),
            None => (s, 32),
        };
        if l > 32 {
            return None;
        }
        Some(Prefix {
            addr: a.parse().ok()?,
            len: l,
        })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - len) }
    }

    pub fn overlaps(&self, other: &Prefix) -> bool {
        let m = Prefix::mask(self.len.min(other.len));
        (u32::from(self.addr) & m) == (u32::from(other.addr) & m)
    }

    /// Host `i` of the prefix (0 is the network address).
    pub fn host(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.addr) & Prefix::mask(self.len)) + i)
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Prefixes in use on this machine: interface addresses and routes in every table.
/// Default routes are skipped: a more specific route of ours wins over them.
pub fn prefixes_in_use() -> anyhow::Result<Vec<Prefix>> {
    let mut out = Vec::new();
    for line in run("ip", &["-4", "-o", "addr", "show"])?.lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = toks.iter().position(|t| *t == "inet") {
            if let Some(p) = toks.get(i + 1).and_then(|s| Prefix::parse(s)) {
                out.push(p);
            }
        }
    }
    const TYPES: &[&str] = &[
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
        "anycast",
    ];
    for line in run("ip", &["-4", "route", "show", "table", "all"])?.lines() {
        let mut toks = line.split_whitespace();
        let mut first = toks.next().unwrap_or("");
        if TYPES.contains(&first) {
            first = toks.next().unwrap_or("");
        }
        if first == "default" {
            continue;
        }
        if let Some(p) = Prefix::parse(first) {
            if p.len > 0 {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Candidate /24s for a cluster, starting from one derived from its name so a cluster tends
/// to get the same subnet each time: 10.224.0.0 - 10.254.255.0.
pub fn candidate_subnets(name: &str) -> impl Iterator<Item = Prefix> {
    const SPACE: u64 = 31 * 256;
    let start = fnv(name) % SPACE;
    (0..SPACE).map(move |k| {
        let i = (start + k) % SPACE;
        let b = 224 + (i / 256) as u8;
        let c = (i % 256) as u8;
        Prefix {
            addr: Ipv4Addr::new(10, b, c, 0),
            len: 24,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_ifnamsiz() {
        for name in [
            "local",
            "a",
            "t-cluster-123456",
            "abcdefgh",
            "abcdefghijklmnopqrstuvwx",
        ] {
            assert!(bridge_name(name).len() <= 15, "{name}");
            assert!(veth_name(name, 200).len() <= 15, "{name}");
        }
        assert_ne!(tag("t-exec-1234567"), tag("t-exec-1234568"));
    }

    #[test]
    fn prefixes_overlap_by_the_shorter_mask() {
        let p = |s| Prefix::parse(s).unwrap();
        assert!(p("10.0.0.0/8").overlaps(&p("10.224.3.0/24")));
        assert!(p("10.224.3.7").overlaps(&p("10.224.3.0/24")));
        assert!(!p("10.224.4.0/24").overlaps(&p("10.224.3.0/24")));
        assert!(!p("192.168.1.0/24").overlaps(&p("10.224.3.0/24")));
        assert_eq!(p("10.224.3.0/24").host(2), Ipv4Addr::new(10, 224, 3, 2));
        assert_eq!(Prefix::parse("300.1.1.1"), None);
    }

    #[test]
    fn candidates_stay_in_range_and_start_from_the_name() {
        let first: Vec<_> = candidate_subnets("local").take(3).collect();
        assert_eq!(
            first,
            candidate_subnets("local").take(3).collect::<Vec<_>>()
        );
        assert_eq!(candidate_subnets("x").count(), 31 * 256);
        for p in candidate_subnets("y").take(500) {
            let o = p.addr.octets();
            assert!(o[0] == 10 && (224..=254).contains(&o[1]) && o[3] == 0);
        }
    }
}
