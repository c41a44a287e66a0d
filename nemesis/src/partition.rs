//! Network partitions: a shape becomes a [`Grudge`], the grudge becomes iptables rules.
//!
//! Rules live only in the chains `FAULTLINE-IN` and `FAULTLINE-OUT`, reached from `INPUT` and
//! `OUTPUT` by exactly one jump each, inserted at position 1 so they precede any `ACCEPT` of
//! `ESTABLISHED` traffic. Rules match peer node addresses only, so the controller's SSH
//! session (from another address) is never cut. Heal deletes the jumps and flushes and
//! deletes these two chains — nothing else. After the DROP rules go in, conntrack entries
//! to and from the cut peers are deleted so no already-open flow survives on stale state.
//!
//! Shapes include the three partial-connectivity scenarios of the Omni-Paxos paper (Ng et
//! al., EuroSys 2023) under which Raft and Multi-Paxos lose liveness: quorum-loss,
//! constrained election and chained.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::json;

use crate::cluster::Cluster;
use crate::grudge::Grudge;
use crate::journal::{self, HostFault};
use crate::script::quote;
use crate::{Applied, FaultOptions, NemesisError, Result};

pub const CHAIN_IN: &str = "FAULTLINE-IN";
pub const CHAIN_OUT: &str = "FAULTLINE-OUT";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// Two random halves; the larger one keeps a majority.
    Halves,
    /// One random node cut off from everyone.
    One,
    /// The current leader cut off from everyone.
    Leader,
    /// Every node sees a majority, and no two nodes see the same one.
    MajoritiesRing,
    /// Two halves that cannot reach each other, joined by one node that reaches both.
    Bridge,
    /// Omni-Paxos "quorum-loss": the leader keeps a single link, to a hub that still reaches
    /// everyone; every other link is cut.
    QuorumLoss,
    /// Omni-Paxos "constrained election": the only node that reaches a majority is a hub whose
    /// log is stale (it was cut off first, for the lag period); the old leader is isolated.
    Constrained,
    /// Omni-Paxos "chained": the leader and one peer cannot reach each other, both reach the rest.
    Chained,
    /// The current leader still hears everyone, but nobody hears it: the reverse of `leader`
    /// with `--one-way` (a deaf leader). One-way whatever the flag says.
    LeaderMute,
}

impl Shape {
    pub const ALL: [Shape; 9] = [
        Shape::Halves,
        Shape::One,
        Shape::Leader,
        Shape::MajoritiesRing,
        Shape::Bridge,
        Shape::QuorumLoss,
        Shape::Constrained,
        Shape::Chained,
        Shape::LeaderMute,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Halves => "halves",
            Shape::One => "one",
            Shape::Leader => "leader",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::Bridge => "bridge",
            Shape::QuorumLoss => "quorum-loss",
            Shape::Constrained => "constrained",
            Shape::Chained => "chained",
            Shape::LeaderMute => "leader-mute",
        }
    }

    /// Shapes built around the current leader ask the cluster who it is.
    pub fn uses_leader(self) -> bool {
        matches!(
            self,
            Shape::Leader | Shape::QuorumLoss | Shape::Constrained | Shape::Chained | Shape::LeaderMute
        )
    }

    /// Fails when a cluster of `n` nodes is too small for this shape.
    pub fn check(self, n: usize) -> Result<()> {
        if n < self.min_nodes() {
            return Err(NemesisError::Invalid(format!(
                "partition shape `{self}` needs at least {} nodes, the cluster has {n}",
                self.min_nodes()
            )));
        }
        Ok(())
    }

    pub fn min_nodes(self) -> usize {
        match self {
            Shape::Constrained => 5,
            _ => 3,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Shape {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Shape {
    type Err = NemesisError;
    fn from_str(s: &str) -> Result<Self> {
        Shape::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                NemesisError::Invalid(format!(
                    "unknown partition shape {s:?} (shapes: {})",
                    Shape::ALL.map(Shape::name).join(", ")
                ))
            })
    }
}

/// A shape laid out on concrete nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub grudge: Grudge,
    /// Named roles for the history and report: `isolated`, `hub`, `bridge`, `leader`,
    /// `halves`, `views`.
    pub roles: serde_json::Value,
    /// For `constrained`: the node to cut off first so its log falls behind.
    pub lag_first: Option<String>,
}

