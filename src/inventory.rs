//! Inventories: which hosts a run talks to and how to reach them over SSH.
//!
//! Two YAML shapes are accepted and told apart by their top-level keys:
//!
//! * faultline's own (`nodes:` list plus shared `ssh:` settings), parsed with
//!   `deny_unknown_fields` so a typo is an error rather than a silent default;
//! * Ansible's (`all: {hosts, vars, children}`), so an existing VM inventory works as is.
//!
//! Raw YAML is deserialized into `Raw*` types that keep source spans, then validated into
//! [`Inventory`]. Every error names the file, line and column, and is a usage error (exit 64)
//! at the CLI edge. `-i NAME` also accepts the name of a local cluster (`faultline cluster up
//! --name NAME`), which resolves to the inventory that cluster wrote.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

/// Where a connection gives up if the TCP/SSH handshake has not finished.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Default bound on a single remote command.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 60_000;
/// Stays below sshd's default `MaxSessions 10` so the master connection never gets refused a
/// channel.
pub const DEFAULT_MAX_SESSIONS_PER_HOST: usize = 8;

/// A validated inventory: every node has a host, a port, a user, and a unique name.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// File the inventory was read from (relative paths inside it are resolved against its
    /// directory).
    pub path: PathBuf,
    pub nodes: Vec<Node>,
    pub ssh: SshSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// Address or DNS name the controller connects to, for SSH and for client traffic.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Overrides `ssh.private_key` for this node.
    pub private_key: Option<PathBuf>,
}

/// How an unknown or changed host key is treated, mirroring `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// The host must already be in `known_hosts` with this key.
    Strict,
    /// Unknown hosts are added on first contact; a changed key is still refused.
    AcceptNew,
    /// Any key is accepted. Only for throwaway hosts, and only when asked for.
    No,
}

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::No => "no",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SshSettings {
    pub user: String,
    pub private_key: Option<PathBuf>,
    pub port: u16,
    /// `None` means ssh's own default (`~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    /// An ssh_config file to use instead of `~/.ssh/config` (e.g. `/dev/null` to ignore it).
    pub config_file: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
    pub max_sessions_per_host: usize,
    /// Keep-alive probe interval; a dead master is noticed after three missed probes.
    pub server_alive_interval_ms: u64,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            user: "root".into(),
            private_key: None,
            port: 22,
            known_hosts: None,
            host_key_policy: HostKeyPolicy::AcceptNew,
            config_file: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            command_timeout_ms: DEFAULT_COMMAND_TIMEOUT_MS,
            max_sessions_per_host: DEFAULT_MAX_SESSIONS_PER_HOST,
            server_alive_interval_ms: 5_000,
        }
    }
}

impl Inventory {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The key file used for `node`: its own, else the shared one.
    pub fn key_for<'a>(&'a self, node: &'a Node) -> Option<&'a Path> {
        node.private_key
            .as_deref()
            .or(self.ssh.private_key.as_deref())
    }

