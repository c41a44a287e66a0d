//! Seeded fault schedules: from the run's seed, alternate quiet and fault periods with
//! jitter. With several families, each fault period starts a random non-empty subset of them
//! together, so faults compose (a kill during a partition) as well as alternate.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::packet::PacketSpec;
use crate::partition::Shape;
use crate::registry::lookup;
use crate::target::TargetSpec;
use crate::{FaultOptions, NemesisError, Result};

/// What `faultline test --nemesis ...` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NemesisConfig {
    /// Registered family names, e.g. `["kill", "partition"]`.
    pub families: Vec<String>,
    /// Mean length of a quiet period and of a fault period; each is jittered by ±50%.
    pub interval_ms: u64,
    /// Targets for kill, pause and packet.
    pub target: TargetSpec,
    /// Partition shapes to pick from, one per fault period.
    pub shapes: Vec<Shape>,
    pub one_way: bool,
    /// Added to a fault's scheduled length to give its on-host expiry.
    pub expiry_margin_ms: u64,
    /// Lag period of the `constrained` shape.
    pub lag_ms: u64,
    pub packet: PacketSpec,
}

/// Safety bound on the number of steps one schedule yields.
pub const STEPS_MAX: usize = 100_000;

impl NemesisConfig {
    /// Validates `--nemesis kill,partition --nemesis-interval 10 --nemesis-targets one`.
    /// `shapes` is a comma list; absent means halves, one, majorities-ring and bridge, which
    /// need no leader.
    pub fn from_flags(
        nemesis: &str,
        interval_s: f64,
        targets: Option<&str>,
        shapes: Option<&str>,
        one_way: bool,
    ) -> Result<Self> {
        // `<shape>-partition` (e.g. `leader-partition`) is a preset: the partition family
        // restricted to that shape, so a suite's nemesis axis can name shapes directly.
        let mut families: Vec<String> = Vec::new();
        let mut preset_shapes: Vec<Shape> = Vec::new();
        for name in nemesis.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let family = match name.strip_suffix("-partition") {
                Some(shape) if lookup(name).is_err() => {
                    preset_shapes.push(shape.parse()?);
                    "partition"
                }
                _ => {
                    lookup(name)?;
                    name
                }
            };
            if !families.iter().any(|f| f == family) {
                families.push(family.to_string());
            }
        }
        if families.is_empty() {
            return Err(NemesisError::Invalid("--nemesis lists no family".into()));
        }
        if !(interval_s.is_finite() && (0.1..=86_400.0).contains(&interval_s)) {
            return Err(NemesisError::Invalid(format!(
                "--nemesis-interval {interval_s} is not between 0.1 and 86400 seconds"
            )));
        }
        let shapes = match shapes {
            None if !preset_shapes.is_empty() => preset_shapes,
            None => vec![
                Shape::Halves,
                Shape::One,
                Shape::MajoritiesRing,
                Shape::Bridge,
            ],
            Some(s) => {
                let mut v = s
                    .split(',')
                    .map(|x| x.trim().parse())
                    .collect::<Result<Vec<_>>>()?;
                for p in preset_shapes {
                    if !v.contains(&p) {
                        v.push(p);
                    }
                }
                v
            }
        };
        if shapes.is_empty() {
            return Err(NemesisError::Invalid("no partition shape given".into()));
        }
        Ok(NemesisConfig {
            families,
            interval_ms: (interval_s * 1000.0) as u64,
            target: targets
                .map(str::parse)
                .transpose()?
                .unwrap_or(TargetSpec::One),
            shapes,
            one_way,
            expiry_margin_ms: 30_000,
            lag_ms: 5_000,
            packet: PacketSpec::default(),
        })
    }

    /// The options for one fault of `step`.
    pub fn options(&self, shape: Option<Shape>, hold: Duration) -> FaultOptions {
        FaultOptions {
            target: self.target.clone(),
            shape: shape.unwrap_or(Shape::Halves),
            one_way: self.one_way,
            expiry: hold
                + Duration::from_millis(self.expiry_margin_ms)
                + Duration::from_millis(self.lag_ms),
            lag: Duration::from_millis(self.lag_ms),
            packet: self.packet.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Start {
        family: String,
        /// Seeds this fault's own choices (targets, halves), so a rerun with the same seed
        /// picks the same nodes.
        seed: u64,
        /// Scheduled length, for the on-host expiry.
        hold: Duration,
        shape: Option<Shape>,
    },
    Stop {
        family: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Offset from the start of the run.
    pub at: Duration,
    pub action: Action,
}

/// An endless, deterministic sequence of steps (bounded by [`STEPS_MAX`]).
pub struct Schedule {
    config: NemesisConfig,
    rng: StdRng,
    now: Duration,
    pending: std::collections::VecDeque<Step>,
    yielded: usize,
}

impl Schedule {
    pub fn new(config: &NemesisConfig, seed: u64) -> Self {
        Schedule {
            config: config.clone(),
            rng: StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7300),
            now: Duration::ZERO,
            pending: Default::default(),
            yielded: 0,
        }
    }

    fn jittered(&mut self) -> Duration {
        let ms = self.config.interval_ms as f64 * self.rng.random_range(0.5..1.5);
        Duration::from_millis(ms.max(1.0) as u64)
    }

    fn plan_cycle(&mut self) {
        let quiet = self.jittered();
        self.now += quiet;
        let fams = self.config.families.clone();
        let mut chosen: Vec<String> = fams
            .iter()
            .filter(|_| self.rng.random_bool(0.5))
            .cloned()
            .collect();
        if chosen.is_empty() {
            chosen.push(
                fams.choose(&mut self.rng)
                    .expect("families is not empty")
                    .clone(),
            );
        }
        let hold = self.jittered();
        for f in &chosen {
            let shape = (f == "partition")
                .then(|| *self.config.shapes.choose(&mut self.rng).expect("shapes"));
            self.pending.push_back(Step {
                at: self.now,
                action: Action::Start {
                    family: f.clone(),
                    seed: self.rng.random(),
                    hold,
                    shape,
                },
            });
        }
        self.now += hold;
        for f in chosen.iter().rev() {
            self.pending.push_back(Step {
                at: self.now,
                action: Action::Stop { family: f.clone() },
            });
        }
    }
}

impl Iterator for Schedule {
    type Item = Step;
    fn next(&mut self) -> Option<Step> {
        if self.yielded >= STEPS_MAX {
            return None;
        }
        if self.pending.is_empty() {
            self.plan_cycle();
        }
        self.yielded += 1;
        self.pending.pop_front()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn shape_partition_presets_select_the_partition_family_with_that_shape() {
        let c = NemesisConfig::from_flags("leader-partition,kill", 5.0, None, None, false).unwrap();
        assert_eq!(c.families, vec!["partition".to_string(), "kill".to_string()]);
        assert_eq!(c.shapes, vec![Shape::Leader]);
        let c = NemesisConfig::from_flags("partition,majorities-ring-partition", 5.0, None, Some("halves"), false)
            .unwrap();
        assert_eq!(c.families, vec!["partition".to_string()]);
        assert_eq!(c.shapes, vec![Shape::Halves, Shape::MajoritiesRing]);
        let e = NemesisConfig::from_flags("sideways-partition", 5.0, None, None, false).unwrap_err();
        assert!(e.to_string().contains("unknown partition shape"), "{e}");
    }

    use super::*;

    fn cfg(f: &str) -> NemesisConfig {
        NemesisConfig::from_flags(f, 10.0, None, None, false).unwrap()
    }

    #[test]
    fn same_seed_same_schedule() {
        let c = cfg("kill,partition,pause");
        let a: Vec<Step> = Schedule::new(&c, 42).take(200).collect();
        let b: Vec<Step> = Schedule::new(&c, 42).take(200).collect();
        assert_eq!(a, b);
        let other: Vec<Step> = Schedule::new(&c, 43).take(200).collect();
        assert_ne!(a, other);
    }

    #[test]
    fn every_start_is_stopped_before_it_starts_again_and_time_moves_forward() {
        let c = cfg("kill,partition");
        let mut active = std::collections::BTreeSet::new();
        let mut last = Duration::ZERO;
        let mut overlapped = false;
        for step in Schedule::new(&c, 7).take(2000) {
            assert!(step.at >= last);
            last = step.at;
            match step.action {
                Action::Start {
                    family,
                    hold,
                    shape,
                    ..
                } => {
                    assert!(hold >= Duration::from_secs(5) && hold <= Duration::from_secs(15));
                    assert_eq!(shape.is_some(), family == "partition");
                    assert!(active.insert(family));
                    overlapped |= active.len() > 1;
                }
                Action::Stop { family } => assert!(active.remove(&family)),
            }
        }
        assert!(overlapped, "families never composed");
        assert!(
            last > Duration::from_secs(2000 / 4 * 5),
            "cycles are spaced by the interval"
        );
    }

    #[test]
    fn bad_flags_are_rejected_with_the_reason() {
        assert!(
            NemesisConfig::from_flags("kill,flood", 10.0, None, None, false)
                .unwrap_err()
                .to_string()
                .contains("flood")
        );
        assert!(NemesisConfig::from_flags("kill", 0.0, None, None, false).is_err());
        assert!(NemesisConfig::from_flags("", 1.0, None, None, false).is_err());
        assert!(NemesisConfig::from_flags("partition", 1.0, None, Some("ring"), false).is_err());
        let c = NemesisConfig::from_flags(
            "partition",
            1.0,
            Some("leader"),
            Some("quorum-loss,chained"),
            true,
        )
        .unwrap();
        assert_eq!(c.shapes, vec![Shape::QuorumLoss, Shape::Chained]);
        assert_eq!(c.target, TargetSpec::Leader);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<NemesisConfig>(&json).unwrap(), c);
    }
}
