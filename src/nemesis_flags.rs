//! The nemesis flags of `faultline test` and `faultline suite`. Each family option flag maps
//! to one [`Opt`] of the nemesis registry, so every option of every family is reachable, and
//! an option that no chosen family reads is a usage error rather than silently ignored.

use faultline_nemesis::{NemesisConfig, NemesisError, Opt};

use crate::exit::usage;

#[derive(clap::Args, Debug, Clone)]
pub struct NemesisFlags {
    /// Faults: `none`, or a comma list of nemesis families (kill, pause, partition, packet, bitflip, truncate, wipe);
    /// `<shape>-partition` (e.g. `leader-partition`) is partition with that shape only.
    #[arg(long, default_value = "none")]
    pub nemesis: String,
    /// Mean seconds between (and length of) fault periods, 0.1 to 86400.
    #[arg(long, default_value_t = 5.0)]
    pub nemesis_interval: f64,
    /// Whom kill, pause and packet target: one, minority, majority, all, leader, followers,
    /// or node names (n1,n3).
    #[arg(long)]
    pub nemesis_targets: Option<String>,
    /// Partition shapes to choose from, one per fault period (comma list, e.g.
    /// `leader,halves`); partition only.
    #[arg(long)]
    pub nemesis_shapes: Option<String>,
    /// Partitions drop only one direction of each cut; partition only.
    #[arg(long)]
    pub nemesis_one_way: bool,
    /// For the `constrained` shape: how long the future hub is cut off first (e.g. 5s).
    #[arg(long, value_name = "DURATION")]
    pub nemesis_lag: Option<String>,
    /// Packet faults: added delay per packet to peers, ms (default 50).
    #[arg(long)]
    pub nemesis_delay_ms: Option<String>,
    /// Packet faults: delay jitter, ms, at most the delay (default 10).
    #[arg(long)]
    pub nemesis_jitter_ms: Option<String>,
    /// Packet faults: share of packets to peers dropped, percent (default 0).
    #[arg(long)]
    pub nemesis_loss_percent: Option<String>,
}

impl Default for NemesisFlags {
    fn default() -> Self {
        NemesisFlags {
            nemesis: "none".into(),
            nemesis_interval: 5.0,
            nemesis_targets: None,
            nemesis_shapes: None,
            nemesis_one_way: false,
            nemesis_lag: None,
            nemesis_delay_ms: None,
            nemesis_jitter_ms: None,
            nemesis_loss_percent: None,
        }
    }
}

/// A nemesis error as a usage error naming the flag that caused it.
pub fn usage_for(e: NemesisError) -> anyhow::Error {
    match e {
        NemesisError::Option { opt, message } => usage(format!("{}: {message}", opt.test_flag())),
        other => usage(format!("--nemesis: {other}")),
    }
}

impl NemesisFlags {
    /// The family names asked for; empty for `none`.
    pub fn families(&self) -> Vec<String> {
        match self.nemesis.trim() {
            "none" | "" => Vec::new(),
            s => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
        }
    }

    /// The family options given, each with the [`Opt`] it sets.
    pub fn options(&self) -> Vec<(Opt, &str)> {
        let mut v: Vec<(Opt, &str)> = [
            (Opt::Target, &self.nemesis_targets),
            (Opt::Shape, &self.nemesis_shapes),
            (Opt::Lag, &self.nemesis_lag),
            (Opt::DelayMs, &self.nemesis_delay_ms),
            (Opt::JitterMs, &self.nemesis_jitter_ms),
            (Opt::LossPercent, &self.nemesis_loss_percent),
        ]
        .into_iter()
        .filter_map(|(opt, value)| value.as_deref().map(|s| (opt, s)))
        .collect();
        if self.nemesis_one_way {
            v.push((Opt::OneWay, "true"));
        }
        v
    }

    /// The validated schedule, `None` for `--nemesis none`. Every error is a usage error
    /// (exit 64) naming its flag; family options without a family that reads them are
    /// refused, `--nemesis none` included.
    pub fn validate(&self) -> anyhow::Result<Option<NemesisConfig>> {
        let i = self.nemesis_interval;
        if !(i.is_finite() && (0.1..=86_400.0).contains(&i)) {
            return Err(usage(format!(
                "--nemesis-interval {i} is not between 0.1 and 86400 seconds"
            )));
        }
        let families = self.families();
        let options = self.options();
        if families.is_empty() {
            if let Some((opt, _)) = options.first() {
                return Err(usage(format!(
                    "{}: no nemesis is chosen (--nemesis none); this option needs one that reads it",
                    opt.test_flag()
                )));
            }
            return Ok(None);
        }
        NemesisConfig::parse(&families.join(","), i, &options)
            .map(Some)
            .map_err(usage_for)
    }