    /// Keeps only the named nodes, in the order given; an unknown name is an error that lists
    /// the known ones.
    pub fn select(&self, names: &[String]) -> Result<Inventory, String> {
        let mut out = self.clone();
        out.nodes.clear();
        for name in names {
            match self.node(name) {
                Some(n) if !out.nodes.iter().any(|m| m.name == n.name) => out.nodes.push(n.clone()),
                Some(_) => return Err(format!("node {name:?} named twice")),
                None => {
                    return Err(format!(
                        "no node {name:?} in {}; nodes: {}",
                        self.path.display(),
                        self.node_names().join(", ")
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{path}: cannot read inventory: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Located error: `file:line:column: message`, like a compiler.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "no inventory file or local cluster named {0:?} (a local cluster is made with `faultline cluster up --name NAME`)"
    )]
    NotFound(String),
}

/// Resolves `-i ARG`: an existing file, else the inventory of the local cluster named ARG.
pub fn resolve(arg: &str) -> Result<Inventory, InventoryError> {
    let path = Path::new(arg);
    if path.is_file() {
        return load(path);
    }
    if crate::cluster::valid_name(arg).is_ok() {
        let p = crate::cluster::inventory_path(arg);
        if p.is_file() {
            return load(&p);
        }
    }
    if path.exists() {
        return Err(InventoryError::Invalid {
            path: path.into(),
            message: "not a regular file".into(),
        });
    }
    Err(InventoryError::NotFound(arg.into()))
}

/// [`resolve`] for the CLI: errors are usage errors (exit 64).
pub fn resolve_cli(arg: &str) -> anyhow::Result<Inventory> {
    resolve(arg).map_err(|e| crate::exit::usage(e.to_string()))
}

pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: path.into(),
        source,
    })?;
    parse(&text, path)
}

/// Parses inventory text; `path` is used for messages and to resolve relative key paths.
pub fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    let ctx = Ctx { path, text };
    let top: BTreeMap<String, serde::de::IgnoredAny> = match serde_saphyr::from_str(text) {
        Ok(Some(m)) => m,
        Ok(None) => return Err(ctx.invalid("empty inventory: expected `nodes:` or Ansible `all:`")),
        Err(e) => return Err(ctx.saphyr(e)),
    };
    if top.contains_key("all") && !top.contains_key("nodes") {
        parse_ansible(&ctx)
    } else if top.contains_key("nodes") {
        parse_native(&ctx)
    } else {
        let keys: Vec<_> = top.keys().cloned().collect();
        Err(ctx.at(
            1,
            1,
            format!(
                "not an inventory: expected top-level `nodes:` (faultline) or `all:` (Ansible), found: {}",
                keys.join(", ")
            ),
        ))
    }
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn at(&self, line: u64, column: u64, message: impl Into<String>) -> InventoryError {
        InventoryError::At {
            path: self.path.into(),
            line,
            column,
            message: message.into(),
        }
    }

    fn at_span<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> InventoryError {
        self.at(s.referenced.line(), s.referenced.column(), message)
    }

    fn invalid(&self, message: impl Into<String>) -> InventoryError {
        InventoryError::Invalid {
            path: self.path.into(),
            message: message.into(),
        }
    }

    fn saphyr(&self, e: serde_saphyr::Error) -> InventoryError {
        let message = first_line(&e.to_string());
        match e.location() {
            Some(loc) if loc.line() > 0 => self.at(loc.line(), loc.column(), message),
            _ => self.invalid(message),
        }
    }

    /// Relative paths are relative to the inventory's directory, `~/` to `$HOME`.
    fn resolve_path(&self, p: &str) -> PathBuf {
        expand_path(p, self.path.parent().unwrap_or(Path::new(".")))
    }
}

pub(crate) fn expand_path(p: &str, base: &Path) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let pb = PathBuf::from(p);
    if pb.is_absolute() { pb } else { base.join(pb) }
}

/// serde-saphyr renders the offending source line under the message; the location is
/// reported separately, so only the message's first line is kept.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// faultline's own format

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    ssh: Option<RawSsh>,
    nodes: Spanned<Vec<RawNode>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    user: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    known_hosts: Option<Spanned<String>>,
    host_key_policy: Option<HostKeyPolicy>,
    config_file: Option<Spanned<String>>,
    connect_timeout_ms: Option<Spanned<u64>>,
    command_timeout_ms: Option<Spanned<u64>>,
    max_sessions_per_host: Option<Spanned<u64>>,
    server_alive_interval_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
    #[serde(alias = "private_key")]
    key: Option<Spanned<String>>,
}