/// Builds `shape` over `nodes`. `leader` is used by leader-based shapes; when it is unknown,
/// `leader` fails and the others pick a random node in its place (recorded as
/// `"leader_known": false`).
pub fn layout(
    shape: Shape,
    nodes: &[String],
    leader: Option<&str>,
    one_way: bool,
    rng: &mut impl Rng,
) -> Result<Layout> {
    let n = nodes.len();
    if n < shape.min_nodes() {
        return Err(NemesisError::Invalid(format!(
            "partition shape `{shape}` needs at least {} nodes, the cluster has {n}",
            shape.min_nodes()
        )));
    }
    if let Some(l) = leader
        && !nodes.iter().any(|x| x == l)
    {
        return Err(NemesisError::Invalid(format!(
            "the reported leader {l:?} is not in the inventory"
        )));
    }
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let mut g = Grudge::new();
    let leader_known = leader.is_some();
    let pick_leader = |rng: &mut dyn rand::RngCore| -> String {
        leader
            .map(str::to_string)
            .unwrap_or_else(|| nodes.choose(rng).expect("nodes").clone())
    };
    let others = |skip: &[&str]| -> Vec<String> {
        shuffled
            .iter()
            .filter(|x| !skip.contains(&x.as_str()))
            .cloned()
            .collect()
    };
    let layout = match shape {
        Shape::Halves => {
            let (a, b) = shuffled.split_at(n / 2);
            g.cut_groups(a, b, one_way);
            Layout {
                grudge: g,
                roles: json!({"halves": [sorted(a, nodes), sorted(b, nodes)]}),
                lag_first: None,
            }
        }
        Shape::LeaderMute => {
            let victim = leader
                .ok_or_else(|| NemesisError::NoLeader("shape `leader-mute` needs the current leader".into()))?
                .to_string();
            for r in others(&[&victim]) {
                g.drop_from(&r, &victim);
            }
            Layout {
                grudge: g,
                roles: json!({"muted": victim}),
                lag_first: None,
            }
        }
        Shape::One | Shape::Leader => {
            let victim = if shape == Shape::Leader {
                leader
                    .ok_or_else(|| {
                        NemesisError::NoLeader("shape `leader` needs the current leader".into())
                    })?
                    .to_string()
            } else {
                shuffled[0].clone()
            };
            let rest = others(&[&victim]);
            g.cut_groups(std::slice::from_ref(&victim), &rest, one_way);
            Layout {
                grudge: g,
                roles: json!({"isolated": victim}),
                lag_first: None,
            }
        }
        Shape::MajoritiesRing => majorities_ring(&shuffled, one_way, nodes),
        Shape::Bridge => {
            let bridge = shuffled[0].clone();
            let rest = others(&[&bridge]);
            let (a, b) = rest.split_at(rest.len() / 2);
            g.cut_groups(a, b, one_way);
            Layout {
                grudge: g,
                roles: json!({"bridge": bridge, "halves": [sorted(a, nodes), sorted(b, nodes)]}),
                lag_first: None,
            }
        }
        Shape::QuorumLoss | Shape::Constrained => {
            let l = pick_leader(rng);
            let rest = others(&[&l]);
            let hub = rest[0].clone();
            let spokes = &rest[1..];
            // Spokes reach only the hub.
            for (i, a) in spokes.iter().enumerate() {
                for b in &spokes[i + 1..] {
                    g.cut(a, b, one_way);
                }
            }
            if shape == Shape::QuorumLoss {
                for s in spokes {
                    g.cut(&l, s, one_way);
                }
            } else {
                for p in &rest {
                    g.cut(&l, p, one_way);
                }
            }
            Layout {
                grudge: g,
                roles: json!({"leader": l, "leader_known": leader_known, "hub": hub}),
                lag_first: (shape == Shape::Constrained).then_some(hub),
            }
        }
        Shape::Chained => {
            let l = pick_leader(rng);
            let rest = others(&[&l]);
            let far = rest[0].clone();
            g.cut(&l, &far, one_way);
            Layout {
                grudge: g,
                roles: json!({"leader": l, "leader_known": leader_known, "far": far}),
                lag_first: None,
            }
        }
    };
    Ok(layout)
}

