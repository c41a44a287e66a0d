//! Inventories: which hosts a run talks to and how to reach them over SSH.
//!
//! Two YAML shapes are accepted and told apart by their top-level keys:
//!
//! * faultline's own (`nodes:` list plus shared `ssh:` settings), parsed with
//!   `deny_unknown_fields` so a typo is an error rather than a silent default;
//! * Ansible's (`all: {hosts, vars, children}`), so an existing VM inventory works as is.
//!
//! Raw YAML is deserialized into `Raw*` types that keep source spans, then validated into
//! [`Inventory`] by one node builder both formats share (`node`). Every error names the file,
//! line and column, and the field, and is a usage error (exit 64) at the CLI edge. Key files
//! are checked when the inventory is loaded, so a missing one is an inventory error, not a
//! connection failure. `-i NAME` also accepts the name of a local cluster (`faultline cluster up
//! --name NAME`), which resolves to the inventory that cluster wrote.

mod ansible;
mod native;
mod node;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_saphyr::MessageFormatter;

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
    /// How privileged steps run on this node: `None` runs them as the login user (a root
    /// login), `Some` wraps them in sudo.
    pub privilege: Option<Become>,
}

/// Privilege escalation through sudo (the only method: it is everywhere, and it can read a
/// password on stdin, which keeps the password off every command line).
#[derive(Clone, PartialEq)]
pub struct Become {
    /// Whom privileged steps run as (`become_user`, default root).
    pub user: String,
    pub password: Option<BecomePassword>,
}

impl fmt::Debug for Become {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Become")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

/// Where the sudo password comes from. Read when connecting, never written anywhere.
#[derive(Clone, PartialEq)]
pub enum BecomePassword {
    /// `become_password_env: VAR`.
    Env(String),
    /// `become_password_file: PATH` (first line).
    File(PathBuf),
    /// Ansible's `ansible_become_password`, as written in the inventory.
    Inline(String),
}

impl fmt::Debug for BecomePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BecomePassword::Env(v) => write!(f, "Env({v:?})"),
            BecomePassword::File(p) => write!(f, "File({p:?})"),
            BecomePassword::Inline(_) => f.write_str("Inline(<redacted>)"),
        }
    }
}

impl BecomePassword {
    /// The password itself; the error says which setting failed and why, never the value.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            BecomePassword::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => Err(format!("become_password_env: environment variable {var} is empty")),
                Err(_) => Err(format!(
                    "become_password_env: environment variable {var} is not set (export it, or use become_password_file)"
                )),
            },
            BecomePassword::File(p) => match std::fs::read_to_string(p) {
                Ok(t) => match t.lines().next() {
                    Some(l) if !l.is_empty() => Ok(l.to_string()),
                    _ => Err(format!("become_password_file {}: first line is empty", p.display())),
                },
                Err(e) => Err(format!("become_password_file {}: {e}", p.display())),
            },
            BecomePassword::Inline(v) => Ok(v.clone()),
        }
    }
}