fn parse_native(ctx: &Ctx) -> Result<Inventory, InventoryError> {
    let raw: RawInventory = serde_saphyr::from_str(ctx.text).map_err(|e| ctx.saphyr(e))?;
    let ssh = build_ssh(ctx, raw.ssh.unwrap_or_default())?;
    if raw.nodes.value.is_empty() {
        return Err(ctx.at_span(
            &raw.nodes,
            "`nodes` is empty: an inventory needs at least one node",
        ));
    }
    let mut nodes: Vec<Node> = Vec::with_capacity(raw.nodes.value.len());
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for rn in &raw.nodes.value {
        let name = check_name(ctx, &rn.name)?;
        if let Some(first) = seen.insert(name.clone(), rn.name.referenced.line()) {
            return Err(ctx.at_span(
                &rn.name,
                format!("duplicate node {name:?} (first defined on line {first})"),
            ));
        }
        let host = match &rn.host {
            Some(h) => check_host(ctx, h)?,
            None => return Err(ctx.at_span(&rn.name, format!("node {name:?} has no `host`"))),
        };
        let port = match &rn.port {
            Some(p) => check_port(ctx, p)?,
            None => ssh.port,
        };
        let user = match &rn.user {
            Some(u) => check_nonempty(ctx, u, "user")?,
            None => ssh.user.clone(),
        };
        let private_key = rn.key.as_ref().map(|k| ctx.resolve_path(&k.value));
        nodes.push(Node {
            name,
            host,
            port,
            user,
            private_key,
        });
    }
    Ok(Inventory {
        path: ctx.path.into(),
        nodes,
        ssh,
    })
}

fn build_ssh(ctx: &Ctx, raw: RawSsh) -> Result<SshSettings, InventoryError> {
    let mut s = SshSettings::default();
    if let Some(u) = &raw.user {
        s.user = check_nonempty(ctx, u, "user")?;
    }
    if let Some(p) = &raw.port {
        s.port = check_port(ctx, p)?;
    }
    s.private_key = raw.private_key.map(|k| ctx.resolve_path(&k.value));
    s.known_hosts = raw.known_hosts.map(|k| ctx.resolve_path(&k.value));
    s.config_file = raw.config_file.map(|k| ctx.resolve_path(&k.value));
    if let Some(p) = raw.host_key_policy {
        s.host_key_policy = p;
    }
    let positive = |v: &Option<Spanned<u64>>,
                    what: &str,
                    default: u64|
     -> Result<u64, InventoryError> {
        match v {
            None => Ok(default),
            Some(x) if x.value == 0 => Err(ctx.at_span(x, format!("`{what}` must be positive"))),
            Some(x) => Ok(x.value),
        }
    };
    s.connect_timeout_ms = positive(
        &raw.connect_timeout_ms,
        "connect_timeout_ms",
        s.connect_timeout_ms,
    )?;
    s.command_timeout_ms = positive(
        &raw.command_timeout_ms,
        "command_timeout_ms",
        s.command_timeout_ms,
    )?;
    s.server_alive_interval_ms = positive(
        &raw.server_alive_interval_ms,
        "server_alive_interval_ms",
        s.server_alive_interval_ms,
    )?;
    s.max_sessions_per_host = positive(
        &raw.max_sessions_per_host,
        "max_sessions_per_host",
        s.max_sessions_per_host as u64,
    )? as usize;
    if let Some(m) = &raw.max_sessions_per_host {
        if m.value > 64 {
            return Err(ctx.at_span(
                m,
                "`max_sessions_per_host` above 64 is refused (sshd's MaxSessions is 10 by default)",
            ));
        }
    }
    Ok(s)
}

fn check_name(ctx: &Ctx, n: &Spanned<String>) -> Result<String, InventoryError> {
    let v = n.value.trim();
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(ctx.at_span(
            n,
            format!(
                "bad node name {:?}: use 1-64 characters from [A-Za-z0-9._-]",
                n.value
            ),
        ));
    }
    Ok(v.to_string())
}

fn check_host(ctx: &Ctx, h: &Spanned<String>) -> Result<String, InventoryError> {
    let v = h.value.trim();
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '@' || c == '/') {
        return Err(ctx.at_span(
            h,
            format!("bad host {:?}: expected an address or DNS name", h.value),
        ));
    }
    Ok(v.to_string())
}