fn sorted(group: &[String], order: &[String]) -> Vec<String> {
    let mut g = group.to_vec();
    g.sort_by_key(|x| order.iter().position(|y| y == x));
    g
}

/// Majorities ring over a shuffled ring. Symmetric: each node keeps the links to its `r`
/// nearest ring neighbours on each side, `r` the smallest radius whose view is a majority;
/// for three nodes, where a ring cannot give distinct views, a path (the middle node sees all,
/// each end sees itself and the middle). One-way: each node hears only the next `m - 1`
/// nodes around the ring (`m` = majority), Jepsen's construction.
fn majorities_ring(ring: &[String], one_way: bool, order: &[String]) -> Layout {
    let n = ring.len();
    let m = n / 2 + 1;
    let mut g = Grudge::new();
    if one_way {
        for i in 0..n {
            for j in m..n {
                g.drop_from(&ring[i], &ring[(i + j) % n]);
            }
        }
    } else if n == 3 {
        g.cut(&ring[0], &ring[2], false);
    } else {
        let r = (m - 1).div_ceil(2);
        for i in 0..n {
            for j in (i + 1)..n {
                let d = (j - i).min(n - (j - i));
                if d > r {
                    g.cut(&ring[i], &ring[j], false);
                }
            }
        }
    }
    let views: serde_json::Map<String, serde_json::Value> = order
        .iter()
        .map(|x| {
            let hears: Vec<&String> = order.iter().filter(|p| g.delivers(p, x)).collect();
            (x.clone(), json!(hears))
        })
        .collect();
    Layout {
        grudge: g,
        roles: json!({"ring": ring, "hears": views}),
        lag_first: None,
    }
}

/// `iptables` for IPv4 addresses and names, `ip6tables` for IPv6 literals.
fn tool_for(addr: &str) -> &'static str {
    if addr.contains(':') {
        "ip6tables"
    } else {
        "iptables"
    }
}

fn chain_setup(tool: &str) -> String {
    format!(
        r#"ipt="{tool} -w"
for c in {CHAIN_IN} {CHAIN_OUT}; do
  $ipt -n -L "$c" >/dev/null 2>&1 || $ipt -N "$c"
  $ipt -F "$c"
done
$ipt -C INPUT -j {CHAIN_IN} 2>/dev/null || $ipt -I INPUT 1 -j {CHAIN_IN}
$ipt -C OUTPUT -j {CHAIN_OUT} 2>/dev/null || $ipt -I OUTPUT 1 -j {CHAIN_OUT}
"#
    )
}

/// Idempotently creates the two IPv4 chains and their jump rules; leaves the chains empty.
pub fn setup_script() -> String {
    chain_setup("iptables")
}