    /// These flags for one cell of a suite whose `--nemesis` axis is `self.nemesis`: the
    /// cell's families, with only the options that the cell's families read. The whole
    /// axis is validated once first, so an option that no family of the suite reads is
    /// still refused.
    pub fn for_suite_cell(&self, nemesis: &str) -> anyhow::Result<NemesisFlags> {
        let all: Vec<String> = self
            .families()
            .into_iter()
            .filter(|f| f != "none")
            .collect();
        if all.is_empty() {
            self.validate()?;
        } else {
            NemesisFlags {
                nemesis: all.join(","),
                ..self.clone()
            }
            .validate()?;
        }
        let mut cell = NemesisFlags {
            nemesis: nemesis.to_string(),
            ..self.clone()
        };
        let cell_families = cell.families();
        let reads = |opt: Opt| -> bool {
            cell_families.iter().any(|f| {
                faultline_nemesis::registry::lookup_preset(f).is_ok_and(|(p, _)| p.takes(opt))
            })
        };
        let keep = |opt: Opt, v: &Option<String>| v.clone().filter(|_| reads(opt));
        cell.nemesis_targets = keep(Opt::Target, &self.nemesis_targets);
        cell.nemesis_shapes = keep(Opt::Shape, &self.nemesis_shapes);
        cell.nemesis_lag = keep(Opt::Lag, &self.nemesis_lag);
        cell.nemesis_delay_ms = keep(Opt::DelayMs, &self.nemesis_delay_ms);
        cell.nemesis_jitter_ms = keep(Opt::JitterMs, &self.nemesis_jitter_ms);
        cell.nemesis_loss_percent = keep(Opt::LossPercent, &self.nemesis_loss_percent);
        cell.nemesis_one_way = self.nemesis_one_way && reads(Opt::OneWay);
        Ok(cell)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        flags: NemesisFlags,
    }

    fn flags(args: &[&str]) -> NemesisFlags {
        let mut v = vec!["faultline"];
        v.extend_from_slice(args);
        Wrap::try_parse_from(v).unwrap().flags
    }

    fn usage_message(r: anyhow::Result<Option<NemesisConfig>>) -> String {
        let e = r.expect_err("expected a usage error");
        assert_eq!(
            crate::exit::for_error(&e),
            std::process::ExitCode::from(crate::exit::USAGE)
        );
        e.to_string()
    }

    #[test]
    fn nemesis_flags_reach_every_option_of_every_family() {
        assert!(flags(&[]).validate().unwrap().is_none());
        let c = flags(&[
            "--nemesis",
            "partition,packet,kill",
            "--nemesis-interval",
            "2",
            "--nemesis-targets",
            "n1,n2",
            "--nemesis-shapes",
            "leader,halves",
            "--nemesis-one-way",
            "--nemesis-lag",
            "3s",
            "--nemesis-delay-ms",
            "120",
            "--nemesis-jitter-ms",
            "7",
            "--nemesis-loss-percent",
            "1.5",
        ])
        .validate()
        .unwrap()
        .unwrap();
        assert_eq!(c.families, vec!["partition", "packet", "kill"]);
        assert_eq!(c.interval_ms, 2000);
        assert_eq!(c.target.to_string(), "n1,n2");
        assert_eq!(c.shapes.len(), 2);
        assert!(c.one_way);
        assert_eq!(c.lag_ms, 3000);
        assert_eq!(
            (c.packet.delay_ms, c.packet.jitter_ms, c.packet.loss_percent),
            (120, 7, 1.5)
        );
        // Every option of the registry has a flag here.
        let all: std::collections::BTreeSet<Opt> = flags(&[
            "--nemesis-targets",
            "x",
            "--nemesis-shapes",
            "x",
            "--nemesis-lag",
            "x",
            "--nemesis-delay-ms",
            "1",
            "--nemesis-jitter-ms",
            "1",
            "--nemesis-loss-percent",
            "1",
            "--nemesis-one-way",
        ])
        .options()
        .into_iter()
        .map(|(o, _)| o)
        .collect();
        assert_eq!(all, Opt::ALL.into_iter().collect());
    }

