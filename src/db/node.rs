//! The bundled node (`faultline node`), in its two algorithms: `raft` and `paxos`.
//!
//! The controller uploads the node image (`faultline-node`, built from this checkout beside
//! the controller; see [`node_image`]) and starts it as `faultline node --config`, so the
//! node always speaks this controller's protocol. Knobs are the node's own config
//! fields, checked here against the node's `Config` before any host is contacted.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use faultline_node::client::{Client, ClientError};
use faultline_node::config::{self, Algo, Config};
use faultline_node::kv::{MicroOp, Value as NodeValue};
use faultline_node::protocol::WireError;
use faultline_workloads::{Kv, KvError, Mop, MopF};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Database, Db, DbArgs, DbEntry, DbError, DbSettings, OpenOptions, STATUS_TIMEOUT};
use crate::control::{Control, quote};
use crate::deploy::{self, Layout};
use crate::inventory::Inventory;

pub const RAFT: DbEntry = DbEntry {
    name: "raft",
    about: "the bundled node, Raft core",
    validate: validate_raft,
    open,
    lazyfs: true,
    membership: true,
};

pub const PAXOS: DbEntry = DbEntry {
    name: "paxos",
    about: "the bundled node, Multi-Paxos core",
    validate: validate_paxos,
    open,
    lazyfs: true,
    membership: true,
};

fn validate_raft(args: &DbArgs) -> Result<DbSettings, DbError> {
    validate(RAFT.name, Algo::Raft, args)
}

fn validate_paxos(args: &DbArgs) -> Result<DbSettings, DbError> {
    validate(PAXOS.name, Algo::Paxos, args)
}

/// Applies the knobs to the node's default config exactly as the node will (the node's own
/// validation), so a bad knob is a usage error here rather than a node that never writes
/// its pidfile. Layout knobs (data dir, addresses, peers) are the controller's, and the
/// algorithm is `--db`'s.
fn validate(db: &'static str, algo: Algo, args: &DbArgs) -> Result<DbSettings, DbError> {
    let knob = |message: String| DbError::Knob { db, message };
    if let Some(b) = &args.binary {
        if !b.is_file() {
            return Err(knob(format!("--node-binary {}: no such file", b.display())));
        }
        if let Err(e) = deploy::elf_machine(b) {
            return Err(knob(format!("--node-binary: {e}")));
        }
    }
    let mut opts = Vec::new();
    for (k, v) in &args.opts {
        let name = config::canonical_knob(k).map_err(|e| knob(e.to_string()))?;
        if name == "algo" {
            return Err(knob(format!("knob {k:?}: the algorithm is chosen with --db (raft, paxos)")));
        }
        opts.push((name.to_string(), v.clone()));
    }
    let mut base = Config::default();
    base.algo = algo;
    let cfg = config::validate_overrides_on(&base, &opts).map_err(|e| knob(e.to_string()))?;
    let mut resolved = cfg.knobs_json();
    if let Some(m) = resolved.as_object_mut() {
        for k in config::LAYOUT_KNOBS {
            m.remove(*k);
        }
    }
    Ok(DbSettings {
        db,
        opts,
        resolved,
        binary: args.binary.clone(),
    })
}

fn open(settings: &DbSettings, inventory: &Inventory, o: &OpenOptions) -> Arc<dyn Database> {
    Arc::new(BundledNode::new(settings, inventory, o.op_timeout))
}

/// The bundled node on an inventory's hosts.
pub struct BundledNode {
    /// `--node-binary`: the image to upload instead of the one found beside the controller.
    image: Option<std::path::PathBuf>,
    /// The image found by [`node_image`], looked up once: pre-flight and install upload
    /// the same file, and a fallback warns once.
    found: std::sync::OnceLock<std::path::PathBuf>,
    name: &'static str,
    layout: Layout,
    /// `(name, host, client address)`, in inventory order.
    nodes: Vec<(String, String, String)>,
    opts: Vec<(String, String)>,
    resolved: Value,
    op_timeout: Duration,
    /// One status connection per node, reused by the monitor.
    status: Vec<tokio::sync::Mutex<Option<Client>>>,
}