fn check_port(ctx: &Ctx, p: &Spanned<i64>) -> Result<u16, InventoryError> {
    if (1..=65535).contains(&p.value) {
        Ok(p.value as u16)
    } else {
        Err(ctx.at_span(p, format!("bad port {}: expected 1-65535", p.value)))
    }
}

fn check_nonempty(ctx: &Ctx, s: &Spanned<String>, what: &str) -> Result<String, InventoryError> {
    let v = s.value.trim();
    if v.is_empty() {
        return Err(ctx.at_span(s, format!("`{what}` is empty")));
    }
    Ok(v.to_string())
}

// ---------------------------------------------------------------------------------------------
// Ansible format

/// An Ansible group. Unknown keys are errors here too: a group only has these three.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AnsibleGroup {
    #[serde(default)]
    hosts: Option<BTreeMap<String, Option<AnsibleVars>>>,
    #[serde(default)]
    vars: Option<AnsibleVars>,
    #[serde(default)]
    children: Option<BTreeMap<String, Option<AnsibleGroup>>>,
}

/// The connection variables faultline understands; other variables are Ansible's business
/// and are ignored (an Ansible inventory carries many).
#[derive(Deserialize, Default, Clone)]
struct AnsibleVars {
    ansible_host: Option<Spanned<String>>,
    ansible_ssh_host: Option<Spanned<String>>,
    ansible_port: Option<Spanned<i64>>,
    ansible_ssh_port: Option<Spanned<i64>>,
    ansible_user: Option<Spanned<String>>,
    ansible_ssh_user: Option<Spanned<String>>,
    ansible_ssh_private_key_file: Option<Spanned<String>>,
    ansible_private_key_file: Option<Spanned<String>>,
    /// faultline extensions, so an Ansible inventory can pin host keys too.
    faultline_known_hosts: Option<Spanned<String>>,
    faultline_host_key_policy: Option<HostKeyPolicy>,
}

impl AnsibleVars {
    /// `other` wins where it sets a value (host vars over group vars, child over parent).
    fn merged(&self, other: &AnsibleVars) -> AnsibleVars {
        macro_rules! pick {
            ($f:ident) => {
                other.$f.clone().or_else(|| self.$f.clone())
            };
        }
        AnsibleVars {
            ansible_host: pick!(ansible_host),
            ansible_ssh_host: pick!(ansible_ssh_host),
            ansible_port: pick!(ansible_port),
            ansible_ssh_port: pick!(ansible_ssh_port),
            ansible_user: pick!(ansible_user),
            ansible_ssh_user: pick!(ansible_ssh_user),
            ansible_ssh_private_key_file: pick!(ansible_ssh_private_key_file),
            ansible_private_key_file: pick!(ansible_private_key_file),
            faultline_known_hosts: pick!(faultline_known_hosts),
            faultline_host_key_policy: pick!(faultline_host_key_policy),
        }
    }
}

#[derive(Deserialize)]
struct AnsibleTop {
    all: Option<AnsibleGroup>,
}

/// Children nest; this bounds the walk so a cyclic or absurd file cannot recurse forever.
const ANSIBLE_DEPTH_MAX: usize = 32;

