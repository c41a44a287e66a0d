//! etcd as a database under test: its knobs, its command line, installing it on a host,
//! and a client that speaks the workloads' operations through the etcd v3 API.
//!
//! faultline starts `etcd` itself, as a daemon whose pid it records in the layout's pidfile,
//! so kill and pause act on that pid and never on a process name; a packaged etcd service
//! is never started, stopped or reused (its ports being taken fails pre-flight instead).
//!
//! Outcomes are honest: an operation fails definitely only when etcd certainly did not
//! apply it (a compare that executed and failed, a request refused before it was sent or
//! before etcd proposed it); a timeout or a connection lost after sending is indefinite.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, TxnOpResponse};
use faultline_workloads::{Kv, KvError, Mop, MopF};
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Database, Db, DbArgs, DbEntry, DbError, DbSettings, OpenOptions};
use crate::control::{Control, quote};
use crate::deploy::{self, Layout, socket_addr};
use crate::inventory::Inventory;

/// etcd's well-known ports; pre-flight fails when either is taken on a host.
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;

/// Where etcd lives on a host. The pidfile, console log and logs follow from `data_dir`
/// as for every database ([`Layout::pidfile`], [`Layout::logs`]); etcd's own storage is
/// [`member_dir`] inside it, so the pidfile check (the data dir on the command line) holds.
pub const HOST_DIR: &str = "/var/lib/faultline/etcd";

/// Where an uploaded `--db-binary` goes: outside [`HOST_DIR`], which configure wipes.
pub const UPLOADED_BIN: &str = "/var/lib/faultline/bin/etcd";

/// Attempts at an append's read-modify-write before it gives up on a contended key.
const APPEND_ATTEMPTS_MAX: usize = 8;

/// Attempts at a transaction's read-then-guarded-commit before it gives up on contended keys.
const TXN_ATTEMPTS_MAX: usize = 8;

/// The status connection's bound on one call.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long one host may take to install etcd from its package manager.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

const SHORT: Duration = Duration::from_secs(20);

/// etcd refuses an election timeout above this (`--election-timeout` is capped at 50 s).
const ELECTION_TIMEOUT_MS_MAX: u64 = 50_000;

/// The layout etcd runs with when the binary is `bin` (`etcd` from the host's PATH, or
/// [`UPLOADED_BIN`]).
pub fn layout(bin: &str) -> Layout {
    Layout {
        bin: bin.to_string(),
        data_dir: HOST_DIR.to_string(),
        client_port: CLIENT_PORT,
        peer_port: PEER_PORT,
    }
}

/// etcd's storage directory (`--data-dir`), inside the layout's directory.
pub fn member_dir(layout: &Layout) -> String {
    format!("{}/data", layout.data_dir)
}

/// A `--db-opt` that etcd cannot take. Messages leave out "etcd": the registry's error
/// names the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("unknown knob {given:?}{}; known: {known}", closest.map(|c| format!(" (did you mean {c:?}, {}?)", knob_about(c))).unwrap_or_default())]
    UnknownKnob {
        given: String,
        closest: Option<&'static str>,
        known: String,
    },
    #[error("{knob}={value:?}: {reason}")]
    BadValue {
        knob: &'static str,
        value: String,
        reason: String,
    },
    #[error("{knob} given twice ({first:?}, then {second:?})")]
    Repeated {
        knob: &'static str,
        first: String,
        second: String,
    },
    /// Knobs that are fine alone but not together.
    #[error("{0}")]
    Inconsistent(String),
    #[error("node {node:?} is not a member of the etcd cluster ({members})")]
    UnknownMember { node: String, members: String },
}

/// One declared knob: its name and what it does, for `--help`-like listings and errors.
pub struct Knob {
    pub name: &'static str,
    pub about: &'static str,
}

/// Every knob `--db-opt` accepts for etcd.
pub const KNOBS: &[Knob] = &[
    Knob {
        name: "heartbeat_ms",
        about: "--heartbeat-interval: the leader's heartbeat, and etcd's raft tick",
    },
    Knob {
        name: "election_timeout_ms",
        about: "--election-timeout E; etcd's raft waits a random time in [E, 2E) before \
                campaigning, so faultline's election_timeout_ms_min/max map to E = min, max = 2E",
    },
    Knob {
        name: "election_timeout_ms_min",
        about: "the same as election_timeout_ms",
    },
    Knob {
        name: "election_timeout_ms_max",
        about: "accepted only as 2 x election_timeout_ms, which is what etcd derives itself",
    },
    Knob {
        name: "serializable_reads",
        about: "true: reads are served from the contacted member's local state \
                (serializable, possibly stale) instead of linearizable reads",
    },
    Knob {
        name: "snapshot_count",
        about: "--snapshot-count: committed entries between snapshots",
    },
    Knob {
        name: "quota_backend_bytes",
        about: "--quota-backend-bytes: backend size at which etcd raises its space alarm",
    },
];

fn knob_about(name: &str) -> &'static str {
    KNOBS.iter().find(|k| k.name == name).map(|k| k.about).unwrap_or_default()
}

/// etcd's own defaults, for the report's resolved knobs.
const DEFAULT_HEARTBEAT_MS: u64 = 100;
const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 1000;

/// Validated `--db-opt` knobs. `None` leaves etcd's default in force (the flag is omitted
/// from the command line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EtcdOptions {
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub serializable_reads: bool,
    pub snapshot_count: Option<u64>,
    pub quota_backend_bytes: Option<u64>,
}

fn parse_u64(knob: &'static str, value: &str, min: u64) -> Result<u64, EtcdError> {
    let bad = |reason: String| EtcdError::BadValue {
        knob,
        value: value.to_string(),
        reason,
    };
    let v = value
        .trim()
        .trim_end_matches("ms")
        .parse::<u64>()
        .map_err(|_| bad("expected a whole number".into()))?;
    if v < min {
        return Err(bad(format!("must be at least {min}")));
    }
    Ok(v)
}

fn parse_bool(knob: &'static str, value: &str) -> Result<bool, EtcdError> {
    match value.trim() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(EtcdError::BadValue {
            knob,
            value: value.to_string(),
            reason: "expected true or false".into(),
        }),
    }
}

impl EtcdOptions {
    /// Checks `--db-opt KEY=VALUE` pairs (`-` in a key read as `_`), locally and before any
    /// host is contacted, with the same cross-checks etcd makes at startup.
    pub fn from_db_opts(opts: &[(String, String)]) -> Result<EtcdOptions, EtcdError> {
        let mut o = EtcdOptions::default();
        let mut seen: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut election_max: Option<u64> = None;
        for (k, v) in opts {
            let key = k.trim().replace('-', "_");
            let Some(knob) = KNOBS.iter().find(|n| n.name == key) else {
                return Err(EtcdError::UnknownKnob {
                    given: k.clone(),
                    closest: super::closest(&key, KNOBS.iter().map(|n| n.name)),
                    known: KNOBS.iter().map(|n| n.name).collect::<Vec<_>>().join(", "),
                });
            };
            // The min alias and the plain name set one thing.
            let slot = if knob.name == "election_timeout_ms_min" {
                "election_timeout_ms"
            } else {
                knob.name
            };
            if let Some(first) = seen.insert(slot, v.clone()) {
                return Err(EtcdError::Repeated {
                    knob: slot,
                    first,
                    second: v.clone(),
                });
            }
            match knob.name {
                "heartbeat_ms" => o.heartbeat_ms = Some(parse_u64(knob.name, v, 1)?),
                "election_timeout_ms" | "election_timeout_ms_min" => {
                    let e = parse_u64(knob.name, v, 1)?;
                    if e > ELECTION_TIMEOUT_MS_MAX {
                        return Err(EtcdError::BadValue {
                            knob: knob.name,
                            value: v.clone(),
                            reason: format!("etcd allows at most {ELECTION_TIMEOUT_MS_MAX}"),
                        });
                    }
                    o.election_timeout_ms = Some(e);
                }
                "election_timeout_ms_max" => election_max = Some(parse_u64(knob.name, v, 1)?),
                "serializable_reads" => o.serializable_reads = parse_bool(knob.name, v)?,
                "snapshot_count" => o.snapshot_count = Some(parse_u64(knob.name, v, 1)?),
                "quota_backend_bytes" => o.quota_backend_bytes = Some(parse_u64(knob.name, v, 1)?),
                other => unreachable!("knob {other} is declared but not parsed"),
            }
        }
        if let Some(max) = election_max {
            let e = o.election_timeout_ms.unwrap_or(DEFAULT_ELECTION_TIMEOUT_MS);
            if max != 2 * e {
                return Err(EtcdError::Inconsistent(format!(
                    "election_timeout_ms_max={max}: etcd waits a random time in [E, 2E) with \
                     E = election_timeout_ms ({e}), so the maximum can only be {}; set \
                     election_timeout_ms alone",
                    2 * e
                )));
            }
        }
        let hb = o.heartbeat_ms.unwrap_or(DEFAULT_HEARTBEAT_MS);
        let et = o.election_timeout_ms.unwrap_or(DEFAULT_ELECTION_TIMEOUT_MS);
        if et < 5 * hb {
            return Err(EtcdError::Inconsistent(format!(
                "election_timeout_ms ({et}) must be at least 5 x heartbeat_ms ({hb}); etcd \
                 refuses to start otherwise"
            )));
        }
        Ok(o)
    }