    #[test]
    fn nemesis_shapes_without_a_partition_family_are_a_usage_error() {
        let m =
            usage_message(flags(&["--nemesis", "kill", "--nemesis-shapes", "leader"]).validate());
        assert!(m.contains("--nemesis-shapes"), "{m}");
        let m = usage_message(flags(&["--nemesis", "kill", "--nemesis-one-way"]).validate());
        assert!(m.contains("--nemesis-one-way"), "{m}");
        let m = usage_message(flags(&["--nemesis-shapes", "leader"]).validate());
        assert!(m.contains("--nemesis-shapes") && m.contains("none"), "{m}");
        let m =
            usage_message(flags(&["--nemesis", "partition", "--nemesis-delay-ms", "5"]).validate());
        assert!(m.contains("--nemesis-delay-ms"), "{m}");
        let m = usage_message(
            flags(&["--nemesis", "packet", "--nemesis-loss-percent", "150"]).validate(),
        );
        assert!(m.contains("--nemesis-"), "{m}");
        let m =
            usage_message(flags(&["--nemesis", "kill", "--nemesis-interval", "NaN"]).validate());
        assert!(m.contains("--nemesis-interval"), "{m}");
        let m = usage_message(
            flags(&["--nemesis", "partition", "--nemesis-shapes", "ring"]).validate(),
        );
        assert!(m.contains("--nemesis-shapes") && m.contains("ring"), "{m}");
        let m = usage_message(flags(&["--nemesis", "meteor"]).validate());
        assert!(m.contains("--nemesis"), "{m}");
    }

    #[test]
    fn nemesis_suite_cells_keep_only_the_options_their_families_read() {
        let f = flags(&[
            "--nemesis",
            "none,kill,partition",
            "--nemesis-shapes",
            "leader",
            "--nemesis-targets",
            "leader",
        ]);
        let none = f.for_suite_cell("none").unwrap();
        assert!(none.validate().unwrap().is_none());
        let kill = f
            .for_suite_cell("kill")
            .unwrap()
            .validate()
            .unwrap()
            .unwrap();
        assert_eq!(kill.target.to_string(), "leader");
        let part = f
            .for_suite_cell("partition")
            .unwrap()
            .validate()
            .unwrap()
            .unwrap();
        assert_eq!(part.shapes.len(), 1);
        // An option no family of the whole suite reads is still refused.
        let f = flags(&["--nemesis", "none,kill", "--nemesis-shapes", "leader"]);
        assert!(f.for_suite_cell("kill").is_err());
    }

    /// `faultline test --nemesis kill --nemesis-targets n9` on a three-node inventory: refused
    /// with exit 64 by validation, before a run directory exists or any host is contacted.
    #[test]
    fn unknown_target_is_a_usage_error() {
        #[derive(clap::Parser)]
        struct Test {
            #[command(flatten)]
            args: crate::test_cmd::TestArgs,
        }
        let inv = std::env::temp_dir().join(format!("fl-nemesis-target-inv-{}.yaml", std::process::id()));
        std::fs::write(
            &inv,
            "nodes:\n  - {name: n1, host: 10.0.0.1}\n  - {name: n2, host: 10.0.0.2}\n  - {name: n3, host: 10.0.0.3}\n",
        )
        .unwrap();
        let inv = inv.display().to_string();
        for (nemesis, target) in [
            ("kill", "n9"),
            ("pause", "nope"),
            ("kill", "n1,n4"),
            ("packet", "n0"),
        ] {
            let argv = ["faultline", "-i", &inv, "--nemesis", nemesis, "--nemesis-targets", target];
            let err = <Test as clap::Parser>::try_parse_from(argv)
                .unwrap()
                .args
                .validate()
                .expect_err("an unknown target is refused");
            assert_eq!(
                crate::exit::for_error(&err),
                std::process::ExitCode::from(crate::exit::USAGE),
                "{err:#}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("--nemesis-targets")
                    && msg.contains(target.rsplit(',').next().unwrap()),
                "{msg}"
            );
        }
    }
}
