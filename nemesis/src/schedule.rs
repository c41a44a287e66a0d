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
use crate::registry::{NemesisPackage, Opt, REGISTRY, lookup, lookup_preset};
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

/// Partition shapes when none is asked for: those that need no leader.
const SHAPES_DEFAULT: [Shape; 4] = [
    Shape::Halves,
    Shape::One,
    Shape::MajoritiesRing,
    Shape::Bridge,
];

impl NemesisConfig {
    /// Validates `--nemesis kill,partition --nemesis-interval 10` plus the family options
    /// given as flags. An option that no chosen family reads is refused
    /// ([`NemesisError::Option`]), never ignored. A family's preset (`leader-partition`)
    /// selects the family and sets one option; preset shapes are added to `--nemesis-shapes`.
    pub fn parse(nemesis: &str, interval_s: f64, options: &[(Opt, &str)]) -> Result<Self> {
        let mut families: Vec<String> = Vec::new();
        let mut presets: Vec<(Opt, String)> = Vec::new();
        for name in nemesis.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (pkg, set) = lookup_preset(name)?;
            presets.extend(set);
            if !families.iter().any(|f| f == pkg.name) {
                families.push(pkg.name.to_string());
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
        let mut c = NemesisConfig {
            families,
            interval_ms: (interval_s * 1000.0) as u64,
            target: TargetSpec::One,
            shapes: SHAPES_DEFAULT.to_vec(),
            one_way: false,
            expiry_margin_ms: 30_000,
            lag_ms: 5_000,
            packet: PacketSpec::default(),
        };
        let mut explicit_shapes = false;
        for (opt, value) in options {
            c.set(*opt, value)?;
            explicit_shapes |= *opt == Opt::Shape;
        }
        let mut preset_shapes = Vec::new();
        for (opt, value) in &presets {
            if *opt == Opt::Shape {
                preset_shapes.push(value.parse::<Shape>()?);
            } else {
                c.set(*opt, value)?;
            }
        }
        if !preset_shapes.is_empty() {
            if !explicit_shapes {
                c.shapes.clear();
            }
            for p in preset_shapes {
                if !c.shapes.contains(&p) {
                    c.shapes.push(p);
                }
            }
        }
        if c.shapes.is_empty() {
            return Err(NemesisError::Option {
                opt: Opt::Shape,
                message: "no partition shape given".into(),
            });
        }
        c.packet.validate().map_err(|e| NemesisError::Option {
            opt: Opt::DelayMs,
            message: e.to_string(),
        })?;
        Ok(c)
    }

    /// Shorthand for [`NemesisConfig::parse`] with targets, shapes and one-way only.
    pub fn from_flags(
        nemesis: &str,
        interval_s: f64,
        targets: Option<&str>,
        shapes: Option<&str>,
        one_way: bool,
    ) -> Result<Self> {
        let mut options = Vec::new();
        if let Some(t) = targets {
            options.push((Opt::Target, t));
        }
        if let Some(s) = shapes {
            options.push((Opt::Shape, s));
        }
        if one_way {
            options.push((Opt::OneWay, "true"));
        }
        Self::parse(nemesis, interval_s, &options)
    }

    fn packages(&self) -> impl Iterator<Item = &'static NemesisPackage> + '_ {
        self.families.iter().filter_map(|f| lookup(f).ok())
    }

    /// Sets one option for every fault of the run; refused when no chosen family reads it.
    pub fn set(&mut self, opt: Opt, value: &str) -> Result<()> {
        let err = |message: String| NemesisError::Option { opt, message };
        if !self.packages().any(|p| p.takes(opt)) {
            let readers: Vec<&str> = REGISTRY
                .iter()
                .filter(|p| p.takes(opt))
                .map(|p| p.name)
                .collect();
            return Err(err(format!(
                "no chosen nemesis ({}) reads this option; it is for {}",
                self.families.join(", "),
                readers.join(", ")
            )));
        }
        if opt == Opt::Shape {
            self.shapes = value
                .split(',')
                .map(|x| x.trim().parse())
                .collect::<Result<Vec<Shape>>>()
                .map_err(|e| err(e.to_string()))?;
            return Ok(());
        }
        let mut f = self.options(None, Duration::ZERO);
        opt.apply(&mut f, value).map_err(|e| err(e.to_string()))?;
        self.target = f.target;
        self.one_way = f.one_way;
        self.lag_ms = f.lag.as_millis() as u64;
        self.packet = f.packet;
        Ok(())
    }

    /// Checks the options against the inventory's nodes before anything connects: named
    /// nodes must exist, and no target or shape may be one that can never be satisfied in
    /// a cluster of this size.
    pub fn check_targets(&self, nodes: &[String]) -> Result<()> {
        for p in self.packages() {
            let mut opts = self.options(None, Duration::ZERO);
            p.check_targets(&opts, nodes)?;
            if p.takes(Opt::Shape) {
                for s in &self.shapes {
                    opts.shape = *s;
                    p.check_targets(&opts, nodes)?;
                }
            }
        }
        Ok(())
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
            let takes_shape = lookup(f).is_ok_and(|p| p.takes(Opt::Shape));
            let shape =
                takes_shape.then(|| *self.config.shapes.choose(&mut self.rng).expect("shapes"));
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

    #[test]
    fn an_option_no_chosen_family_reads_is_refused_not_ignored() {
        for (nemesis, opt, value) in [
            ("kill", Opt::Shape, "leader"),
            ("kill,pause", Opt::OneWay, "true"),
            ("partition", Opt::Target, "n1"),
            ("partition", Opt::DelayMs, "10"),
            ("kill", Opt::Lag, "2s"),
        ] {
            match NemesisConfig::parse(nemesis, 5.0, &[(opt, value)]) {
                Err(NemesisError::Option { opt: o, message }) => {
                    assert_eq!(o, opt);
                    assert!(message.contains("reads"), "{message}");
                }
                other => panic!("{nemesis} with {opt}: {other:?}"),
            }
        }
        let c = NemesisConfig::parse(
            "packet,partition",
            5.0,
            &[
                (Opt::DelayMs, "200"),
                (Opt::JitterMs, "20"),
                (Opt::LossPercent, "2.5"),
                (Opt::OneWay, "true"),
                (Opt::Lag, "2s"),
                (Opt::Target, "n2"),
            ],
        )
        .unwrap();
        assert_eq!(c.packet.delay_ms, 200);
        assert_eq!(c.packet.jitter_ms, 20);
        assert_eq!(c.packet.loss_percent, 2.5);
        assert!(c.one_way);
        assert_eq!(c.lag_ms, 2000);
        assert_eq!(c.options(None, Duration::ZERO).packet, c.packet);
        let e = NemesisConfig::parse("packet", 5.0, &[(Opt::JitterMs, "100")]).unwrap_err();
        assert!(e.to_string().contains("jitter"), "{e}");
    }

    #[test]
    fn impossible_targets_are_refused_against_the_inventory() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let check = |f: &str, t: &str| {
            NemesisConfig::parse(f, 5.0, &[(Opt::Target, t)])
                .unwrap()
                .check_targets(&nodes)
        };
        assert!(check("kill", "n9").unwrap_err().to_string().contains("n9"));
        assert!(check("kill", "nope").is_err());
        assert!(check("pause", "n1,n4").is_err());
        assert!(check("kill", "n3,n1").is_ok());
        assert!(check("kill", "minority").is_ok());
        let two = &nodes[..2];
        let c = NemesisConfig::parse("kill", 5.0, &[(Opt::Target, "minority")]).unwrap();
        assert!(c.check_targets(two).is_err(), "a minority of two is nobody");
        let c = NemesisConfig::parse("constrained-partition", 5.0, &[]).unwrap();
        assert!(c.check_targets(&nodes).unwrap_err().to_string().contains("5 nodes"));
        // Partition reads no target: the default target is not checked for it.
        let c = NemesisConfig::parse("partition", 5.0, &[]).unwrap();
        assert!(c.check_targets(&nodes).is_ok());
        assert!(c.check_targets(&[]).is_err());
    }

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
            "partition,kill",
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