fn parse_ansible(ctx: &Ctx) -> Result<Inventory, InventoryError> {
    let top: AnsibleTop = serde_saphyr::from_str(ctx.text).map_err(|e| ctx.saphyr(e))?;
    let all = top.all.unwrap_or_default();
    // Host name -> effective vars, in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut hosts: BTreeMap<String, AnsibleVars> = BTreeMap::new();
    walk_group(
        ctx,
        &all,
        &AnsibleVars::default(),
        0,
        &mut order,
        &mut hosts,
    )?;
    if order.is_empty() {
        return Err(ctx.invalid("Ansible inventory has no hosts under `all`"));
    }
    let mut ssh = SshSettings::default();
    let all_vars = all.vars.clone().unwrap_or_default();
    if let Some(k) = &all_vars.faultline_known_hosts {
        ssh.known_hosts = Some(ctx.resolve_path(&k.value));
    }
    if let Some(p) = all_vars.faultline_host_key_policy {
        ssh.host_key_policy = p;
    }
    let mut nodes = Vec::with_capacity(order.len());
    for name in order {
        let v = &hosts[&name];
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || name.is_empty()
        {
            let (l, c) = locate_key(ctx.text, &name).unwrap_or((1, 1));
            return Err(ctx.at(
                l,
                c,
                format!("bad host name {name:?}: use characters from [A-Za-z0-9._-]"),
            ));
        }
        let host = match v.ansible_host.as_ref().or(v.ansible_ssh_host.as_ref()) {
            Some(h) => check_host(ctx, h)?,
            None => name.clone(),
        };
        let port = match v.ansible_port.as_ref().or(v.ansible_ssh_port.as_ref()) {
            Some(p) => check_port(ctx, p)?,
            None => ssh.port,
        };
        let user = match v.ansible_user.as_ref().or(v.ansible_ssh_user.as_ref()) {
            Some(u) => check_nonempty(ctx, u, "ansible_user")?,
            None => ssh.user.clone(),
        };
        let private_key = v
            .ansible_ssh_private_key_file
            .as_ref()
            .or(v.ansible_private_key_file.as_ref())
            .map(|k| ctx.resolve_path(&k.value));
        nodes.push(Node {
            name,
            host,
            port,
            user,
            private_key,
        });
    }
    Ok(Inventory {
        path: ctx.path.into(),
        nodes,
        ssh,
    })
}

fn walk_group(
    ctx: &Ctx,
    g: &AnsibleGroup,
    inherited: &AnsibleVars,
    depth: usize,
    order: &mut Vec<String>,
    hosts: &mut BTreeMap<String, AnsibleVars>,
) -> Result<(), InventoryError> {
    if depth > ANSIBLE_DEPTH_MAX {
        return Err(ctx.invalid(format!(
            "Ansible groups nested deeper than {ANSIBLE_DEPTH_MAX}"
        )));
    }
    let vars = match &g.vars {
        Some(v) => inherited.merged(v),
        None => inherited.clone(),
    };
    if let Some(hs) = &g.hosts {
        for (name, hv) in hs {
            let effective = match hv {
                Some(hv) => vars.merged(hv),
                None => vars.clone(),
            };
            match hosts.get_mut(name) {
                Some(existing) => *existing = existing.merged(&effective),
                None => {
                    order.push(name.clone());
                    hosts.insert(name.clone(), effective);
                }
            }
        }
    }
    if let Some(children) = &g.children {
        for child in children.values().flatten() {
            walk_group(ctx, child, &vars, depth + 1, order, hosts)?;
        }
    }
    Ok(())
}