    /// Every knob with the value in force, etcd's defaults included (for `test.json`).
    pub fn resolved(&self) -> Value {
        let et = self.election_timeout_ms.unwrap_or(DEFAULT_ELECTION_TIMEOUT_MS);
        json!({
            "heartbeat_ms": self.heartbeat_ms.unwrap_or(DEFAULT_HEARTBEAT_MS),
            "election_timeout_ms": et,
            "election_timeout_ms_min": et,
            "election_timeout_ms_max": 2 * et,
            "serializable_reads": self.serializable_reads,
            "snapshot_count": self.snapshot_count,
            "quota_backend_bytes": self.quota_backend_bytes,
        })
    }
}

/// One member of the cluster: its name (etcd's `--name`, the inventory's node name), the
/// host the others reach it at, and its ports (the layout's, except in loopback tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
}

impl Member {
    /// Members for an inventory's `(name, host)` pairs, all on the layout's ports.
    pub fn from_hosts(hosts: &[(String, String)], layout: &Layout) -> Vec<Member> {
        hosts
            .iter()
            .map(|(name, host)| Member {
                name: name.clone(),
                host: host.clone(),
                client_port: layout.client_port,
                peer_port: layout.peer_port,
            })
            .collect()
    }

    pub fn client_url(&self) -> String {
        format!("http://{}", socket_addr(&self.host, self.client_port))
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}", socket_addr(&self.host, self.peer_port))
    }

    /// etcd binds only to IP literals; a member known by a DNS name listens on every
    /// address and advertises its name.
    fn listen_host(&self) -> &str {
        if self.host.parse::<IpAddr>().is_ok() {
            &self.host
        } else if self.host.contains(':') {
            "::"
        } else {
            "0.0.0.0"
        }
    }

    fn listen_url(&self, port: u16) -> String {
        format!("http://{}", socket_addr(self.listen_host(), port))
    }
}

/// etcd's argv for `me`, binary first. `token` is `--initial-cluster-token`: unique per
/// run, so members left over from another run can never join this cluster.
pub fn etcd_args(
    layout: &Layout,
    opts: &EtcdOptions,
    members: &[Member],
    me: &str,
    token: &str,
) -> Result<Vec<String>, EtcdError> {
    let own = members
        .iter()
        .find(|m| m.name == me)
        .ok_or_else(|| EtcdError::UnknownMember {
            node: me.to_string(),
            members: members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
        })?;
    let initial = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        layout.bin.clone(),
        format!("--name={me}"),
        format!("--data-dir={}", member_dir(layout)),
        format!("--listen-client-urls={}", own.listen_url(own.client_port)),
        format!("--advertise-client-urls={}", own.client_url()),
        format!("--listen-peer-urls={}", own.listen_url(own.peer_port)),
        format!("--initial-advertise-peer-urls={}", own.peer_url()),
        format!("--initial-cluster={initial}"),
        "--initial-cluster-state=new".to_string(),
        format!("--initial-cluster-token={token}"),
    ];
    if let Some(hb) = opts.heartbeat_ms {
        args.push(format!("--heartbeat-interval={hb}"));
    }
    if let Some(et) = opts.election_timeout_ms {
        args.push(format!("--election-timeout={et}"));
    }
    if let Some(n) = opts.snapshot_count {
        args.push(format!("--snapshot-count={n}"));
    }
    if let Some(q) = opts.quota_backend_bytes {
        args.push(format!("--quota-backend-bytes={q}"));
    }
    Ok(args)
}

/// The exact command line, one shell word per argument, for the report and the start
/// command.
pub fn command_line(
    layout: &Layout,
    opts: &EtcdOptions,
    members: &[Member],
    me: &str,
    token: &str,
) -> Result<String, EtcdError> {
    Ok(etcd_args(layout, opts, members, me, token)?
        .iter()
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" "))
}

/// The shell command that starts etcd on `me`'s host detached from the SSH session, output
/// in the console log, recording etcd's pid in the layout's pidfile (etcd writes none).
/// `setsid` does not fork here (a backgrounded child of a non-interactive shell is no
/// process-group leader), so `$!` is etcd itself once `nohup` has exec'd it. The braces
/// matter: in `a && b & c` the whole `a && b` is the background job, so `$!` would be a
/// subshell and `c` would race `a`.
pub fn start_command(
    layout: &Layout,
    opts: &EtcdOptions,
    members: &[Member],
    me: &str,
    token: &str,
) -> Result<String, EtcdError> {
    let cmd = command_line(layout, opts, members, me, token)?;
    Ok(format!(
        "mkdir -p {logs} && {{ setsid nohup {cmd} >> {console} 2>&1 < /dev/null & echo $! > {pf}; }}",
        logs = quote(&layout.logs()),
        console = quote(&layout.console_log()),
        pf = quote(&layout.pidfile()),
    ))
}

/// A per-run `--initial-cluster-token`.
pub fn cluster_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("faultline-{nanos:x}-{:08x}", rand::random::<u32>())
}

/// Where the binary comes from, decided by [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binary {
    /// `etcd` on every host's PATH (already there, or installed from the package).
    OnPath,
    /// A `--db-binary` uploaded to [`UPLOADED_BIN`].
    Uploaded,
}

impl Binary {
    pub fn path(&self) -> &'static str {
        match self {
            Binary::OnPath => "etcd",
            Binary::Uploaded => UPLOADED_BIN,
        }
    }
}

/// The script that makes `etcd` available on a host that has no `--db-binary`: nothing
/// when it is on the PATH, else the Debian package, with a `policy-rc.d` that forbids the
/// package to start its service (removed again if this script created it; one that was
/// there already is left alone). Prints `etcd=present`, `etcd=installed` or
/// `etcd=missing` followed by apt's last lines.
pub fn install_script() -> String {
    r#"if command -v etcd >/dev/null 2>&1; then echo etcd=present; exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then echo etcd=missing; echo "no apt-get on this host"; exit 0; fi
if [ "$(id -u)" -ne 0 ]; then echo etcd=missing; echo "not root, cannot run apt-get"; exit 0; fi
ours=
if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && ours=1; fi
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends etcd-server >"$log" 2>&1 || { apt-get update -qq >>"$log" 2>&1; apt-get install -y -qq --no-install-recommends etcd-server >>"$log" 2>&1; }
rc=$?
[ -n "$ours" ] && rm -f /usr/sbin/policy-rc.d
if [ $rc -eq 0 ] && command -v etcd >/dev/null 2>&1; then echo etcd=installed; else echo etcd=missing; tail -n 5 "$log"; fi
rm -f "$log""#
        .to_string()
}