/// Removes faultline's jumps and chains, IPv4 and IPv6, and nothing else. Succeeds when there
/// is nothing to remove. The deletion loops are bounded.
pub fn teardown_script() -> String {
    format!(
        r#"for tool in iptables ip6tables; do
  command -v $tool >/dev/null 2>&1 || continue
  ipt="$tool -w"
  for pair in INPUT:{CHAIN_IN} OUTPUT:{CHAIN_OUT}; do
    parent=${{pair%%:*}}; c=${{pair#*:}}
    i=0
    while $ipt -C "$parent" -j "$c" 2>/dev/null && [ $i -lt 64 ]; do
      $ipt -D "$parent" -j "$c"; i=$((i+1))
    done
    if $ipt -n -L "$c" >/dev/null 2>&1; then $ipt -F "$c" && $ipt -X "$c"; fi
  done
done
"#
    )
}

/// The registry's sweep: [`teardown_script`], whatever the journal says.
pub fn sweep_script(_: &crate::HostPaths) -> String {
    teardown_script()
}

/// Rules in faultline's chains as `iptables -S` prints them (`-A FAULTLINE-IN ...`), then
/// each jump into them from INPUT or OUTPUT as `jump: -A INPUT -j FAULTLINE-IN`.
pub fn status_script(_: &crate::HostPaths) -> String {
    format!(
        r#"for t in iptables ip6tables; do
  command -v $t >/dev/null 2>&1 || continue
  for c in {CHAIN_IN} {CHAIN_OUT}; do $t -w -S "$c" 2>/dev/null | grep -v '^-N ' || true; done
  {{ $t -w -S INPUT 2>/dev/null; $t -w -S OUTPUT 2>/dev/null; }} | grep -e '-j {CHAIN_IN}$' -e '-j {CHAIN_OUT}$' | sed 's/^/jump: /' || true
done
"#
    )
}

/// `<shape>-partition` (e.g. `leader-partition`) is this family with that shape, so a
/// suite's nemesis axis can name shapes directly.
pub fn preset(name: &str) -> Option<(crate::registry::Opt, String)> {
    let shape = name.strip_suffix("-partition")?;
    Some((crate::registry::Opt::Shape, shape.to_string()))
}

/// `constrained` cuts its hub off for the lag period before the fault proper.
pub fn lead_time(opts: &FaultOptions) -> Duration {
    if opts.shape == Shape::Constrained {
        opts.lag
    } else {
        Duration::ZERO
    }
}

/// Deletes conntrack entries to and from `addr`; "0 flow entries" is not an error, and a host
/// without the conntrack tool is reported on stderr rather than failing the partition (the
/// DROP rules already stop established flows).
fn conntrack_script(addr: &str) -> String {
    let a = quote(addr);
    let family = if addr.contains(':') { "-f ipv6 " } else { "" };
    format!(
        r#"if command -v conntrack >/dev/null 2>&1; then
  for dir in -s -d; do
    out=$(conntrack -D {family}$dir {a} 2>&1) || case "$out" in *"0 flow entries"*) ;; *) echo "conntrack -D $dir {addr}: $out" >&2; exit 1 ;; esac
  done
else
  echo "conntrack not installed; open flows to {addr} are cut by the DROP rules only" >&2
fi
"#,
        addr = addr.replace(['\'', '"', '$', '`', '\\'], "")
    )
}

/// The script that makes `node`'s rules match `grudge`: `-s peer` in FAULTLINE-IN for peers it
/// drops, `-d peer` in FAULTLINE-OUT for peers that drop it.
pub fn host_apply_script(
    node: &str,
    grudge: &Grudge,
    addr: &dyn Fn(&str) -> Result<String>,
) -> Result<String> {
    let mut rules = String::new();
    let mut cut = Vec::new();
    for peer in grudge.dropped_by(node) {
        let a = addr(&peer)?;
        rules.push_str(&format!(
            "{} -w -A {CHAIN_IN} -s {} -j DROP\n",
            tool_for(&a),
            quote(&a)
        ));
        cut.push(a);
    }
    for peer in grudge.dropping(node) {
        let a = addr(&peer)?;
        rules.push_str(&format!(
            "{} -w -A {CHAIN_OUT} -d {} -j DROP\n",
            tool_for(&a),
            quote(&a)
        ));
        if !cut.contains(&a) {
            cut.push(a);
        }
    }
    let mut s = setup_script();
    if cut.iter().any(|a| tool_for(a) == "ip6tables") {
        s.push_str(&chain_setup("ip6tables"));
    }
    s.push_str(&rules);
    for a in &cut {
        s.push_str(&conntrack_script(a));
    }
    Ok(s)
}

fn address_of(cx: &dyn Cluster) -> impl Fn(&str) -> Result<String> + '_ {
    move |n: &str| {
        cx.address(n).ok_or_else(|| {
            NemesisError::Invalid(format!("no address for node {n:?} in the inventory"))
        })
    }
}

/// Applies `grudge` on every node (journaled, with expiry). Nodes with no rules still get the
/// journal so a later heal covers the whole cluster.
pub async fn apply_grudge(
    cx: &dyn Cluster,
    id: &str,
    grudge: &Grudge,
    expiry: Duration,
    description: &serde_json::Value,
) -> Result<Vec<String>> {
    let addr = address_of(cx);
    let mut hosts = Vec::new();
    for node in cx.nodes() {
        hosts.push(HostFault {
            apply: host_apply_script(&node, grudge, &addr)?,
            undo: teardown_script(),
            node,
        });
    }
    journal::apply_journaled(cx, "partition", id, expiry, description, hosts).await
}