/// Finds where `key:` is first written, for errors about map keys (which carry no span).
fn locate_key(text: &str, key: &str) -> Option<(u64, u64)> {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        for candidate in [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ] {
            if trimmed.starts_with(&candidate) {
                let col = line.len() - trimmed.len() + 1;
                return Some((i as u64 + 1, col as u64));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Inventory, InventoryError> {
        parse(text, Path::new("/etc/faultline/inv.yaml"))
    }

    fn err(text: &str) -> String {
        match p(text) {
            Ok(inv) => panic!("expected an error, parsed {inv:?}"),
            Err(e) => e.to_string(),
        }
    }

    const NATIVE: &str = "\
ssh:
  user: admin
  private_key: keys/id_ed25519
  port: 2222
  known_hosts: /var/lib/fl/known_hosts
  host_key_policy: strict
  connect_timeout_ms: 3000
  command_timeout_ms: 20000
nodes:
  - name: n1
    host: 10.0.0.1
  - name: n2
    host: db2.example
    port: 22
    user: root
    key: ~/.ssh/other
";

    #[test]
    fn native_inventory_applies_shared_settings_and_node_overrides() {
        let inv = p(NATIVE).unwrap();
        assert_eq!(inv.node_names(), vec!["n1", "n2"]);
        let n1 = inv.node("n1").unwrap();
        assert_eq!(
            (n1.host.as_str(), n1.port, n1.user.as_str()),
            ("10.0.0.1", 2222, "admin")
        );
        assert_eq!(n1.private_key, None);
        assert_eq!(
            inv.key_for(n1),
            Some(Path::new("/etc/faultline/keys/id_ed25519"))
        );
        let n2 = inv.node("n2").unwrap();
        assert_eq!((n2.port, n2.user.as_str()), (22, "root"));
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            n2.private_key.as_deref(),
            Some(Path::new(&format!("{home}/.ssh/other")))
        );
        assert_eq!(inv.ssh.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(
            inv.ssh.known_hosts.as_deref(),
            Some(Path::new("/var/lib/fl/known_hosts"))
        );
        assert_eq!(inv.ssh.connect_timeout_ms, 3000);
        assert_eq!(inv.ssh.command_timeout_ms, 20000);
    }

    #[test]
    fn native_defaults_are_root_port_22_accept_new() {
        let inv = p("nodes:\n  - {name: a, host: 127.0.0.1}\n").unwrap();
        let a = &inv.nodes[0];
        assert_eq!((a.port, a.user.as_str()), (22, "root"));
        assert_eq!(inv.ssh.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(inv.ssh.max_sessions_per_host, DEFAULT_MAX_SESSIONS_PER_HOST);
    }

    #[test]
    fn unknown_key_is_located() {
        let e = err("nodes:\n  - name: n1\n    host: h\n    prot: 22\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:4:"), "{e}");
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn unknown_ssh_key_is_located() {
        let e = err("ssh:\n  usr: x\nnodes:\n  - {name: a, host: b}\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:2:"), "{e}");
        assert!(e.contains("usr"), "{e}");
    }

    #[test]
    fn duplicate_node_names_the_second_and_the_first() {
        let e = err("nodes:\n  - name: n1\n    host: a\n  - name: n1\n    host: b\n");
        assert!(
            e.starts_with("/etc/faultline/inv.yaml:4:11: duplicate node \"n1\""),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn missing_host_is_located_at_the_node() {
        let e = err("nodes:\n  - name: a\n    host: x\n  - name: b\n");
        assert!(
            e.starts_with("/etc/faultline/inv.yaml:4:11: node \"b\" has no `host`"),
            "{e}"
        );
    }

    #[test]
    fn bad_port_is_located() {
        let e = err("nodes:\n  - name: a\n    host: x\n    port: 70000\n");
        assert!(
            e.starts_with("/etc/faultline/inv.yaml:4:11: bad port 70000"),
            "{e}"
        );
        let e = err("ssh:\n  port: 0\nnodes:\n  - {name: a, host: x}\n");
        assert!(
            e.starts_with("/etc/faultline/inv.yaml:2:9: bad port 0"),
            "{e}"
        );
    }

    #[test]
    fn port_of_wrong_type_is_located() {
        let e = err("nodes:\n  - name: a\n    host: x\n    port: twenty\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:4:"), "{e}");
    }

    #[test]
    fn bad_host_key_policy_is_located() {
        let e = err("ssh:\n  host_key_policy: maybe\nnodes:\n  - {name: a, host: x}\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:2:"), "{e}");
    }

    #[test]
    fn malformed_yaml_is_located() {
        let e = err("nodes:\n  - name: a\n    host: [x\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:"), "{e}");
        let (line, _) = e["/etc/faultline/inv.yaml:".len()..]
            .split_once(':')
            .unwrap();
        assert!(line.parse::<u64>().unwrap() >= 3, "{e}");
    }

    #[test]
    fn empty_and_foreign_files_are_refused() {
        assert!(err("").contains("empty inventory"));
        let e = err("hosts:\n  - a\n");
        assert!(e.contains("expected top-level `nodes:`"), "{e}");
        let e = err("nodes: []\n");
        assert!(e.contains("`nodes` is empty"), "{e}");
    }

    #[test]
    fn bad_node_name_and_zero_timeout_are_refused() {
        let e = err("nodes:\n  - {name: 'a b', host: x}\n");
        assert!(e.contains("bad node name"), "{e}");
        let e = err("ssh:\n  connect_timeout_ms: 0\nnodes:\n  - {name: a, host: x}\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:2:"), "{e}");
        assert!(e.contains("must be positive"), "{e}");
    }

    const ANSIBLE: &str = "\
all:
  vars:
    ansible_user: ops
    ansible_ssh_private_key_file: keys/ops
    some_unrelated_var: 7
  hosts:
    bastion:
      ansible_host: 192.0.2.1
  children:
    db:
      vars:
        ansible_port: 2200
      hosts:
        db1:
          ansible_host: 192.0.2.11
        db2:
          ansible_host: 192.0.2.12
          ansible_port: 2201
          ansible_user: root
      children:
        replicas:
          hosts:
            db3:
";

    #[test]
    fn ansible_inventory_is_detected_and_vars_inherit() {
        let inv = p(ANSIBLE).unwrap();
        assert_eq!(inv.node_names(), vec!["bastion", "db1", "db2", "db3"]);
        let b = inv.node("bastion").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.user.as_str()),
            ("192.0.2.1", 22, "ops")
        );
        assert_eq!(
            b.private_key.as_deref(),
            Some(Path::new("/etc/faultline/keys/ops"))
        );
        let db1 = inv.node("db1").unwrap();
        assert_eq!((db1.port, db1.user.as_str()), (2200, "ops"));
        let db2 = inv.node("db2").unwrap();
        assert_eq!((db2.port, db2.user.as_str()), (2201, "root"));
        // A host without ansible_host is reached by its name, with the inherited port.
        let db3 = inv.node("db3").unwrap();
        assert_eq!((db3.host.as_str(), db3.port), ("db3", 2200));
    }

    #[test]
    fn ansible_bad_port_is_located() {
        let e = err("all:\n  hosts:\n    a:\n      ansible_port: 99999\n");
        assert!(
            e.starts_with("/etc/faultline/inv.yaml:4:21: bad port 99999"),
            "{e}"
        );
    }

    #[test]
    fn ansible_unknown_group_key_is_located() {
        let e = err("all:\n  hosts:\n    a:\n  childs:\n    x: {}\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:4:"), "{e}");
        assert!(e.contains("childs"), "{e}");
    }

    #[test]
    fn ansible_without_hosts_is_refused() {
        assert!(err("all:\n  vars:\n    ansible_user: x\n").contains("no hosts"));
    }

    #[test]
    fn ansible_duplicate_host_key_is_refused() {
        let e = err("all:\n  hosts:\n    a:\n    a:\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:4:"), "{e}");
    }

    #[test]
    fn select_keeps_order_and_rejects_unknown() {
        let inv = p(ANSIBLE).unwrap();
        let s = inv.select(&["db2".into(), "bastion".into()]).unwrap();
        assert_eq!(s.node_names(), vec!["db2", "bastion"]);
        let e = inv.select(&["nope".into()]).unwrap_err();
        assert!(e.contains("nodes: bastion, db1, db2, db3"), "{e}");
    }

    #[test]
    fn shipped_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories");
        for f in [
            "local.example.yaml",
            "vms.example.yaml",
            "ansible.example.yaml",
        ] {
            let inv = load(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(inv.nodes.len() >= 3, "{f}");
        }
    }
}