/// Reads [`install_script`]'s output on `node`: `Ok(true)` when it installed the package.
pub fn install_outcome(node: &str, stdout: &str) -> anyhow::Result<bool> {
    let mut lines = stdout.lines();
    match lines.next().map(str::trim) {
        Some("etcd=present") => Ok(false),
        Some("etcd=installed") => Ok(true),
        Some("etcd=missing") => {
            let why: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
            bail!(
                "{node}: etcd is not installed and could not be installed with apt-get \
                 (etcd-server){}; install etcd on {node} or pass --db-binary PATH to upload one",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", why.join(" / "))
                }
            )
        }
        _ => bail!("{node}: unexpected output from the etcd install check: {stdout:?}"),
    }
}

/// A script that prints `taken=PORT` for each of the layout's ports something listens on.
pub fn ports_script(layout: &Layout) -> String {
    format!(
        "awk 'NR>1 && $4==\"0A\" {{split($2,a,\":\"); print a[length(a)]}}' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u | while read p; do case \"$p\" in {c:04X}|{p:04X}) echo taken=$((0x$p));; esac; done",
        c = layout.client_port,
        p = layout.peer_port,
    )
}

/// The error for the ports [`ports_script`] found taken on `node`, if any.
pub fn ports_problem(node: &str, stdout: &str) -> Option<String> {
    let taken: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("taken="))
        .collect();
    if taken.is_empty() {
        return None;
    }
    Some(format!(
        "{node}: port(s) {} already in use by a process faultline did not start (a packaged \
         etcd service?); faultline never stops what it did not start: free the port(s) on {node}",
        taken.join(", ")
    ))
}

/// Checks that no host has etcd's ports taken (before install, and after it, in case a
/// package started its service anyway).
pub async fn check_ports(control: &Control, layout: &Layout) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (node, r) in control.run_all(&ports_script(layout), SHORT).await {
        match r.and_then(|o| o.check()) {
            Ok(o) => problems.extend(ports_problem(&node, &o.stdout_str())),
            Err(e) => problems.push(format!("{node}: cannot check etcd's ports: {e}")),
        }
    }
    if !problems.is_empty() {
        bail!("pre-flight failed:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// Makes etcd available on every host: an explicit `--db-binary` is uploaded (it wins over
/// whatever a host has, so a run tests the build it was asked to); otherwise the host's
/// `etcd`, installed from the package where missing. Ends with the port check.
pub async fn install(control: &Control, binary: Option<&Path>) -> anyhow::Result<Binary> {
    let chosen = if let Some(local) = binary {
        if !local.is_file() {
            bail!("--db-binary {}: no such file", local.display());
        }
        let dir = Path::new(UPLOADED_BIN)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        for (node, r) in control.run_all(&format!("mkdir -p {}", quote(&dir)), SHORT).await {
            r.and_then(|o| o.check())
                .with_context(|| format!("{node}: cannot create {dir}"))?;
        }
        let names = control.node_names();
        let mut errors = Vec::new();
        for (node, r) in control.upload(&names, local, UPLOADED_BIN, 0o755).await {
            if let Err(e) = r {
                errors.push(format!("{node}: {e}"));
            }
        }
        if !errors.is_empty() {
            bail!("cannot upload {}: {}", local.display(), errors.join("; "));
        }
        Binary::Uploaded
    } else {
        let mut errors = Vec::new();
        for (node, r) in control.run_all(&install_script(), INSTALL_TIMEOUT).await {
            match r.and_then(|o| o.check()) {
                Ok(o) => match install_outcome(&node, &o.stdout_str()) {
                    Ok(true) => tracing::info!(node = %node, "installed etcd-server"),
                    Ok(false) => {}
                    Err(e) => errors.push(e.to_string()),
                },
                Err(e) => errors.push(format!("{node}: cannot check for etcd: {e}")),
            }
        }
        if !errors.is_empty() {
            bail!("pre-flight failed:\n  {}", errors.join("\n  "));
        }
        Binary::OnPath
    };
    check_ports(control, &layout(chosen.path())).await?;
    Ok(chosen)
}

/// Why an operation did not complete, with the honesty the history needs.
fn kv_error(read_only: bool, e: &etcd_client::Error) -> KvError {
    let (tag, definite) = classify(e);
    let msg = format!("{tag}: {e}");
    // A read changes nothing, so a read that did not answer certainly had no effect.
    if definite || read_only {
        KvError::Definite(msg)
    } else {
        KvError::Indefinite(msg)
    }
}

/// A short tag for the history's `error` field and whether the failure is definite for an
/// operation that changes state.
pub fn classify(e: &etcd_client::Error) -> (&'static str, bool) {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        // Refused by the client before anything was sent.
        E::InvalidArgs(_) | E::InvalidUri(_) | E::EndpointError(_) | E::InvalidMetadataValue(_) => {
            ("bad-request", true)
        }
        E::GRpcStatus(s) => {
            let m = s.message();
            match s.code() {
                // etcd checks these before it proposes anything.
                _ if m.contains("etcdserver: no leader") => ("no-leader", true),
                _ if m.contains("etcdserver: too many requests") => ("busy", true),
                _ if m.contains("etcdserver: request is too large") => ("bad-request", true),
                _ if m.contains("database space exceeded") => ("no-space", true),
                _ if m.contains("etcdserver: not capable") => ("rejected", true),
                // The channel could not connect: the request never left the client.
                Code::Unavailable if is_connect_failure(m) => ("connect", true),
                Code::InvalidArgument | Code::OutOfRange => ("bad-request", true),
                Code::PermissionDenied | Code::Unauthenticated => ("rejected", true),
                Code::Unimplemented => ("rejected", true),
                Code::DeadlineExceeded => ("timeout", false),
                // tonic's own per-request timeout, or hyper giving up on a request when
                // its connection closed (possibly after sending it).
                Code::Cancelled if m.contains("Timeout expired") => ("timeout", false),
                Code::Cancelled => ("connection-lost", false),
                Code::Unavailable => ("unavailable", false),
                // An established connection broke (reset, closed): the request may have
                // reached etcd before it did.
                Code::Unknown if m.contains("transport error") => ("connection-lost", false),
                _ => ("unknown", false),
            }
        }
        E::TransportError(t) if is_connect_failure(&t.to_string()) => ("connect", true),
        E::TransportError(_) | E::IoError(_) => ("connection-lost", false),
        _ => ("unknown", false),
    }
}

fn is_connect_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("tcp connect error")
        || m.contains("connection refused")
        || m.contains("error trying to connect")
}

fn timeout_error(read_only: bool, limit: Duration) -> KvError {
    let msg = format!("timeout: no answer within {} ms", limit.as_millis());
    if read_only {
        KvError::Definite(msg)
    } else {
        KvError::Indefinite(msg)
    }
}

/// A value as etcd stores it: JSON text.
fn encode(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON values always serialize")
}

