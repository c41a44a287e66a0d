//! A partition as data: which peers each node refuses to hear from (Jepsen's "grudge").
//! Every shape is a grudge, so the properties of a shape are checked on plain data and the
//! iptables rules are derived from it in one place.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// `node -> peers whose packets it drops`. Nodes without an entry hear everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grudge(BTreeMap<String, BTreeSet<String>>);

impl Grudge {
    pub fn new() -> Self {
        Grudge::default()
    }

    /// `node` stops hearing from `peer`.
    pub fn drop_from(&mut self, node: &str, peer: &str) {
        assert_ne!(node, peer, "a node cannot hold a grudge against itself");
        self.0
            .entry(node.to_string())
            .or_default()
            .insert(peer.to_string());
    }

    /// Cuts the link between `a` and `b`: symmetric both ways, or with `one_way` only `a`
    /// stops hearing `b` (so `a`'s messages still reach `b`).
    pub fn cut(&mut self, a: &str, b: &str, one_way: bool) {
        self.drop_from(a, b);
        if !one_way {
            self.drop_from(b, a);
        }
    }

    /// Cuts every link between two groups.
    pub fn cut_groups(&mut self, a: &[String], b: &[String], one_way: bool) {
        for x in a {
            for y in b {
                self.cut(x, y, one_way);
            }
        }
    }

    pub fn drops(&self, node: &str, peer: &str) -> bool {
        self.0.get(node).is_some_and(|s| s.contains(peer))
    }

    /// Packets from `from` reach `to`.
    pub fn delivers(&self, from: &str, to: &str) -> bool {
        !self.drops(to, from)
    }

    /// Both directions work.
    pub fn connected(&self, a: &str, b: &str) -> bool {
        a == b || (self.delivers(a, b) && self.delivers(b, a))
    }

    /// The nodes `node` can exchange messages with, itself included.
    pub fn view(&self, node: &str, nodes: &[String]) -> BTreeSet<String> {
        nodes
            .iter()
            .filter(|p| self.connected(node, p))
            .cloned()
            .collect()
    }

    pub fn is_symmetric(&self) -> bool {
        self.0
            .iter()
            .all(|(n, peers)| peers.iter().all(|p| self.drops(p, n)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|s| s.is_empty())
    }

    /// Peers `node` drops incoming packets from.
    pub fn dropped_by(&self, node: &str) -> Vec<String> {
        self.0
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Peers that drop packets coming from `node`; `node` drops its outgoing packets to them
    /// too, so a one-way cut holds even if one host's rules were lost.
    pub fn dropping(&self, node: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, peers)| peers.contains(node))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every node that appears, as holder or target.
    pub fn nodes(&self) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = self.0.keys().cloned().collect();
        for peers in self.0.values() {
            all.extend(peers.iter().cloned());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn a_one_way_cut_still_delivers_the_other_way() {
        let mut g = Grudge::new();
        g.cut("n1", "n2", true);
        assert!(!g.delivers("n2", "n1"));
        assert!(g.delivers("n1", "n2"));
        assert!(!g.connected("n1", "n2"));
        assert!(!g.is_symmetric());
        assert_eq!(g.dropping("n2"), vec!["n1".to_string()]);
    }

    #[test]
    fn cutting_groups_leaves_each_group_whole() {
        let n = names(5);
        let mut g = Grudge::new();
        g.cut_groups(&n[..2], &n[2..], false);
        assert!(g.is_symmetric());
        assert_eq!(g.view("n1", &n).len(), 2);
        assert_eq!(g.view("n5", &n).len(), 3);
        assert_eq!(
            serde_json::to_value(&g).unwrap()["n1"],
            serde_json::json!(["n3", "n4", "n5"])
        );
    }
}