impl BundledNode {
    pub fn new(settings: &DbSettings, inventory: &Inventory, op_timeout: Duration) -> BundledNode {
        let layout = Layout::node();
        let nodes: Vec<(String, String, String)> = inventory
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    n.host.clone(),
                    deploy::socket_addr(&n.host, layout.client_port),
                )
            })
            .collect();
        let status = nodes.iter().map(|_| tokio::sync::Mutex::new(None)).collect();
        BundledNode {
            name: settings.db,
            layout,
            nodes,
            opts: settings.opts.clone(),
            resolved: settings.resolved.clone(),
            image: settings.binary.clone(),
            found: std::sync::OnceLock::new(),
            op_timeout,
            status,
        }
    }

    /// `--node-binary`, else [`node_image`].
    fn image_path(&self) -> anyhow::Result<std::path::PathBuf> {
        if let Some(p) = &self.image {
            return Ok(p.clone());
        }
        if let Some(p) = self.found.get() {
            return Ok(p.clone());
        }
        let p = node_image()?;
        Ok(self.found.get_or_init(|| p).clone())
    }

    fn index(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|(n, _, _)| n == node)
    }

    /// One node's config file.
    fn node_yaml(&self, id: &str) -> String {
        let hosts: Vec<(String, String)> =
            self.nodes.iter().map(|(n, h, _)| (n.clone(), h.clone())).collect();
        node_yaml(&self.layout, self.name, id, &hosts)
    }
}

/// One node's config file: identity and layout only; knobs travel as `--set` on its
/// command line, so the report's command line is the whole truth.
pub fn node_yaml(layout: &Layout, algo: &str, id: &str, hosts: &[(String, String)]) -> String {
    let own = hosts
        .iter()
        .find(|(n, _)| n == id)
        .map(|(_, h)| h.as_str())
        .unwrap_or("0.0.0.0");
    let mut y = format!(
        "id: {id}\nalgo: {algo}\ndata_dir: {dd}\nlisten_client: {lc}\nlisten_peer: {lp}\npeers:\n",
        id = yaml_str(id),
        dd = yaml_str(&layout.data_dir),
        lc = yaml_str(&deploy::socket_addr(own, layout.client_port)),
        lp = yaml_str(&deploy::socket_addr(own, layout.peer_port)),
    );
    // Ids by inventory position, written out so they stay what they are when the membership
    // changes (the node derives them from sorted names only when none are given).
    for (i, (n, h)) in hosts.iter().enumerate() {
        y.push_str(&format!(
            "  - id: {}\n    node_id: {}\n    client_addr: {}\n    peer_addr: {}\n",
            yaml_str(n),
            i + 1,
            yaml_str(&deploy::socket_addr(h, layout.client_port)),
            yaml_str(&deploy::socket_addr(h, layout.peer_port)),
        ));
    }
    y
}

fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The command that starts the node, detached from the SSH session.
pub fn start_command(layout: &Layout, sets: &[(String, String)]) -> String {
    let mut cmd = format!("{} node --config {}", quote(&layout.bin), quote(&layout.config()));
    for (k, v) in sets {
        cmd.push_str(&format!(" --set {}", quote(&format!("{k}={v}"))));
    }
    deploy::daemon_command(layout, &cmd, false)
}

impl Db for BundledNode {
    fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _, _)| n.clone()).collect()
    }

    fn client(&self, node: &str, _client_id: u64) -> Box<dyn Kv> {
        let addr = self.index(node).map(|i| self.nodes[i].2.clone()).unwrap_or_default();
        Box::new(NodeKv {
            addr,
            client: None,
            timeout: self.op_timeout,
        })
    }

    fn status<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Value, DbError>> {
        Box::pin(async move {
            let i = self.index(node).ok_or_else(|| DbError::UnknownNode(node.to_string()))?;
            let unreachable = |e: ClientError| DbError::Unreachable {
                node: node.to_string(),
                message: e.to_string(),
            };
            let mut slot = self.status[i].lock().await;
            // Out of the slot while in use: a caller's timeout that drops this future
            // mid-request leaves no connection in an unknown state behind.
            let mut c = match slot.take() {
                Some(c) => c,
                None => {
                    let mut c = Client::connect(&self.nodes[i].2, STATUS_TIMEOUT)
                        .await
                        .map_err(unreachable)?;
                    c.set_follow_leader(false);
                    c
                }
            };
            let s = c.status().await.map_err(unreachable)?;
            *slot = Some(c);
            Ok(s.to_json())
        })
    }
}

