//! Which nodes a kill or pause hits.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::{Cluster, NemesisError, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum TargetSpec {
    /// One random node.
    One,
    /// A random strict minority: `(n - 1) / 2` nodes.
    Minority,
    /// A random majority: `n / 2 + 1` nodes.
    Majority,
    All,
    /// The node the cluster currently calls leader.
    Leader,
    /// Everyone but the leader.
    Followers,
    /// Explicit node names.
    Nodes(Vec<String>),
}

impl FromStr for TargetSpec {
    type Err = NemesisError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "one" => TargetSpec::One,
            "minority" => TargetSpec::Minority,
            "majority" => TargetSpec::Majority,
            "all" => TargetSpec::All,
            "leader" => TargetSpec::Leader,
            "followers" => TargetSpec::Followers,
            "" => {
                return Err(NemesisError::Invalid(
                    "empty target: use one, minority, majority, all, leader, followers or node names".into(),
                ));
            }
            list => TargetSpec::Nodes(
                list.split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
            ),
        })
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::One => f.write_str("one"),
            TargetSpec::Minority => f.write_str("minority"),
            TargetSpec::Majority => f.write_str("majority"),
            TargetSpec::All => f.write_str("all"),
            TargetSpec::Leader => f.write_str("leader"),
            TargetSpec::Followers => f.write_str("followers"),
            TargetSpec::Nodes(n) => f.write_str(&n.join(",")),
        }
    }
}

impl From<TargetSpec> for String {
    fn from(t: TargetSpec) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for TargetSpec {
    type Error = NemesisError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl TargetSpec {
    pub fn needs_leader(&self) -> bool {
        matches!(self, TargetSpec::Leader | TargetSpec::Followers)
    }

    /// Fails when this spec can never select a node of `nodes`: an unknown name, or a size
    /// that rounds to nobody (a minority of two, the followers of one). Needs no leader.
    pub fn check(&self, nodes: &[String]) -> Result<()> {
        let n = nodes.len();
        let never = match self {
            TargetSpec::Nodes(names) => {
                if let Some(bad) = names.iter().find(|x| !nodes.contains(x)) {
                    return Err(NemesisError::Invalid(format!(
                        "unknown node {bad:?} in target (nodes: {})",
                        nodes.join(", ")
                    )));
                }
                names.is_empty()
            }
            TargetSpec::Minority => n.saturating_sub(1) / 2 == 0,
            TargetSpec::Followers => n < 2,
            TargetSpec::One | TargetSpec::Majority | TargetSpec::All | TargetSpec::Leader => n == 0,
        };
        if never {
            return Err(NemesisError::Invalid(format!(
                "target `{self}` selects no node in a cluster of {n}"
            )));
        }
        Ok(())
    }

    /// Picks the nodes. `leader` is consulted only for `leader`/`followers`. The result keeps
    /// inventory order and is never empty.
    pub fn resolve(
        &self,
        nodes: &[String],
        leader: Option<&str>,
        rng: &mut impl Rng,
    ) -> Result<Vec<String>> {
        let n = nodes.len();
        let random = |k: usize, rng: &mut dyn rand::RngCore| {
            let mut picked: Vec<String> = nodes.to_vec();
            picked.shuffle(rng);
            picked.truncate(k);
            picked
        };
        let mut out = match self {
            TargetSpec::One => random(1, rng),
            TargetSpec::Minority => random((n.saturating_sub(1)) / 2, rng),
            TargetSpec::Majority => random(n / 2 + 1, rng),
            TargetSpec::All => nodes.to_vec(),
            TargetSpec::Leader | TargetSpec::Followers => {
                let l = leader.ok_or_else(|| {
                    NemesisError::NoLeader(format!(
                        "target `{self}` needs a leader and no node reports one"
                    ))
                })?;
                if !nodes.iter().any(|x| x == l) {
                    return Err(NemesisError::Invalid(format!(
                        "the reported leader {l:?} is not in the inventory"
                    )));
                }
                if *self == TargetSpec::Leader {
                    vec![l.to_string()]
                } else {
                    nodes.iter().filter(|x| *x != l).cloned().collect()
                }
            }
            TargetSpec::Nodes(names) => {
                for name in names {
                    if !nodes.contains(name) {
                        return Err(NemesisError::Invalid(format!(
                            "unknown node {name:?} in target (nodes: {})",
                            nodes.join(", ")
                        )));
                    }
                }
                names.clone()
            }
        };
        if out.is_empty() {
            return Err(NemesisError::Invalid(format!(
                "target `{self}` selects no node in a cluster of {n}"
            )));
        }
        out.sort_by_key(|x| nodes.iter().position(|y| y == x));
        out.dedup();
        Ok(out)
    }
}

/// The leader, asked only when the target needs one.
pub async fn resolve_with(
    spec: &TargetSpec,
    cx: &dyn Cluster,
    rng: &mut (impl Rng + Send),
) -> Result<(Vec<String>, Option<String>)> {
    let leader = if spec.needs_leader() {
        cx.leader().await
    } else {
        None
    };
    let nodes = cx.nodes();
    Ok((spec.resolve(&nodes, leader.as_deref(), rng)?, leader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn sizes_follow_the_cluster_size() {
        let mut rng = StdRng::seed_from_u64(1);
        for (n, minority, majority) in [(3, 1, 2), (4, 1, 3), (5, 2, 3), (7, 3, 4)] {
            let nodes = names(n);
            assert_eq!(
                TargetSpec::One
                    .resolve(&nodes, None, &mut rng)
                    .unwrap()
                    .len(),
                1
            );
            assert_eq!(
                TargetSpec::Minority
                    .resolve(&nodes, None, &mut rng)
                    .unwrap()
                    .len(),
                minority
            );
            assert_eq!(
                TargetSpec::Majority
                    .resolve(&nodes, None, &mut rng)
                    .unwrap()
                    .len(),
                majority
            );
            assert_eq!(
                TargetSpec::All.resolve(&nodes, None, &mut rng).unwrap(),
                nodes
            );
        }
    }

    #[test]
    fn leader_and_followers_split_the_cluster() {
        let nodes = names(5);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            TargetSpec::Leader
                .resolve(&nodes, Some("n3"), &mut rng)
                .unwrap(),
            vec!["n3"]
        );
        assert_eq!(
            TargetSpec::Followers
                .resolve(&nodes, Some("n3"), &mut rng)
                .unwrap(),
            vec!["n1", "n2", "n4", "n5"]
        );
        assert!(matches!(
            TargetSpec::Leader.resolve(&nodes, None, &mut rng),
            Err(NemesisError::NoLeader(_))
        ));
    }

    #[test]
    fn explicit_names_are_checked_against_the_inventory() {
        let nodes = names(3);
        let mut rng = StdRng::seed_from_u64(1);
        let t: TargetSpec = "n3,n1".parse().unwrap();
        assert_eq!(t.resolve(&nodes, None, &mut rng).unwrap(), vec!["n1", "n3"]);
        let bad: TargetSpec = "n1,n9".parse().unwrap();
        let err = bad.resolve(&nodes, None, &mut rng).unwrap_err().to_string();
        assert!(err.contains("n9"), "{err}");
        assert!(
            TargetSpec::Minority
                .resolve(&names(2), None, &mut rng)
                .is_err()
        );
    }
}