/// How an unknown or changed host key is treated, mirroring `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The default for nodes that do not set their own (`ssh.become: sudo`).
    pub privilege: Option<Become>,
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
            privilege: None,
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
    pub fn select(&self, names: &[String]) -> Result<Inventory, SelectError> {
        let mut out = self.clone();
        out.nodes.clear();
        for name in names {
            match self.node(name) {
                Some(n) if !out.nodes.iter().any(|m| m.name == n.name) => out.nodes.push(n.clone()),
                Some(_) => return Err(SelectError::Twice(name.clone())),
                None => {
                    return Err(SelectError::Unknown {
                        name: name.clone(),
                        path: self.path.clone(),
                        known: self.node_names().join(", "),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A `--nodes` list that does not fit the inventory: a usage error at the CLI edge.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("node {0:?} named twice")]
    Twice(String),
    #[error("no node {name:?} in {}; nodes: {known}", .path.display())]
    Unknown {
        name: String,
        path: PathBuf,
        known: String,
    },
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

/// Reads and parses an inventory, and checks that every private key it names can be read.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: path.into(),
        source,
    })?;
    let (inv, keys) = parse_with_keys(&text, path)?;
    for k in keys {
        if let Err(e) = check_readable(&k.path) {
            return Err(InventoryError::At {
                path: path.into(),
                line: k.line,
                column: k.column,
                message: format!(
                    "{}: cannot read key file {}: {e}",
                    k.field,
                    k.path.display()
                ),
            });
        }
    }
    Ok(inv)
}

/// Opening is not enough: a directory opens too.
fn check_readable(p: &Path) -> std::io::Result<()> {
    let mut f = std::fs::File::open(p)?;
    // An empty key file is ssh's to refuse; this only asks whether reading works.
    f.read(&mut [0u8; 1]).map(|_| ())
}

/// Parses inventory text; `path` is used for messages and to resolve relative key paths.
/// Key files are not looked at (see [`load`]), so text naming keys elsewhere can be checked.
#[cfg(test)]
pub fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    parse_with_keys(text, path).map(|(inv, _)| inv)
}

/// A private key named by the inventory, and where.
struct KeyRef {
    path: PathBuf,
    field: String,
    line: u64,
    column: u64,
}

fn parse_with_keys(text: &str, path: &Path) -> Result<(Inventory, Vec<KeyRef>), InventoryError> {
    let ctx = Ctx {
        path,
        text,
        keys: RefCell::new(Vec::new()),
    };
    let top: BTreeMap<String, serde::de::IgnoredAny> = match serde_saphyr::from_str(text) {
        Ok(Some(m)) => m,
        Ok(None) => return Err(ctx.invalid("empty inventory: expected `nodes:` or Ansible `all:`")),
        Err(e) => return Err(ctx.saphyr(e)),
    };
    let (ssh, nodes) = if top.contains_key("all") && !top.contains_key("nodes") {
        ansible::parse(&ctx)?
    } else if top.contains_key("nodes") {
        native::parse(&ctx)?
    } else {
        let keys: Vec<_> = top.keys().cloned().collect();
        return Err(ctx.at(
            1,
            1,
            format!(
                "not an inventory: expected top-level `nodes:` (faultline) or `all:` (Ansible), found: {}",
                keys.join(", ")
            ),
        ));
    };
    let inv = Inventory {
        path: path.into(),
        nodes,
        ssh,
    };
    Ok((inv, ctx.keys.into_inner()))
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    /// Key files named so far, for [`load`] to check.
    keys: RefCell<Vec<KeyRef>>,
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

    fn invalid(&self, message: impl Into<String>) -> InventoryError {
        InventoryError::Invalid {
            path: self.path.into(),
            message: message.into(),
        }
    }

    /// The location goes in front, once; serde-saphyr's own rendering repeats it in the text
    /// and adds a snippet, so only its bare message is used.
    fn saphyr(&self, e: serde_saphyr::Error) -> InventoryError {
        let message = serde_saphyr::DefaultMessageFormatter
            .format_message(e.without_snippet())
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
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

    #[test]
    fn become_is_inherited_overridden_and_checked() {
        let inv = p("ssh:\n  user: debian\n  become: sudo\n  become_password_env: FL_PW\nnodes:\n  - {name: n1, host: a}\n  - {name: n2, host: b, become: none}\n  - {name: n3, host: c, become_user: postgres}\n").unwrap();
        let b1 = inv.nodes[0].privilege.clone().unwrap();
        assert_eq!(b1.user, "root");
        assert_eq!(b1.password, Some(BecomePassword::Env("FL_PW".into())));
        assert!(inv.nodes[1].privilege.is_none());
        assert_eq!(inv.nodes[2].privilege.as_ref().unwrap().user, "postgres");
        let e = err("ssh:\n  become: doas\nnodes:\n  - {name: n1, host: a}\n");
        assert!(e.contains("ssh.become") && e.contains("sudo"), "{e}");
        let e = err("nodes:\n  - {name: n1, host: a, become_user: x}\n");
        assert!(e.contains("nodes[0].become_user") && e.contains("without `become: sudo`"), "{e}");
        let e = err("ssh:\n  become: sudo\n  become_password_env: A\n  become_password_file: /f\nnodes:\n  - {name: n1, host: a}\n");
        assert!(e.contains("one way only"), "{e}");
    }

    #[test]
    fn ansible_become_is_read_and_other_methods_refused() {
        let inv = p("all:\n  vars:\n    ansible_become: true\n    ansible_become_pass: hunter2\n  hosts:\n    n1: {ansible_host: a}\n").unwrap();
        let b = inv.nodes[0].privilege.clone().unwrap();
        assert_eq!(b.password, Some(BecomePassword::Inline("hunter2".into())));
        assert!(!format!("{inv:?}").contains("hunter2"), "the password shows in Debug");
        let e = err("all:\n  vars:\n    ansible_become: true\n    ansible_become_method: su\n  hosts:\n    n1: {}\n");
        assert!(e.contains("ansible_become_method") && e.contains("sudo only"), "{e}");
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
            e.starts_with("/etc/faultline/inv.yaml:4:11: nodes[0].port: bad port 70000"),
            "{e}"
        );
        let e = err("ssh:\n  port: 0\nnodes:\n  - {name: a, host: x}\n");
        assert!(
            e.starts_with("/etc/faultline/inv.yaml:2:9: ssh.port: bad port 0"),
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
            e.starts_with("/etc/faultline/inv.yaml:4:21: ansible_port: bad port 99999"),
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
        let e = inv.select(&["nope".into()]).unwrap_err().to_string();
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
            // Parsed, not loaded: the keys they name are the reader's, not this machine's.
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            let inv = parse(&text, &dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(inv.nodes.len() >= 3, "{f}");
        }
    }

    #[test]
    fn yaml_error_states_its_location_once() {
        let e = err("nodes:\n  - name: a\n    host: [x\n");
        assert!(e.starts_with("/etc/faultline/inv.yaml:3:"), "{e}");
        assert!(!e.contains("line 3"), "{e}");
        assert_eq!(e.matches(":3:").count(), 1, "{e}");
        let e = err("nodes:\n  - name: a\n    host: x\n    prot: 22\n");
        assert_eq!(
            e,
            "/etc/faultline/inv.yaml:4:5: unknown field `prot`, expected one of name, host, port, user, key, private_key, become, become_user, become_password_env, become_password_file"
        );
    }

    #[test]
    fn wrong_type_names_the_field_and_the_value() {
        let text = "nodes:\n  - name: a\n    host: x\n  - name: b\n    host: y\n    port: abc\n";
        assert_eq!(
            err(text),
            "/etc/faultline/inv.yaml:6:11: nodes[1].port: expected an integer, got \"abc\""
        );
        let e = err("ssh:\n  connect_timeout_ms: soon\nnodes:\n  - {name: a, host: x}\n");
        assert!(
            e.starts_with(
                "/etc/faultline/inv.yaml:2:23: ssh.connect_timeout_ms: expected an integer, got \"soon\""
            ),
            "{e}"
        );
        let e = err("ssh:\n  host_key_policy: maybe\nnodes:\n  - {name: a, host: x}\n");
        assert!(
            e.starts_with("/etc/faultline/inv.yaml:2:20: ssh.host_key_policy: expected strict, accept-new or no, got \"maybe\""),
            "{e}"
        );
        let e = err("all:\n  hosts:\n    a:\n      ansible_port: abc\n");
        assert!(
            e.starts_with("/etc/faultline/inv.yaml:4:21: ansible_port: expected an integer"),
            "{e}"
        );
    }

    #[test]
    fn host_key_policy_no_is_the_word_not_a_boolean() {
        let inv = p("ssh:\n  host_key_policy: no\nnodes:\n  - {name: a, host: x}\n").unwrap();
        assert_eq!(inv.ssh.host_key_policy, HostKeyPolicy::No);
        let inv =
            p("all:\n  vars:\n    faultline_host_key_policy: strict\n  hosts:\n    a:\n").unwrap();
        assert_eq!(inv.ssh.host_key_policy, HostKeyPolicy::Strict);
    }

    #[test]
    fn quoted_port_is_accepted_as_ansible_writes_it() {
        let inv = p("all:\n  hosts:\n    a:\n      ansible_port: \"2222\"\n").unwrap();
        assert_eq!(inv.nodes[0].port, 2222);
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fl-inv-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_or_unreadable_key_is_an_inventory_error_at_load() {
        let d = temp_dir("keys");
        let inv = d.join("inv.yaml");
        std::fs::write(
            &inv,
            "ssh:\n  private_key: nokey\nnodes:\n  - name: a\n    host: x\n",
        )
        .unwrap();
        let e = load(&inv).unwrap_err().to_string();
        let want = format!(
            "{}:2:16: ssh.private_key: cannot read key file {}: ",
            inv.display(),
            d.join("nokey").display()
        );
        assert!(e.starts_with(&want), "{e}");
        assert!(e.contains("No such file"), "{e}");
        // A node's own key, and one that exists but cannot be read (a directory).
        std::fs::create_dir(d.join("keydir")).unwrap();
        std::fs::write(&inv, "nodes:\n  - name: a\n    host: x\n    key: keydir\n").unwrap();
        let e = load(&inv).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:4:10: nodes[0].key: cannot read key file",
                inv.display()
            )),
            "{e}"
        );
        // A readable key loads.
        std::fs::write(d.join("id"), "key").unwrap();
        std::fs::write(&inv, "nodes:\n  - name: a\n    host: x\n    key: id\n").unwrap();
        assert_eq!(load(&inv).unwrap().nodes[0].private_key, Some(d.join("id")));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn user_or_host_beginning_with_a_dash_is_refused() {
        let e = err("nodes:\n  - {name: a, host: x, user: -oProxyCommand=x}\n");
        assert!(
            e.starts_with(
                "/etc/faultline/inv.yaml:2:30: nodes[0].user: bad user \"-oProxyCommand=x\""
            ),
            "{e}"
        );
        let e = err("ssh:\n  user: -root\nnodes:\n  - {name: a, host: x}\n");
        assert!(e.contains("ssh.user: bad user"), "{e}");
        let e = err("nodes:\n  - {name: a, host: -x}\n");
        assert!(e.contains("nodes[0].host: bad host \"-x\""), "{e}");
        let e = err("all:\n  hosts:\n    a:\n      ansible_user: -u\n");
        assert!(e.contains("ansible_user: bad user"), "{e}");
        let e = err("all:\n  hosts:\n    -h:\n");
        assert!(e.contains("bad host \"-h\""), "{e}");
    }
}