impl Database for BundledNode {
    fn name(&self) -> &'static str {
        self.name
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn state_paths(&self) -> Option<faultline_nemesis::StatePaths> {
        // The node keeps everything durable under `<data_dir>/wal` (node/src/wal.rs);
        // config, pidfile and logs beside it are not state.
        Some(faultline_nemesis::StatePaths {
            dir: format!("{}/wal", self.layout.data_dir),
            log: vec!["wal.log".into()],
            snapshot: vec!["snapshot.bin".into()],
            lazyfs: Some(format!("{} lazyfs", quote(&self.layout.bin))),
        })
    }

    fn tools(&self) -> Vec<&'static str> {
        vec!["setsid", "nohup", "timeout", "tar"]
    }

    fn upload_image(&self) -> anyhow::Result<Option<super::UploadImage>> {
        Ok(Some(super::UploadImage {
            path: self.image_path()?,
            flag: "--node-binary",
            what: "the node image",
            rebuild: "a build of faultline-node for it \
                      (e.g. `cargo build -p faultline-node --bin faultline-node --target {arch}-unknown-linux-gnu`)",
            static_build: " (scripts/build-node-image.sh builds one)",
        }))
    }

    fn describe(&self) -> Value {
        json!({
            "db": self.name,
            "knobs": self.resolved,
            "command": start_command(&self.layout, &self.opts),
            "layout": self.layout.describe(),
        })
    }

    fn install<'a>(&'a self, control: &'a Control) -> BoxFuture<'a, anyhow::Result<()>> {
        // Pre-flight has checked the image runs on every host.
        Box::pin(async move { deploy::upload_binary(control, &self.layout, &self.image_path()?).await })
    }

    fn configure<'a>(&'a self, control: &'a Control) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            deploy::reset_data_dir(control, &self.layout).await?;
            // Every host gets its own file, written in parallel.
            let writes = self.nodes.iter().map(|(name, _, _)| {
                let yaml = self.node_yaml(name);
                async move {
                    control
                        .put_bytes(&[name.as_str()], yaml.as_bytes(), &self.layout.config(), 0o644)
                        .await
                }
            });
            for r in futures::future::join_all(writes).await {
                for (node, r) in r {
                    r.with_context(|| format!("{node}: cannot write {}", self.layout.config()))?;
                }
            }
            Ok(())
        })
    }

    fn start_command(&self, _node: &str) -> String {
        start_command(&self.layout, &self.opts)
    }

    fn remove_member<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(remove_member(self, node))
    }

    fn join_command(&self, _node: &str) -> Option<String> {
        let mut opts = self.opts.clone();
        opts.retain(|(k, _)| k != "join");
        opts.push(("join".into(), "true".into()));
        Some(start_command(&self.layout, &opts))
    }
}

/// How long a removal may take: an election after a leader removed itself, a change in
/// progress to commit first.
pub const MEMBER_CHANGE_DEADLINE: Duration = Duration::from_secs(30);