fn decode(key: &str, bytes: &[u8]) -> Result<Value, KvError> {
    serde_json::from_slice(bytes).map_err(|e| {
        KvError::Definite(format!(
            "bad-value: key {key:?} holds {:?}, not JSON: {e}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// A worker's connection to one member: opened on first use, so a member that is down
/// costs a definite connect failure rather than a stuck worker. Never redirected: etcd
/// forwards writes to its leader itself.
pub struct EtcdKv {
    endpoint: String,
    client: Option<Client>,
    timeout: Duration,
    serializable_reads: bool,
}

impl EtcdKv {
    /// A client for the member at `endpoint` (`http://host:port`); every call is bounded
    /// by `timeout`.
    pub fn new(endpoint: &str, timeout: Duration, serializable_reads: bool) -> EtcdKv {
        EtcdKv {
            endpoint: endpoint.to_string(),
            client: None,
            timeout,
            serializable_reads,
        }
    }

    async fn client(&mut self) -> Result<Client, KvError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        // With local reads asked for, a member cut off from its leader must still answer
        // them (that is the point); writes through it then wait for the timeout.
        let c = connect(&self.endpoint, self.timeout, !self.serializable_reads)
            .await
            .map_err(|e| match e {
                ConnectError::Timeout => timeout_error(true, self.timeout),
                // Nothing was sent yet, whatever went wrong.
                ConnectError::Etcd(e) => KvError::Definite(format!("connect: {e}")),
            })?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` bounded by the op timeout, mapping failures for a read or a change.
    async fn call<T, F, Fut>(&mut self, read_only: bool, f: F) -> Result<T, KvError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let c = self.client().await?;
        match tokio::time::timeout(self.timeout, f(c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let err = kv_error(read_only, &e);
                if matches!(classify(&e).0, "connect" | "connection-lost" | "unavailable" | "timeout") {
                    // Open a fresh channel next time rather than reuse a broken one.
                    self.client = None;
                }
                Err(err)
            }
            Err(_) => Err(timeout_error(read_only, self.timeout)),
        }
    }

    /// The current value and mod revision of `key` (`None` when absent).
    async fn get(&mut self, key: &str, serializable: bool) -> Result<Option<(Value, i64)>, KvError> {
        let k = key.to_string();
        let resp = self
            .call(true, move |mut c| async move {
                let opts = if serializable {
                    GetOptions::new().with_serializable()
                } else {
                    GetOptions::new()
                };
                c.get(k, Some(opts)).await
            })
            .await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some((decode(key, kv.value())?, kv.mod_revision()))),
        }
    }

    /// Every key of `keys` with its value and mod revision (`None` when absent), all at one
    /// revision: one read-only etcd Txn.
    async fn snapshot(&mut self, keys: &[String], serializable: bool) -> Result<Snapshot, KvError> {
        let ops: Vec<TxnOp> = keys
            .iter()
            .map(|k| {
                let opts = if serializable {
                    GetOptions::new().with_serializable()
                } else {
                    GetOptions::new()
                };
                TxnOp::get(k.as_str(), Some(opts))
            })
            .collect();
        let resp = self
            .call(true, move |mut c| async move { c.txn(Txn::new().and_then(ops)).await })
            .await?;
        let responses = resp.op_responses();
        if responses.len() != keys.len() {
            return Err(KvError::Definite(format!(
                "bad-response: {} answers to a read of {} keys",
                responses.len(),
                keys.len()
            )));
        }
        let mut snap = Snapshot::new();
        for (k, r) in keys.iter().zip(responses) {
            let TxnOpResponse::Get(g) = r else {
                return Err(KvError::Definite(format!("bad-response: a read of key {k:?} answered {r:?}")));
            };
            let entry = match g.kvs().first() {
                None => None,
                Some(kv) => Some((decode(k, kv.value())?, kv.mod_revision())),
            };
            snap.insert(k.clone(), entry);
        }
        Ok(snap)
    }

    async fn txn(&mut self, txn: Txn) -> Result<bool, KvError> {
        let resp = self
            .call(false, move |mut c| async move { c.txn(txn).await })
            .await?;
        Ok(resp.succeeded())
    }
}

enum ConnectError {
    Timeout,
    Etcd(etcd_client::Error),
}

/// `require_leader`: a member that knows no leader refuses each request at once, before
/// handling it (definitely), instead of holding it until the timeout.
async fn connect(endpoint: &str, timeout: Duration, require_leader: bool) -> Result<Client, ConnectError> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
        .with_require_leader(require_leader);
    match tokio::time::timeout(timeout, Client::connect([endpoint], Some(opts))).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(ConnectError::Etcd(e)),
        Err(_) => Err(ConnectError::Timeout),
    }
}

impl Kv for EtcdKv {
    fn read<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<Value, KvError>> {
        Box::pin(async move {
            let serializable = self.serializable_reads;
            Ok(self.get(key, serializable).await?.map(|(v, _)| v).unwrap_or(Value::Null))
        })
    }

    fn write<'a>(&'a mut self, key: &'a str, value: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let (k, v) = (key.to_string(), encode(&value));
            self.call(false, move |mut c| async move { c.put(k, v, None).await })
                .await
                .map(|_| ())
        })
    }

    fn cas<'a>(&'a mut self, key: &'a str, from: Value, to: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            // etcd fails a value compare on an absent key, like the node's cas.
            let txn = Txn::new()
                .when([Compare::value(key, CompareOp::Equal, encode(&from))])
                .and_then([TxnOp::put(key, encode(&to), None)]);
            if self.txn(txn).await? {
                Ok(())
            } else {
                // The checkers rely on exactly this tag for a compare that executed and failed.
                Err(KvError::Definite("cas-mismatch".into()))
            }
        })
    }

    fn append<'a>(&'a mut self, key: &'a str, elem: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            for attempt in 0..APPEND_ATTEMPTS_MAX {
                // A stale local read only costs a lost compare (the guard is the revision),
                // so the first read is local; after a lost race it is linearizable, so a
                // lagging member cannot lose every round.
                let current = self.get(key, attempt == 0).await?;
                let (guard, list) = match current {
                    None => (Compare::version(key, CompareOp::Equal, 0), vec![elem.clone()]),
                    Some((Value::Array(mut l), rev)) => {
                        l.push(elem.clone());
                        (Compare::mod_revision(key, CompareOp::Equal, rev), l)
                    }
                    Some((other, _)) => {
                        return Err(KvError::Definite(format!(
                            "rejected: append to key {key:?}, which holds {other}, not a list"
                        )));
                    }
                };
                let txn = Txn::new()
                    .when([guard])
                    .and_then([TxnOp::put(key, encode(&Value::Array(list)), None)]);
                if self.txn(txn).await? {
                    return Ok(());
                }
                // Another writer got in between: nothing of ours was applied; try again.
            }
            Err(KvError::Definite(format!(
                "append-conflict: lost the race for key {key:?} {APPEND_ATTEMPTS_MAX} times"
            )))
        })
    }

    /// Optimistic: read every touched key at one revision, run the micro-ops locally, then
    /// one etcd Txn guarded by those keys' mod revisions puts what was written. A guard
    /// that failed applied nothing, so only then is it retried; a read-only transaction is
    /// its snapshot (served locally with `serializable_reads`, like a read).
    fn txn<'a>(&'a mut self, ops: Vec<Mop>) -> BoxFuture<'a, Result<Vec<Mop>, KvError>> {
        Box::pin(async move {
            let keys: Vec<String> = ops
                .iter()
                .map(|m| m.key.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let read_only = ops.iter().all(|m| m.f == MopF::R);
            for attempt in 0..TXN_ATTEMPTS_MAX {
                // As for append: a stale first read costs only a lost guard; after a lost
                // race the read is linearizable, so a lagging member cannot lose every round.
                let serializable = if read_only { self.serializable_reads } else { attempt == 0 };
                let snap = self.snapshot(&keys, serializable).await?;
                let (done, written) = apply_mops(&ops, &snap)?;
                if written.is_empty() {
                    return Ok(done);
                }
                if self.txn(commit_txn(&snap, &written)).await? {
                    return Ok(done);
                }
                // A touched key changed since the read: nothing of ours was applied.
            }
            Err(KvError::Definite(format!(
                "txn-conflict: lost the race for keys {keys:?} {TXN_ATTEMPTS_MAX} times"
            )))
        })
    }
}

/// Keys as read at one revision: value and mod revision, `None` when absent.
type Snapshot = BTreeMap<String, Option<(Value, i64)>>;

/// Runs `mops` in order against `snap`, each read seeing the transaction's own earlier
/// writes: the completed micro-ops and the final value of every key written. A definite
/// error (nothing is sent) when an append meets a key that holds no list.
fn apply_mops(mops: &[Mop], snap: &Snapshot) -> Result<(Vec<Mop>, BTreeMap<String, Value>), KvError> {
    let mut written: BTreeMap<String, Value> = BTreeMap::new();
    let mut done = Vec::with_capacity(mops.len());
    for m in mops {
        let current = written
            .get(&m.key)
            .cloned()
            .or_else(|| snap.get(&m.key).cloned().flatten().map(|(v, _)| v))
            .unwrap_or(Value::Null);
        match m.f {
            MopF::R => done.push(Mop { value: current, ..m.clone() }),
            MopF::W => {
                written.insert(m.key.clone(), m.value.clone());
                done.push(m.clone());
            }
            MopF::Append => {
                let list = match current {
                    Value::Null => vec![m.value.clone()],
                    Value::Array(mut l) => {
                        l.push(m.value.clone());
                        l
                    }
                    other => {
                        return Err(KvError::Definite(format!(
                            "rejected: append to key {:?}, which holds {other}, not a list",
                            m.key
                        )));
                    }
                };
                written.insert(m.key.clone(), Value::Array(list));
                done.push(m.clone());
            }
        }
    }
    Ok((done, written))
}

/// The commit of a transaction read at `snap`: guarded by every touched key being as read
/// (same mod revision, or still absent), so reads and writes take effect together at the
/// commit's revision, or not at all.
fn commit_txn(snap: &Snapshot, written: &BTreeMap<String, Value>) -> Txn {
    let guards: Vec<Compare> = snap
        .iter()
        .map(|(k, e)| match e {
            None => Compare::version(k.as_str(), CompareOp::Equal, 0),
            Some((_, rev)) => Compare::mod_revision(k.as_str(), CompareOp::Equal, *rev),
        })
        .collect();
    let puts: Vec<TxnOp> = written
        .iter()
        .map(|(k, v)| TxnOp::put(k.as_str(), encode(v), None))
        .collect();
    Txn::new().when(guards).and_then(puts)
}

/// What the Maintenance `status` call says about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSample {
    pub member_id: u64,
    /// 0 when the member knows no leader.
    pub leader_id: u64,
    pub raft_term: u64,
    /// etcd's "raft committed index" of the responding member.
    pub raft_index: u64,
    pub raft_applied_index: u64,
}

/// The monitor's status JSON, shaped like the bundled node's (`role`, `term`, `leader`,
/// `commit_index`, `applied_index`); `names` maps member ids to node names.
pub fn status_json(s: &StatusSample, names: &BTreeMap<u64, String>) -> Value {
    let role = if s.leader_id != 0 && s.leader_id == s.member_id {
        "leader"
    } else {
        "follower"
    };
    let leader = if s.leader_id == 0 {
        Value::Null
    } else {
        names
            .get(&s.leader_id)
            .map(|n| Value::String(n.clone()))
            .unwrap_or(Value::Null)
    };
    json!({
        "role": role,
        "term": s.raft_term,
        "leader": leader,
        "commit_index": s.raft_index,
        "applied_index": s.raft_applied_index,
        "member_id": format!("{:x}", s.member_id),
        "leader_id": if s.leader_id == 0 { Value::Null } else { Value::String(format!("{:x}", s.leader_id)) },
    })
}

/// A monitor's connection to one member, with the member names it has learnt.
struct StatusConn {
    client: Client,
    /// Member ids never change within a run, so the list is fetched again only for a
    /// leader id it does not name yet.
    names: BTreeMap<u64, String>,
}

impl StatusConn {
    /// One member's status, with the leader named through the member list.
    async fn sample(&mut self) -> Result<Value, etcd_client::Error> {
        let st = self.client.status().await?;
        let sample = StatusSample {
            member_id: st.header().map(|h| h.member_id()).unwrap_or_default(),
            leader_id: st.leader(),
            raft_term: st.raft_term(),
            raft_index: st.raft_index(),
            raft_applied_index: st.raft_applied_index(),
        };
        if sample.leader_id != 0 && !self.names.contains_key(&sample.leader_id) {
            for m in self.client.member_list().await?.members() {
                if !m.name().is_empty() {
                    self.names.insert(m.id(), m.name().to_string());
                }
            }
        }
        Ok(status_json(&sample, &self.names))
    }
}

/// The registry entry: `--db etcd`.
pub const ETCD: DbEntry = DbEntry {
    name: "etcd",
    about: "etcd (v3 API): the hosts' own etcd, the etcd-server package, or --db-binary",
    validate,
    open,
    lazyfs: false,
    membership: false,
};

/// Checks the knobs and the binary locally, before any host is contacted.
fn validate(args: &DbArgs) -> Result<DbSettings, DbError> {
    let knob = |message: String| DbError::Knob {
        db: ETCD.name,
        message,
    };
    let opts = EtcdOptions::from_db_opts(&args.opts).map_err(|e| knob(e.to_string()))?;
    if let Some(b) = &args.binary {
        if !b.is_file() {
            return Err(knob(format!("--db-binary {}: no such file", b.display())));
        }
        // Not an executable for any machine (a script, a tarball): refused before any host
        // is contacted; whether its machine matches the hosts' is pre-flight's question.
        if let Err(e) = crate::deploy::elf_machine(b) {
            return Err(knob(format!("--db-binary: {e}")));
        }
    }
    Ok(DbSettings {
        db: ETCD.name,
        opts: args
            .opts
            .iter()
            .map(|(k, v)| (k.trim().replace('-', "_"), v.clone()))
            .collect(),
        resolved: opts.resolved(),
        binary: args.binary.clone(),
    })
}

fn open(settings: &DbSettings, inventory: &Inventory, o: &OpenOptions) -> Arc<dyn Database> {
    // Validated by `validate`, which every caller runs first; were it not, etcd's defaults
    // stand and the report's resolved knobs say so.
    let opts = EtcdOptions::from_db_opts(&settings.opts).unwrap_or_else(|e| {
        tracing::error!(error = %e, "etcd knobs were not validated; using etcd's defaults");
        EtcdOptions::default()
    });
    let bin = if settings.binary.is_some() { UPLOADED_BIN } else { "etcd" };
    let layout = layout(bin);
    let hosts: Vec<(String, String)> = inventory
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.host.clone()))
        .collect();
    let members = Member::from_hosts(&hosts, &layout);
    let mut db = Etcd::new(layout, opts, members, cluster_token(), o.op_timeout);
    db.binary = settings.binary.clone();
    Arc::new(db)
}

/// etcd on an inventory's hosts.
pub struct Etcd {
    layout: Layout,
    opts: EtcdOptions,
    members: Vec<Member>,
    token: String,
    op_timeout: Duration,
    /// `--db-binary`, uploaded at install.
    binary: Option<PathBuf>,
    /// One status connection per member, reused by the monitor.
    status: Vec<tokio::sync::Mutex<Option<StatusConn>>>,
}

impl Etcd {
    pub fn new(
        layout: Layout,
        opts: EtcdOptions,
        members: Vec<Member>,
        token: String,
        op_timeout: Duration,
    ) -> Etcd {
        let status = members.iter().map(|_| tokio::sync::Mutex::new(None)).collect();
        Etcd {
            layout,
            opts,
            members,
            token,
            op_timeout,
            binary: None,
            status,
        }
    }

    fn index(&self, node: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == node)
    }

    /// A client bound to `node` (an unknown node gets one whose every call fails
    /// definitely: nothing can be sent).
    pub fn kv(&self, node: &str) -> EtcdKv {
        let endpoint = self
            .index(node)
            .map(|i| self.members[i].client_url())
            .unwrap_or_else(|| format!("unknown node {node:?}"));
        EtcdKv::new(&endpoint, self.op_timeout, self.opts.serializable_reads)
    }

    /// `node`'s status JSON ([`status_json`]).
    pub async fn member_status(&self, node: &str) -> Result<Value, DbError> {
        let i = self
            .index(node)
            .ok_or_else(|| DbError::UnknownNode(node.to_string()))?;
        let unreachable = |message: String| DbError::Unreachable {
            node: node.to_string(),
            message,
        };
        let mut slot = self.status[i].lock().await;
        // Out of the slot while in use: a caller's timeout that drops this future
        // mid-request leaves no connection in an unknown state behind.
        let mut c = match slot.take() {
            Some(c) => c,
            None => match connect(&self.members[i].client_url(), STATUS_TIMEOUT, false).await {
                Ok(client) => StatusConn {
                    client,
                    names: BTreeMap::new(),
                },
                Err(ConnectError::Timeout) => return Err(unreachable("status connect timed out".into())),
                Err(ConnectError::Etcd(e)) => return Err(unreachable(e.to_string())),
            },
        };
        match tokio::time::timeout(STATUS_TIMEOUT, c.sample()).await {
            Ok(Ok(v)) => {
                *slot = Some(c);
                Ok(v)
            }
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable("status timed out".into())),
        }
    }

    /// Log files on each host (etcd logs to stderr, which the console log holds); all
    /// under [`Layout::logs`], which log collection copies.
    pub fn log_files(&self) -> Vec<String> {
        vec![self.layout.console_log()]
    }
}

impl Db for Etcd {
    fn nodes(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    fn client(&self, node: &str, _client_id: u64) -> Box<dyn Kv> {
        Box::new(self.kv(node))
    }

    fn status<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Value, DbError>> {
        Box::pin(self.member_status(node))
    }
}

impl Database for Etcd {
    fn name(&self) -> &'static str {
        ETCD.name
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn state_paths(&self) -> Option<faultline_nemesis::StatePaths> {
        // etcd 3.4's data directory: WAL segments (preallocated to 64 MB, so a cut tail is
        // usually zeros), raft snapshots and the bbolt backend.
        Some(faultline_nemesis::StatePaths {
            dir: member_dir(&self.layout),
            log: vec!["member/wal/*.wal".into()],
            snapshot: vec!["member/snap/*.snap".into(), "member/snap/db".into()],
            // etcd's hosts carry no faultline binary to serve lazyfs.
            lazyfs: None,
        })
    }

    fn tools(&self) -> Vec<&'static str> {
        vec!["setsid", "nohup", "tar", "awk"]
    }

    fn describe(&self) -> Value {
        let commands: BTreeMap<String, String> = self
            .members
            .iter()
            .filter_map(|m| {
                command_line(&self.layout, &self.opts, &self.members, &m.name, &self.token)
                    .ok()
                    .map(|c| (m.name.clone(), c))
            })
            .collect();
        json!({
            "db": ETCD.name,
            "knobs": self.opts.resolved(),
            "commands": commands,
            "cluster_token": self.token,
            "binary": self.binary.as_ref().map(|b| b.display().to_string()),
            "etcd_data_dir": member_dir(&self.layout),
            "log_files": self.log_files(),
            "layout": self.layout.describe(),
        })
    }

    fn upload_image(&self) -> anyhow::Result<Option<super::UploadImage>> {
        Ok(self.binary.as_ref().map(|path| super::UploadImage {
            path: path.clone(),
            flag: "--db-binary",
            what: "the etcd binary",
            rebuild: "an etcd release for {arch} (github.com/etcd-io/etcd/releases, linux-{arch})",
            static_build: " (etcd's release binaries are static)",
        }))
    }

    fn install<'a>(&'a self, control: &'a Control) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            install(control, self.binary.as_deref()).await?;
            Ok(())
        })
    }

    fn configure<'a>(&'a self, control: &'a Control) -> BoxFuture<'a, anyhow::Result<()>> {
        // etcd takes everything on its command line: a fresh directory is all it needs.
        Box::pin(deploy::reset_data_dir(control, &self.layout))
    }

    fn start_command(&self, node: &str) -> String {
        match start_command(&self.layout, &self.opts, &self.members, node, &self.token) {
            Ok(c) => c,
            // The start then fails with this message rather than start something else.
            Err(e) => format!("echo {} >&2; exit 1", quote(&e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members3() -> Vec<Member> {
        let hosts = vec![
            ("n1".to_string(), "10.0.0.1".to_string()),
            ("n2".into(), "10.0.0.2".into()),
            ("n3".into(), "10.0.0.3".into()),
        ];
        Member::from_hosts(&hosts, &layout("etcd"))
    }

    fn opts(pairs: &[(&str, &str)]) -> Result<EtcdOptions, EtcdError> {
        let v: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EtcdOptions::from_db_opts(&v)
    }

    #[test]
    fn command_line_names_every_member_and_this_nodes_urls() {
        let l = layout("etcd");
        let o = opts(&[("heartbeat_ms", "50"), ("election_timeout_ms", "500")]).unwrap();
        let args = etcd_args(&l, &o, &members3(), "n2", "tok-1").unwrap();
        assert_eq!(args[0], "etcd");
        for want in [
            "--name=n2",
            "--data-dir=/var/lib/faultline/etcd/data",
            "--listen-client-urls=http://10.0.0.2:2379",
            "--advertise-client-urls=http://10.0.0.2:2379",
            "--listen-peer-urls=http://10.0.0.2:2380",
            "--initial-advertise-peer-urls=http://10.0.0.2:2380",
            "--initial-cluster=n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380",
            "--initial-cluster-state=new",
            "--initial-cluster-token=tok-1",
            "--heartbeat-interval=50",
            "--election-timeout=500",
        ] {
            assert!(args.iter().any(|a| a == want), "missing {want} in {args:?}");
        }
        // etcd's defaults stay etcd's: no flag for a knob not given.
        assert!(!args.iter().any(|a| a.starts_with("--snapshot-count")), "{args:?}");
    }

    #[test]
    fn command_line_brackets_ipv6_and_binds_names_to_any_address() {
        let l = layout("etcd");
        let hosts = vec![
            ("a".to_string(), "fd00::1".to_string()),
            ("b".into(), "db2.example".into()),
        ];
        let m = Member::from_hosts(&hosts, &l);
        let a = etcd_args(&l, &EtcdOptions::default(), &m, "a", "t").unwrap();
        assert!(a.contains(&"--listen-client-urls=http://[fd00::1]:2379".to_string()), "{a:?}");
        assert!(
            a.contains(&"--initial-cluster=a=http://[fd00::1]:2380,b=http://db2.example:2380".to_string()),
            "{a:?}"
        );
        let b = etcd_args(&l, &EtcdOptions::default(), &m, "b", "t").unwrap();
        assert!(b.contains(&"--listen-peer-urls=http://0.0.0.0:2380".to_string()), "{b:?}");
        assert!(b.contains(&"--advertise-client-urls=http://db2.example:2379".to_string()), "{b:?}");
    }

    #[test]
    fn command_line_for_a_node_outside_the_cluster_is_an_error() {
        let e = etcd_args(&layout("etcd"), &EtcdOptions::default(), &members3(), "n9", "t").unwrap_err();
        assert!(matches!(e, EtcdError::UnknownMember { .. }), "{e}");
        assert!(e.to_string().contains("n1, n2, n3"), "{e}");
    }

    #[test]
    fn start_command_detaches_and_records_the_pid() {
        let l = layout(UPLOADED_BIN);
        let c = start_command(&l, &EtcdOptions::default(), &members3(), "n1", "t").unwrap();
        assert!(c.starts_with("mkdir -p /var/lib/faultline/etcd/logs && { setsid nohup /var/lib/faultline/bin/etcd --name=n1 "), "{c}");
        assert!(c.contains(">> /var/lib/faultline/etcd/logs/console.log 2>&1 < /dev/null &"), "{c}");
        assert!(c.ends_with("& echo $! > /var/lib/faultline/etcd/node.pid; }"), "{c}");
        // The pidfile check looks for the layout's directory on the command line.
        assert!(c.contains(&format!("--data-dir={}/data", l.data_dir)), "{c}");
    }

    fn inventory() -> Inventory {
        crate::inventory::parse(
            "ssh:\n  user: root\nnodes:\n  - name: n1\n    host: 10.0.0.1\n  - name: n2\n    host: 10.0.0.2\n",
            Path::new("inv.yaml"),
        )
        .unwrap()
    }

    fn args(opts: &[(&str, &str)], binary: Option<&str>) -> DbArgs {
        DbArgs {
            opts: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            binary: binary.map(PathBuf::from),
        }
    }

    #[test]
    fn etcd_entry_opens_on_the_inventory_with_its_knobs() {
        let entry = &ETCD;
        // What the registry's own test checks of every entry.
        let d = (entry.validate)(&DbArgs::default()).unwrap();
        assert_eq!(d.db, "etcd");
        assert!(d.resolved.is_object());
        let s = (entry.validate)(&args(&[("heartbeat-ms", "20")], None)).unwrap();
        assert_eq!(s.opts, vec![("heartbeat_ms".to_string(), "20".to_string())]);
        assert_eq!(s.resolved["heartbeat_ms"], 20);
        let db = (entry.open)(&s, &inventory(), &OpenOptions { op_timeout: Duration::from_secs(1) });
        assert_eq!(db.name(), "etcd");
        assert_eq!(db.nodes(), vec!["n1", "n2"]);
        assert_eq!(db.layout().pidfile(), "/var/lib/faultline/etcd/node.pid");
        let c = db.start_command("n2");
        assert!(c.contains("setsid nohup etcd --name=n2 "), "{c}");
        assert!(c.contains("--heartbeat-interval=20"), "{c}");
        assert!(c.contains("--initial-cluster=n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380"), "{c}");
        let d = db.describe();
        assert_eq!(d["commands"]["n1"].as_str().map(|c| c.starts_with("etcd --name=n1 ")), Some(true), "{d}");
        assert_eq!(d["knobs"]["election_timeout_ms_min"], 1000);
        // A node outside the cluster gets a command that fails, naming the problem.
        let bad = db.start_command("n9");
        assert!(bad.starts_with("echo ") && bad.ends_with("exit 1") && bad.contains("n9"), "{bad}");
    }

    #[test]
    fn db_binary_is_uploaded_and_used_and_must_exist() {
        let e = validate(&args(&[], Some("/nonexistent/etcd"))).unwrap_err();
        assert!(matches!(&e, DbError::Knob { db: "etcd", message } if message.contains("/nonexistent/etcd")), "{e}");
        let exe = std::env::current_exe().unwrap();
        let s = validate(&args(&[], exe.to_str())).unwrap();
        let db = open(&s, &inventory(), &OpenOptions { op_timeout: Duration::from_secs(1) });
        assert_eq!(db.layout().bin, UPLOADED_BIN);
        assert!(db.start_command("n1").contains(&format!("setsid nohup {UPLOADED_BIN} --name=n1")));
        let e = validate(&args(&[("heartbeat_msec", "5")], None)).unwrap_err();
        assert!(e.to_string().starts_with("etcd: unknown knob \"heartbeat_msec\""), "{e}");
        // Pre-flight checks the uploaded binary runs on the hosts, as it does the node image.
        let image = db.upload_image().unwrap().unwrap();
        assert_eq!((image.path.as_path(), image.flag), (exe.as_path(), "--db-binary"));
        assert!(open(&validate(&args(&[], None)).unwrap(), &inventory(), &OpenOptions { op_timeout: Duration::from_secs(1) })
            .upload_image()
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_db_binary_that_is_no_executable_is_a_usage_error_before_any_host() {
        let dir = std::env::temp_dir().join(format!("faultline-etcd-bin-{}", std::process::id()));
        std::fs::write(&dir, "#!/bin/sh\nexec etcd \"$@\"\n").unwrap();
        let e = validate(&args(&[], dir.to_str())).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(&e, DbError::Knob { db: "etcd", message } if message.starts_with("--db-binary")), "{e}");
    }

    #[test]
    fn cluster_tokens_differ_between_runs() {
        assert_ne!(cluster_token(), cluster_token());
    }

    #[test]
    fn knobs_map_to_etcd_flags() {
        let o = opts(&[
            ("heartbeat-ms", "20"),
            ("election_timeout_ms_min", "200"),
            ("election_timeout_ms_max", "400"),
            ("serializable_reads", "true"),
            ("snapshot_count", "1000"),
            ("quota_backend_bytes", "1048576"),
        ])
        .unwrap();
        assert_eq!(
            o,
            EtcdOptions {
                heartbeat_ms: Some(20),
                election_timeout_ms: Some(200),
                serializable_reads: true,
                snapshot_count: Some(1000),
                quota_backend_bytes: Some(1048576),
            }
        );
        let a = etcd_args(&layout("etcd"), &o, &members3(), "n1", "t").unwrap();
        for want in ["--heartbeat-interval=20", "--election-timeout=200", "--snapshot-count=1000", "--quota-backend-bytes=1048576"] {
            assert!(a.iter().any(|x| x == want), "missing {want} in {a:?}");
        }
        let r = o.resolved();
        assert_eq!(r["election_timeout_ms_max"], 400);
        assert_eq!(r["serializable_reads"], true);
        let d = EtcdOptions::default().resolved();
        assert_eq!((d["heartbeat_ms"].as_u64(), d["election_timeout_ms"].as_u64()), (Some(100), Some(1000)));
    }

    #[test]
    fn unknown_knob_names_the_closest_one() {
        let e = opts(&[("heartbeat", "10")]).unwrap_err();
        assert!(matches!(&e, EtcdError::UnknownKnob { closest: Some("heartbeat_ms"), .. }), "{e:?}");
        assert!(e.to_string().contains("did you mean \"heartbeat_ms\", --heartbeat-interval"), "{e}");
        let e = opts(&[("zzzzzzzzzzzz", "1")]).unwrap_err();
        assert!(matches!(&e, EtcdError::UnknownKnob { closest: None, .. }), "{e:?}");
        assert!(e.to_string().contains("known: heartbeat_ms, election_timeout_ms"), "{e}");
    }

    #[test]
    fn bad_knob_values_are_rejected_up_front() {
        for (k, v) in [
            ("heartbeat_ms", "fast"),
            ("heartbeat_ms", "0"),
            ("heartbeat_ms", "-5"),
            ("serializable_reads", "maybe"),
            ("election_timeout_ms", "60000"),
            ("snapshot_count", "1.5"),
        ] {
            let e = opts(&[(k, v)]).unwrap_err();
            assert!(matches!(e, EtcdError::BadValue { .. }), "{k}={v}: {e:?}");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn election_timeout_must_be_five_heartbeats_and_max_twice_min() {
        let e = opts(&[("heartbeat_ms", "100"), ("election_timeout_ms", "400")]).unwrap_err();
        assert!(matches!(e, EtcdError::Inconsistent(_)), "{e:?}");
        opts(&[("heartbeat_ms", "100"), ("election_timeout_ms", "500")]).unwrap();
        // Lowering the heartbeat alone keeps etcd's default election timeout valid.
        opts(&[("heartbeat_ms", "10")]).unwrap();
        let e = opts(&[("election_timeout_ms", "300"), ("election_timeout_ms_max", "500")]).unwrap_err();
        assert!(e.to_string().contains("can only be 600"), "{e}");
        let e = opts(&[("election_timeout_ms", "300"), ("election_timeout_ms_min", "300")]).unwrap_err();
        assert!(matches!(e, EtcdError::Repeated { knob: "election_timeout_ms", .. }), "{e:?}");
    }

    #[test]
    fn install_outcome_names_the_host_and_the_fix() {
        assert!(!install_outcome("n1", "etcd=present\n").unwrap());
        assert!(install_outcome("n1", "etcd=installed\n").unwrap());
        let e = install_outcome("n2", "etcd=missing\nE: Unable to locate package etcd-server\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("n2: etcd is not installed"), "{s}");
        assert!(s.contains("Unable to locate package"), "{s}");
        assert!(s.contains("--db-binary PATH"), "{s}");
        assert!(install_outcome("n3", "").is_err());
    }

    #[test]
    fn install_script_never_leaves_a_policy_it_did_not_find() {
        let s = install_script();
        assert!(s.contains("exit 101"), "{s}");
        // Created only when absent, and removed only when created here.
        assert!(s.contains("if [ ! -e /usr/sbin/policy-rc.d ]"), "{s}");
        assert!(s.contains(r#"[ -n "$ours" ] && rm -f /usr/sbin/policy-rc.d"#), "{s}");
        assert!(!s.contains("systemctl") && !s.contains("pkill") && !s.contains("killall"), "{s}");
    }

    #[test]
    fn install_script_uses_an_etcd_on_the_path_and_explains_a_host_without_apt() {
        let dir = std::env::temp_dir().join(format!("faultline-etcd-install-{}-{}", std::process::id(), cluster_token()));
        let (with, without) = (dir.join("with"), dir.join("without"));
        std::fs::create_dir_all(&with).unwrap();
        std::fs::create_dir_all(&without).unwrap();
        let fake = with.join("etcd");
        std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = |path: &Path| {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(install_script())
                .env("PATH", path)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let present = run(&with);
        let missing = run(&without);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!install_outcome("n1", &present).unwrap(), "{present}");
        let e = install_outcome("n2", &missing).unwrap_err().to_string();
        assert!(e.contains("no apt-get on this host") && e.contains("--db-binary"), "{e}");
    }

    #[test]
    fn ports_script_reports_a_listener_on_the_etcd_ports() {
        // A real listener on a free port, checked with a layout that uses that port.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut l = layout("etcd");
        l.client_port = port;
        l.peer_port = port.wrapping_add(1).max(1);
        let out = std::process::Command::new("sh").arg("-c").arg(ports_script(&l)).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let problem = ports_problem("n1", &stdout).unwrap_or_else(|| panic!("no problem in {stdout:?}"));
        assert!(problem.starts_with(&format!("n1: port(s) {port} already in use")), "{problem}");
        drop(listener);
        assert_eq!(ports_problem("n1", ""), None);
    }

    #[test]
    fn status_maps_leader_id_to_its_node_name() {
        let names: BTreeMap<u64, String> = [(0xa1, "n1".to_string()), (0xb2, "n2".to_string())].into();
        let leader = StatusSample { member_id: 0xa1, leader_id: 0xa1, raft_term: 4, raft_index: 17, raft_applied_index: 16 };
        let v = status_json(&leader, &names);
        assert_eq!(v["role"], "leader");
        assert_eq!(v["term"], 4);
        assert_eq!(v["leader"], "n1");
        assert_eq!(v["commit_index"], 17);
        assert_eq!(v["applied_index"], 16);
        let follower = StatusSample { member_id: 0xb2, ..leader.clone() };
        let v = status_json(&follower, &names);
        assert_eq!((v["role"].as_str(), v["leader"].as_str()), (Some("follower"), Some("n1")));
        let lost = StatusSample { leader_id: 0, ..follower };
        let v = status_json(&lost, &names);
        assert_eq!(v["role"], "follower");
        assert!(v["leader"].is_null() && v["leader_id"].is_null(), "{v}");
    }

    fn status(code: tonic::Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg))
    }

    #[test]
    fn failures_before_proposal_are_definite_and_the_rest_indefinite() {
        use tonic::Code;
        let definite = [
            status(Code::Unavailable, "etcdserver: no leader"),
            status(Code::ResourceExhausted, "etcdserver: too many requests"),
            status(Code::InvalidArgument, "etcdserver: request is too large"),
            status(Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            status(Code::Unavailable, "tcp connect error: Connection refused (os error 111)"),
            etcd_client::Error::InvalidArgs("empty endpoints".into()),
        ];
        for e in &definite {
            assert!(matches!(kv_error(false, e), KvError::Definite(_)), "{e}");
        }
        let indefinite = [
            status(Code::Unavailable, "etcdserver: request timed out"),
            status(Code::Unavailable, "etcdserver: leader changed"),
            status(Code::DeadlineExceeded, "context deadline exceeded"),
            status(Code::Cancelled, "Timeout expired"),
            status(Code::Unknown, "h2 protocol error: connection reset"),
            status(Code::Unavailable, "error reading a body from connection"),
            status(Code::Unknown, "transport error"),
            status(Code::Cancelled, "operation was canceled"),
        ];
        for e in &indefinite {
            assert!(matches!(kv_error(false, e), KvError::Indefinite(_)), "{e}");
            // A read has no effect, so its failure is always definite.
            assert!(matches!(kv_error(true, e), KvError::Definite(_)), "{e}");
        }
        let KvError::Definite(m) = kv_error(false, &definite[0]) else { unreachable!() };
        assert!(m.starts_with("no-leader: "), "{m}");
        assert!(matches!(timeout_error(false, Duration::from_millis(5)), KvError::Indefinite(_)));
    }

    #[test]
    fn values_round_trip_as_json_text() {
        for v in [json!(5), json!("a b"), json!([1, 2, 3]), json!(null), json!({"k": [1]})] {
            assert_eq!(decode("k", &encode(&v)).unwrap(), v);
        }
        assert_eq!(encode(&json!([1, 2])), b"[1,2]".to_vec());
        assert!(matches!(decode("k", b"not json"), Err(KvError::Definite(_))));
    }

    fn mop(f: MopF, key: &str, value: Value) -> Mop {
        Mop { f, key: key.into(), value }
    }

    #[test]
    fn txn_reads_see_the_snapshot_and_the_txns_own_earlier_writes() {
        let snap: Snapshot = [
            ("a".to_string(), Some((json!([1]), 5))),
            ("b".to_string(), None),
            ("c".to_string(), Some((json!(7), 9))),
        ]
        .into();
        let ops = vec![
            mop(MopF::R, "a", Value::Null),
            mop(MopF::Append, "a", json!(2)),
            mop(MopF::R, "a", Value::Null),
            mop(MopF::R, "b", Value::Null),
            mop(MopF::Append, "b", json!(3)),
            mop(MopF::W, "c", json!(8)),
            mop(MopF::R, "c", Value::Null),
        ];
        let (done, written) = apply_mops(&ops, &snap).unwrap();
        let seen: Vec<Value> = done.iter().map(|m| m.value.clone()).collect();
        assert_eq!(seen, vec![json!([1]), json!(2), json!([1, 2]), Value::Null, json!(3), json!(8), json!(8)]);
        assert_eq!(written, [("a".to_string(), json!([1, 2])), ("b".into(), json!([3])), ("c".into(), json!(8))].into());
    }

    #[test]
    fn txn_append_to_a_non_list_is_refused_before_anything_is_sent() {
        let snap: Snapshot = [("c".to_string(), Some((json!(7), 9)))].into();
        let e = apply_mops(&[mop(MopF::Append, "c", json!(1))], &snap).unwrap_err();
        assert!(matches!(&e, KvError::Definite(m) if m.starts_with("rejected:")), "{e:?}");
    }

    #[test]
    fn txn_commit_is_guarded_by_every_touched_key_including_those_only_read() {
        let snap: Snapshot = [
            ("read-only".to_string(), Some((json!(1), 4))),
            ("absent".to_string(), None),
            ("w".to_string(), Some((json!(2), 6))),
        ]
        .into();
        let written: BTreeMap<String, Value> = [("w".to_string(), json!(3)), ("absent".to_string(), json!(5))].into();
        let t = format!("{:?}", commit_txn(&snap, &written));
        // Three compares (mod revision 4, version 0, mod revision 6), two puts.
        assert_eq!(t.matches("Compare {").count(), 3, "{t}");
        assert!(t.contains("ModRevision(4)") && t.contains("ModRevision(6)") && t.contains("Version(0)"), "{t}");
        assert_eq!(t.matches("RequestPut").count(), 2, "{t}");
    }
}

#[cfg(test)]
mod live_tests;