/// Starts a partition of `opts.shape`. For `constrained`, first cuts the future hub off for
/// `opts.lag` so its log falls behind, then swaps in the final shape without a healed gap.
pub fn start<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
) -> crate::BoxFuture<'a, Result<Applied>> {
    Box::pin(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes = cx.nodes();
        let leader = if opts.shape.uses_leader() {
            cx.leader().await
        } else {
            None
        };
        let lay = layout(
            opts.shape,
            &nodes,
            leader.as_deref(),
            opts.one_way,
            &mut rng,
        )?;
        let mut description = json!({
            "shape": opts.shape.name(),
            "one_way": opts.one_way,
            "grudge": lay.grudge,
            "expiry_ms": opts.expiry.as_millis() as u64,
        });
        if let (Some(d), Some(r)) = (description.as_object_mut(), lay.roles.as_object()) {
            d.extend(r.clone());
        }
        let targets: Vec<String> = lay.grudge.nodes().into_iter().collect();
        description["targets"] = json!(sorted(&targets, &nodes));
        if let Some(hub) = &lay.lag_first {
            let lag_id = journal::new_id("partition", &mut rng);
            let mut iso = Grudge::new();
            let rest: Vec<String> = nodes.iter().filter(|x| *x != hub).cloned().collect();
            iso.cut_groups(std::slice::from_ref(hub), &rest, false);
            let lag_desc = json!({"shape": "one", "isolated": hub, "phase": "lag"});
            apply_grudge(cx, &lag_id, &iso, opts.expiry, &lag_desc).await?;
            tokio::time::sleep(opts.lag).await;
            let id = journal::new_id("partition", &mut rng);
            description["lag_ms"] = json!(opts.lag.as_millis() as u64);
            let applied = apply_grudge(cx, &id, &lay.grudge, opts.expiry, &description).await;
            let forget = journal::forget_script(&cx.paths().journal_dir, &lag_id);
            let scripts = nodes.iter().map(|n| (n.clone(), forget.clone())).collect();
            crate::cluster::run_all(cx, "journal cleanup", scripts).await;
            let hosts = applied?;
            return Ok(Applied {
                family: "partition",
                journal_id: id,
                hosts,
                description,
            });
        }
        let id = journal::new_id("partition", &mut rng);
        let hosts = apply_grudge(cx, &id, &lay.grudge, opts.expiry, &description).await?;
        Ok(Applied {
            family: "partition",
            journal_id: id,
            hosts,
            description,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn majority(n: usize) -> usize {
        n / 2 + 1
    }

    fn build(shape: Shape, n: usize, one_way: bool, seed: u64) -> (Vec<String>, Layout) {
        let nodes = names(n);
        let mut rng = StdRng::seed_from_u64(seed);
        let l = layout(shape, &nodes, Some("n2"), one_way, &mut rng).unwrap();
        (nodes, l)
    }

    #[test]
    fn halves_split_into_a_majority_and_a_minority() {
        for n in [3, 5, 7] {
            for seed in 0..20 {
                let (nodes, l) = build(Shape::Halves, n, false, seed);
                assert!(l.grudge.is_symmetric());
                let sizes: Vec<usize> = nodes
                    .iter()
                    .map(|x| l.grudge.view(x, &nodes).len())
                    .collect();
                assert_eq!(sizes.iter().filter(|&&s| s == n / 2).count(), n / 2);
                assert_eq!(sizes.iter().filter(|&&s| s == n - n / 2).count(), n - n / 2);
                // Views are equivalence classes: connectivity is transitive.
                for a in &nodes {
                    for b in l.grudge.view(a, &nodes) {
                        assert_eq!(l.grudge.view(a, &nodes), l.grudge.view(&b, &nodes));
                    }
                }
            }
        }
    }

    #[test]
    fn one_and_leader_isolate_exactly_one_node() {
        for n in [3, 5, 7] {
            let (nodes, l) = build(Shape::Leader, n, false, 1);
            assert_eq!(l.grudge.view("n2", &nodes).len(), 1);
            for x in nodes.iter().filter(|x| *x != "n2") {
                assert_eq!(l.grudge.view(x, &nodes).len(), n - 1);
            }
            let (nodes, l) = build(Shape::One, n, false, 2);
            let isolated: Vec<_> = nodes
                .iter()
                .filter(|x| l.grudge.view(x, &nodes).len() == 1)
                .collect();
            assert_eq!(isolated.len(), 1);
            assert_eq!(l.roles["isolated"], json!(isolated[0]));
        }
    }

    #[test]
    fn leader_mute_silences_the_leader_but_lets_it_hear_everyone() {
        for n in [3, 5] {
            let (nodes, l) = build(Shape::LeaderMute, n, false, 1);
            // n2 leads in `build`: it hears everyone, and nobody hears it.
            assert_eq!(l.grudge.view("n2", &nodes).len(), 1);
            for x in nodes.iter().filter(|x| *x != "n2") {
                assert!(l.grudge.drops(x, "n2"), "{x} still hears the leader");
                assert!(!l.grudge.drops("n2", x), "the leader stopped hearing {x}");
            }
            assert_eq!(l.roles["muted"], json!("n2"));
        }
    }

    #[test]
    fn leader_shape_without_a_leader_is_an_error() {
        let mut rng = StdRng::seed_from_u64(0);
        let e = layout(Shape::Leader, &names(3), None, false, &mut rng).unwrap_err();
        assert!(matches!(e, NemesisError::NoLeader(_)));
    }

    #[test]
    fn majorities_ring_gives_every_node_a_distinct_majority() {
        for one_way in [false, true] {
            // Deterministic at every size (a ring, not Jepsen's random majorities above 5).
            for n in [3, 4, 5, 6, 7, 9, 11, 13, 15] {
                for seed in 0..10 {
                    let (nodes, l) = build(Shape::MajoritiesRing, n, one_way, seed);
                    assert_eq!(l.grudge.is_symmetric(), !one_way);
                    let mut seen = std::collections::BTreeSet::new();
                    for x in &nodes {
                        // What x hears from: itself plus peers whose packets reach it.
                        let hears: std::collections::BTreeSet<_> = nodes
                            .iter()
                            .filter(|p| l.grudge.delivers(p, x))
                            .cloned()
                            .collect();
                        assert!(hears.len() >= majority(n), "n={n} {x} hears {hears:?}");
                        // A partition: above three nodes nobody hears everyone.
                        assert!(n == 3 || hears.len() < n, "n={n} {x} hears every node");
                        assert!(seen.insert(hears), "n={n}: two nodes share a view");
                    }
                }
            }
        }
    }

    #[test]
    fn bridge_joins_two_halves_through_one_node() {
        for n in [3, 5, 7] {
            for seed in 0..10 {
                let (nodes, l) = build(Shape::Bridge, n, false, seed);
                let bridge = l.roles["bridge"].as_str().unwrap().to_string();
                assert_eq!(l.grudge.view(&bridge, &nodes).len(), n);
                let a: Vec<String> = serde_json::from_value(l.roles["halves"][0].clone()).unwrap();
                let b: Vec<String> = serde_json::from_value(l.roles["halves"][1].clone()).unwrap();
                assert_eq!(a.len() + b.len(), n - 1);
                assert!(!a.is_empty() && !b.is_empty());
                for x in &a {
                    for y in &b {
                        assert!(!l.grudge.connected(x, y));
                    }
                }
                assert!(
                    a.iter()
                        .all(|x| l.grudge.view(x, &nodes).len() == a.len() + 1)
                );
            }
        }
    }

    #[test]
    fn quorum_loss_leaves_the_leader_one_link_to_an_all_reaching_hub() {
        for n in [3, 5, 7] {
            for seed in 0..10 {
                let (nodes, l) = build(Shape::QuorumLoss, n, false, seed);
                let hub = l.roles["hub"].as_str().unwrap().to_string();
                assert_ne!(hub, "n2");
                assert_eq!(
                    l.grudge.view("n2", &nodes),
                    [hub.clone(), "n2".into()].into()
                );
                assert_eq!(l.grudge.view(&hub, &nodes).len(), n);
                for x in nodes.iter().filter(|x| **x != hub) {
                    assert_eq!(l.grudge.view(x, &nodes).len(), 2, "{x} sees the hub only");
                }
                if n >= 5 {
                    assert!(
                        l.grudge.view("n2", &nodes).len() < majority(n),
                        "leader lost its quorum"
                    );
                }
            }
        }
    }

    #[test]
    fn constrained_leaves_only_the_lagging_hub_with_a_majority() {
        for n in [5, 7] {
            for seed in 0..10 {
                let (nodes, l) = build(Shape::Constrained, n, false, seed);
                let hub = l.roles["hub"].as_str().unwrap().to_string();
                assert_eq!(l.lag_first.as_deref(), Some(hub.as_str()));
                assert_eq!(l.grudge.view("n2", &nodes).len(), 1, "old leader isolated");
                let quorate: Vec<_> = nodes
                    .iter()
                    .filter(|x| l.grudge.view(x, &nodes).len() >= majority(n))
                    .collect();
                assert_eq!(quorate, vec![&hub]);
            }
        }
        let mut rng = StdRng::seed_from_u64(0);
        let e = layout(Shape::Constrained, &names(3), Some("n1"), false, &mut rng).unwrap_err();
        assert!(e.to_string().contains("at least 5"), "{e}");
    }

    #[test]
    fn chained_cuts_one_link_whose_ends_share_a_third_node() {
        for n in [3, 5, 7] {
            let (nodes, l) = build(Shape::Chained, n, false, 3);
            let far = l.roles["far"].as_str().unwrap().to_string();
            assert!(!l.grudge.connected("n2", &far));
            let middle: Vec<_> = nodes
                .iter()
                .filter(|x| l.grudge.connected(x, "n2") && l.grudge.connected(x, &far))
                .filter(|x| **x != "n2" && **x != far)
                .collect();
            assert_eq!(middle.len(), n - 2);
            assert_eq!(l.grudge.dropped_by("n2"), vec![far.clone()]);
        }
    }

    #[test]
    fn one_way_cuts_only_the_first_side() {
        for shape in [
            Shape::Halves,
            Shape::One,
            Shape::Bridge,
            Shape::QuorumLoss,
            Shape::Chained,
        ] {
            let (nodes, l) = build(shape, 5, true, 4);
            assert!(!l.grudge.is_empty());
            for a in &nodes {
                for b in &nodes {
                    assert!(
                        !(l.grudge.drops(a, b) && l.grudge.drops(b, a)),
                        "{shape}: {a}<->{b} cut both ways"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_leader_falls_back_to_a_random_node_and_says_so() {
        let mut rng = StdRng::seed_from_u64(9);
        let l = layout(Shape::Chained, &names(5), None, false, &mut rng).unwrap();
        assert_eq!(l.roles["leader_known"], json!(false));
    }

    #[test]
    fn rules_name_peer_addresses_only_and_respect_one_way() {
        let mut g = Grudge::new();
        g.cut("n1", "n2", true);
        let addr = |n: &str| Ok(format!("10.0.0.{}", &n[1..]));
        let s1 = host_apply_script("n1", &g, &addr).unwrap();
        assert!(s1.contains("-A FAULTLINE-IN -s '10.0.0.2' -j DROP"));
        assert!(!s1.contains("FAULTLINE-OUT -d"));
        let s2 = host_apply_script("n2", &g, &addr).unwrap();
        assert!(s2.contains("-A FAULTLINE-OUT -d '10.0.0.1' -j DROP"));
        assert!(!s2.contains("FAULTLINE-IN -s"));
        assert!(s1.contains("-I INPUT 1 -j FAULTLINE-IN"));
        assert!(!s1.contains("ip6tables"));
        let v6 = |n: &str| Ok(format!("fd00::{}", &n[1..]));
        let s6 = host_apply_script("n1", &g, &v6).unwrap();
        assert!(
            s6.contains("ip6tables -w -A FAULTLINE-IN -s 'fd00::2' -j DROP"),
            "{s6}"
        );
        assert!(s6.contains("conntrack -D -f ipv6"));
        assert!(
            s1.lines()
                .all(|l| !l.contains("iptables") || l.contains("iptables -w"))
        );
    }
}