/// Asks each node in turn (the client follows a `NotLeader` answer to the leader) until the
/// removal commits; "not a member" means it was removed already. Retries what may pass
/// (no leader, a change in progress, a node down), for at most [`MEMBER_CHANGE_DEADLINE`].
async fn remove_member(db: &BundledNode, node: &str) -> Result<(), DbError> {
    use faultline_node::protocol::{MemberChange, WireError};
    db.index(node).ok_or_else(|| DbError::UnknownNode(node.to_string()))?;
    let deadline = tokio::time::Instant::now() + MEMBER_CHANGE_DEADLINE;
    let mut last = String::from("no node answered");
    loop {
        for (name, _, addr) in &db.nodes {
            let answer = async {
                let mut c = Client::connect(addr, STATUS_TIMEOUT).await?;
                c.member(MemberChange::Remove { node: node.to_string() }).await
            };
            match tokio::time::timeout(STATUS_TIMEOUT * 3, answer).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(ClientError::Server(WireError::BadRequest(why)))) if why.contains("not a member") => return Ok(()),
                Ok(Err(ClientError::Server(WireError::BadRequest(why)))) => {
                    return Err(DbError::Unreachable { node: name.clone(), message: format!("remove {node}: {why}") });
                }
                Ok(Err(e)) => last = format!("{name}: {e}"),
                Err(_) => last = format!("{name}: no answer within {:?}", STATUS_TIMEOUT * 3),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DbError::Unreachable {
                node: node.to_string(),
                message: format!("removal not committed within {MEMBER_CHANGE_DEADLINE:?}; last answer: {last}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}


/// The node image to upload: `FAULTLINE_NODE_BINARY`, else the static `faultline-node`
/// that `scripts/build-node-image.sh` builds beside this controller's target directory
/// (`target/x86_64-unknown-linux-gnu/<profile>/faultline-node` for `target/<profile>/faultline`,
/// or `faultline-node` in the controller's own directory when that one is static), else the
/// running controller itself, with a warning: it is large and needs this machine's glibc.
pub fn node_image() -> anyhow::Result<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os("FAULTLINE_NODE_BINARY") {
        let p = PathBuf::from(p);
        anyhow::ensure!(p.is_file(), "FAULTLINE_NODE_BINARY={}: no such file", p.display());
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot locate the faultline executable")?;
    if let Some(dir) = exe.parent() {
        let mut candidates = vec![dir.join("faultline-node")];
        if let (Some(profile), Some(target)) = (dir.file_name(), dir.parent()) {
            candidates.insert(
                0,
                target.join(format!("{}-unknown-linux-gnu", std::env::consts::ARCH)).join(profile).join("faultline-node"),
            );
        }
        for c in &candidates {
            if c.is_file() && deploy::elf_is_static(c).unwrap_or(false) {
                return Ok(c.clone());
            }
        }
        let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        tracing::warn!(
            looked = %looked.join(", "),
            "no static node image found (build it with scripts/build-node-image.sh, or pass --node-binary); \
             uploading the controller itself, which needs this machine's glibc on every host"
        );
        eprintln!(
            "faultline: warning: no static node image at {} (scripts/build-node-image.sh builds one); \
             uploading the controller itself, which needs a glibc as new as this machine's on every host",
            looked.join(" or ")
        );
    }
    // The running image, not its path: a rebuild during a run replaces the file on disk.
    Ok(if std::path::Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        exe
    })
}

/// A worker's connection: opened on first use, so a node that is down costs a definite
/// connect failure rather than a stuck worker. Follows not-leader redirects.
struct NodeKv {
    addr: String,
    client: Option<Client>,
    timeout: Duration,
}

fn kv_error(e: ClientError) -> KvError {
    // The checkers rely on exactly `cas-mismatch` for an executed compare that failed.
    let msg = match &e {
        ClientError::Server(WireError::CasMismatch { .. }) => e.tag().to_string(),
        _ => format!("{}: {e}", e.tag()),
    };
    if e.is_definite() {
        KvError::Definite(msg)
    } else {
        KvError::Indefinite(msg)
    }
}

fn node_value(v: &Value) -> Result<NodeValue, KvError> {
    NodeValue::from_json(v)
        .ok_or_else(|| KvError::Definite(format!("bad-request: {v} has no node value form")))
}

impl NodeKv {
    async fn client(&mut self) -> Result<&mut Client, KvError> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.addr, self.timeout).await.map_err(kv_error)?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}

impl Kv for NodeKv {
    fn read<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<Value, KvError>> {
        Box::pin(async move {
            let v = self.client().await?.read(key).await.map_err(kv_error)?;
            Ok(v.map(|v| v.to_json()).unwrap_or(Value::Null))
        })
    }
    fn write<'a>(&'a mut self, key: &'a str, value: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let v = node_value(&value)?;
            self.client().await?.write(key, v).await.map_err(kv_error)
        })
    }
    fn cas<'a>(&'a mut self, key: &'a str, from: Value, to: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let (from, to) = (node_value(&from)?, node_value(&to)?);
            self.client().await?.cas(key, from, to).await.map_err(kv_error)
        })
    }
    fn append<'a>(&'a mut self, key: &'a str, elem: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let v = node_value(&elem)?;
            self.client().await?.append(key, v).await.map_err(kv_error)
        })
    }
    fn txn<'a>(&'a mut self, ops: Vec<Mop>) -> BoxFuture<'a, Result<Vec<Mop>, KvError>> {
        Box::pin(async move {
            let mut micro = Vec::with_capacity(ops.len());
            for m in &ops {
                let key = m.key.clone();
                micro.push(match m.f {
                    MopF::R => MicroOp::Read { key },
                    MopF::W => MicroOp::Write { key, value: node_value(&m.value)? },
                    MopF::Append => MicroOp::Append { key, value: node_value(&m.value)? },
                });
            }
            let results = self.client().await?.txn(micro).await.map_err(kv_error)?;
            Ok(ops
                .into_iter()
                .zip(results)
                .map(|(mut m, r)| {
                    if m.f == MopF::R {
                        m.value = r.map(|v| v.to_json()).unwrap_or(Value::Null);
                    }
                    m
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(opts: &[(&str, &str)]) -> DbArgs {
        DbArgs {
            opts: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            binary: None,
        }
    }

    fn knob_error(opts: &[(&str, &str)]) -> String {
        validate_raft(&args(opts)).expect_err("expected a knob error").to_string()
    }

    #[test]
    fn hyphenated_knob_names_are_accepted() {
        let s = validate_raft(&args(&[("unsafe-local-reads", "true")])).unwrap();
        assert_eq!(s.opts, vec![("unsafe_local_reads".to_string(), "true".to_string())]);
        assert_eq!(s.resolved["unsafe_local_reads"], json!(true));
        // Defaults are resolved too, so reports never guess.
        assert_eq!(s.resolved["election_timeout_ms_min"], json!(300));
        assert_eq!(s.resolved["algo"], json!("raft"));
    }

    #[test]
    fn unknown_knob_names_the_closest_one() {
        let e = knob_error(&[("unsafe_locl_reads", "true")]);
        assert!(e.contains("unsafe_locl_reads") && e.contains("did you mean \"unsafe_local_reads\""), "{e}");
    }

    #[test]
    fn non_integer_knob_value_is_refused() {
        let e = knob_error(&[("election_timeout_ms_min", "abc")]);
        assert!(e.contains("election_timeout_ms_min=abc"), "{e}");
    }

    #[test]
    fn election_timeout_min_above_max_is_refused() {
        let e = knob_error(&[("election_timeout_ms_min", "900"), ("election_timeout_ms_max", "600")]);
        assert!(e.contains("election"), "{e}");
    }

    #[test]
    fn layout_knobs_cannot_be_changed_per_run() {
        // The controller finds pidfile, logs and ports from its own layout; a moved data
        // dir would orphan running nodes.
        let e = knob_error(&[("data_dir", "/tmp/x")]);
        assert!(e.contains("data_dir") && e.contains("cannot be changed per run"), "{e}");
        assert!(knob_error(&[("data-dir", "/tmp/x")]).contains("cannot be changed per run"));
        assert!(knob_error(&[("algo", "paxos")]).contains("--db"));
    }

    #[test]
    fn node_yaml_lists_every_peer() {
        let hosts = vec![
            ("n1".to_string(), "10.0.0.1".to_string()),
            ("n2".into(), "10.0.0.2".into()),
        ];
        let y = node_yaml(&Layout::node(), "raft", "n2", &hosts);
        assert!(y.contains("id: \"n2\"\nalgo: raft\n"), "{y}");
        assert!(y.contains("listen_client: \"10.0.0.2:7000\""), "{y}");
        assert!(y.contains("peer_addr: \"10.0.0.1:7001\""), "{y}");
        assert_eq!(y.matches("- id:").count(), 2);
        let parsed = Config::parse(&y, std::path::Path::new("node.yaml")).unwrap();
        parsed.validate("node.yaml").unwrap();
        // Ids are the inventory's order, given explicitly, so they survive membership changes.
        assert_eq!((parsed.node_id_of("n1"), parsed.node_id_of("n2")), (Some(1), Some(2)));
        assert!(parsed.peers.iter().all(|p| p.node_id.is_some()), "{y}");
    }

    #[test]
    fn node_yaml_brackets_ipv6_hosts() {
        let hosts = vec![
            ("n1".to_string(), "fd00::1".to_string()),
            ("n2".into(), "fd00::2".into()),
        ];
        let y = node_yaml(&Layout::node(), "paxos", "n1", &hosts);
        assert!(y.contains("listen_client: \"[fd00::1]:7000\""), "{y}");
        assert!(y.contains("peer_addr: \"[fd00::2]:7001\""), "{y}");
        let parsed = Config::parse(&y, std::path::Path::new("node.yaml")).unwrap();
        parsed.validate("node.yaml").unwrap();
        assert_eq!(parsed.peers.len(), 2);
    }

    #[test]
    fn start_command_detaches_and_quotes_knobs() {
        let l = Layout::node();
        let c = start_command(&l, &[("unsafe_local_reads".into(), "true".into())]);
        assert!(
            c.contains("setsid nohup /var/lib/faultline/bin/faultline node --config /var/lib/faultline/node/node.yaml"),
            "{c}"
        );
        assert!(c.contains("--set unsafe_local_reads=true"), "{c}");
        let c = start_command(&l, &[("k".into(), "a b".into())]);
        assert!(c.contains("--set 'k=a b'"), "{c}");
        assert!(c.ends_with("< /dev/null & }"), "{c}");
    }
}
