//! The nemesis registry: a family is a file plus one line in [`REGISTRY`].
//!
//! A [`NemesisPackage`] describes itself completely: which [`Opt`]ions it reads (the CLI
//! derives its flags and refuses options no chosen family reads), the presets it answers to,
//! the host tools its scripts need (pre-flight), its start, its heal sweep, its status probe
//! and how reports draw it. Nothing outside the family's own file and its registry line
//! names a family.

use std::time::Duration;

use crate::{Applied, BoxFuture, Cluster, FaultOptions, HostPaths, NemesisError, Result};

/// How reports draw a family's fault windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PlotMeta {
    /// Colour of the shaded window, RGB.
    pub rgb: (u8, u8, u8),
    /// Legend label.
    pub label: &'static str,
}

impl PlotMeta {
    /// `#rrggbb`, for HTML and SVG.
    pub fn css(&self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.rgb.0, self.rgb.1, self.rgb.2)
    }
}

/// One option of [`FaultOptions`] as the command line sets it. A family lists the options it
/// reads; the drill subcommand of a family has exactly those flags, and `faultline test`
/// refuses an option that none of its chosen families reads instead of ignoring it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Opt {
    /// Which nodes: `one`, `minority`, `majority`, `all`, `leader`, `followers`, names.
    Target,
    /// Partition shape (a comma list of shapes in a test run, one per fault period).
    Shape,
    OneWay,
    /// Lead time of the `constrained` shape.
    Lag,
    DelayMs,
    JitterMs,
    LossPercent,
}

impl Opt {
    pub const ALL: [Opt; 7] = [
        Opt::Target,
        Opt::Shape,
        Opt::OneWay,
        Opt::Lag,
        Opt::DelayMs,
        Opt::JitterMs,
        Opt::LossPercent,
    ];

    /// The drill flag (`--target`), and the key of the option in a fault's intent.
    pub fn name(self) -> &'static str {
        match self {
            Opt::Target => "target",
            Opt::Shape => "shape",
            Opt::OneWay => "one-way",
            Opt::Lag => "lag",
            Opt::DelayMs => "delay-ms",
            Opt::JitterMs => "jitter-ms",
            Opt::LossPercent => "loss-percent",
        }
    }

    /// The `faultline test` flag that sets it.
    pub fn test_flag(self) -> &'static str {
        match self {
            Opt::Target => "--nemesis-targets",
            Opt::Shape => "--nemesis-shapes",
            Opt::OneWay => "--nemesis-one-way",
            Opt::Lag => "--nemesis-lag",
            Opt::DelayMs => "--nemesis-delay-ms",
            Opt::JitterMs => "--nemesis-jitter-ms",
            Opt::LossPercent => "--nemesis-loss-percent",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Opt::Target => "one, minority, majority, all, leader, followers, or node names (n1,n3)",
            Opt::Shape => {
                "halves, one, leader, majorities-ring, bridge, quorum-loss, constrained, chained, leader-mute"
            }
            Opt::OneWay => "drop only one direction of each cut",
            Opt::Lag => {
                "for `constrained`: how long the future hub is cut off first so its log lags"
            }
            Opt::DelayMs => "added delay per packet to peers, ms",
            Opt::JitterMs => "delay jitter, ms (at most the delay)",
            Opt::LossPercent => "packets to peers dropped, percent",
        }
    }

    /// A flag without a value.
    pub fn is_switch(self) -> bool {
        self == Opt::OneWay
    }

    /// The drill's default (the [`FaultOptions`] default, spelled as a flag value).
    pub fn drill_default(self) -> Option<&'static str> {
        match self {
            Opt::Target => Some("one"),
            Opt::Shape => Some("halves"),
            Opt::OneWay => None,
            Opt::Lag => Some("5s"),
            Opt::DelayMs => Some("50"),
            Opt::JitterMs => Some("10"),
            Opt::LossPercent => Some("0"),
        }
    }

    /// Sets this option of one fault from its flag value (`true` for a switch).
    pub fn apply(self, opts: &mut FaultOptions, value: &str) -> Result<()> {
        let v = value.trim();
        match self {
            Opt::Target => opts.target = v.parse()?,
            Opt::Shape => opts.shape = v.parse()?,
            Opt::OneWay => opts.one_way = parse_bool(v)?,
            Opt::Lag => opts.lag = parse_duration(v)?,
            Opt::DelayMs => opts.packet.delay_ms = parse_num(self, v)?,
            Opt::JitterMs => opts.packet.jitter_ms = parse_num(self, v)?,
            Opt::LossPercent => opts.packet.loss_percent = parse_num(self, v)?,
        }
        Ok(())
    }

    /// This option's value in `opts`, for a fault's intent in the history.
    pub fn describe(self, opts: &FaultOptions) -> serde_json::Value {
        use serde_json::json;
        match self {
            Opt::Target => json!(opts.target.to_string()),
            Opt::Shape => json!(opts.shape.name()),
            Opt::OneWay => json!(opts.one_way),
            Opt::Lag => json!(opts.lag.as_millis() as u64),
            Opt::DelayMs => json!(opts.packet.delay_ms),
            Opt::JitterMs => json!(opts.packet.jitter_ms),
            Opt::LossPercent => json!(opts.packet.loss_percent),
        }
    }
}

impl std::fmt::Display for Opt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn parse_bool(v: &str) -> Result<bool> {
    match v {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(NemesisError::Invalid(format!("{v:?} is not true or false"))),
    }
}

fn parse_num<T: std::str::FromStr>(opt: Opt, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| NemesisError::Invalid(format!("{opt} {v:?} is not a number")))
}

/// Parses `30s`, `2m`, `1h`, `500ms`, or a bare number of seconds; more than 0, at most 7 days.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = |m: String| NemesisError::Invalid(m);
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| bad(format!("bad duration {s:?}: use e.g. 30s, 2m, 1h, 500ms")))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(bad(format!(
                "bad duration unit in {s:?}: use ms, s, m or h"
            )));
        }
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= 7.0 * 86_400.0) {
        return Err(bad(format!(
            "duration {s:?} must be more than 0 and at most 7 days"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub type StartFn =
    for<'a> fn(&'a dyn Cluster, &'a FaultOptions, u64) -> BoxFuture<'a, Result<Applied>>;

/// A preset name (e.g. `leader-partition`) read as this family with one option set; `None`
/// when the name is not one of the family's presets.
pub type PresetFn = fn(&str) -> Option<(Opt, String)>;

/// A drill that ends this family's faults on chosen nodes (`start` after a kill, `resume`
/// after a pause): heal the family's journals there, then run the idempotent script.
#[derive(Debug)]
pub struct EndDrill {
    pub verb: &'static str,
    pub about: &'static str,
    /// The script for `node` (the cluster gives the start command, the paths the pidfile).
    pub script: fn(&dyn Cluster, &str) -> String,
}

/// A nemesis package: its fault, its options, what it needs on a host, how it heals, how its
/// leftovers are found and how it is drawn. Every fault heals by replaying its journal entry
/// (see [`crate::journal`]); `sweep` is for hosts whose journal was lost.
#[derive(Debug)]
pub struct NemesisPackage {
    pub name: &'static str,
    pub about: &'static str,
    /// The [`FaultOptions`] the start reads (besides the expiry, which every fault has).
    pub options: &'static [Opt],
    pub presets: Option<PresetFn>,
    /// Commands the family's scripts cannot work without, checked in pre-flight.
    pub tools: &'static [&'static str],
    /// Commands the scripts use when present and do without otherwise (saying so on
    /// stderr), e.g. `conntrack`: reported, not required.
    pub tools_optional: &'static [&'static str],
    /// Applies the fault with the given options and per-fault seed.
    pub start: StartFn,
    /// How long the start spends before the fault takes full effect (added to a drill's
    /// expiry so the hold is not cut short).
    pub lead_time: fn(&FaultOptions) -> Duration,
    /// Removes whatever this family may have left on a host, journal or not; succeeds when
    /// there is nothing to remove.
    pub sweep: fn(&HostPaths) -> String,
    /// Prints one line per live leftover of this family on a host (nothing when clean).
    pub status: Option<fn(&HostPaths) -> String>,
    pub end: Option<EndDrill>,
    /// What a test that chooses this family must set up on every host before the nodes
    /// start and remove after they stop: `(setup, teardown)` scripts for one host.
    pub fixture: Option<FixtureFn>,
    /// Changes the database's membership (removes and re-adds nodes): only for a database
    /// that can, which the CLI checks before any host is contacted.
    pub membership: bool,
    pub plot: PlotMeta,
}

/// A family's fixture scripts for one host, or why the cluster cannot have it.
pub type FixtureFn = fn(&dyn Cluster, &str) -> Result<(String, String)>;

impl NemesisPackage {
    /// History `f` of a fault's start.
    pub fn start_f(&self) -> String {
        format!("start-{}", self.name)
    }

    /// History `f` of a fault's heal.
    pub fn stop_f(&self) -> String {
        format!("stop-{}", self.name)
    }

    pub fn takes(&self, opt: Opt) -> bool {
        self.options.contains(&opt)
    }

    /// Checks the options this family reads against the inventory's nodes, before anything
    /// connects: named targets must exist and no option may be unsatisfiable at this size.
    pub fn check_targets(&self, opts: &FaultOptions, nodes: &[String]) -> Result<()> {
        let wrap = |opt: Opt| {
            move |e: NemesisError| NemesisError::Option {
                opt,
                message: e.to_string(),
            }
        };
        if nodes.is_empty() {
            return Err(NemesisError::Invalid("the inventory has no node".into()));
        }
        if self.takes(Opt::Target) {
            opts.target.check(nodes).map_err(wrap(Opt::Target))?;
        }
        if self.takes(Opt::Shape) {
            opts.shape.check(nodes.len()).map_err(wrap(Opt::Shape))?;
        }
        Ok(())
    }

    /// What the history records when a fault of this family is asked for: the options it
    /// reads, as given.
    pub fn intent(&self, opts: &FaultOptions) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for o in self.options {
            m.insert(o.name().replace('-', "_"), o.describe(opts));
        }
        serde_json::Value::Object(m)
    }
}

fn no_lead_time(_: &FaultOptions) -> Duration {
    Duration::ZERO
}

/// What the membership faults' scripts run: the stop, the wipe, the joiner's start.
const MEMBERSHIP_TOOLS: &[&str] = &["kill", "tr", "setsid", "nohup", "find", "cat", "wc", "rm", "mkdir"];

pub static REGISTRY: &[NemesisPackage] = &[
    NemesisPackage {
        name: "kill",
        about: "SIGKILL the node process (by pidfile); heal restarts it",
        options: &[Opt::Target],
        presets: None,
        tools: &["kill", "tr", "setsid", "nohup"],
        tools_optional: &[],
        start: crate::kill::start,
        lead_time: no_lead_time,
        sweep: crate::kill::sweep_script,
        status: None,
        fixture: None,
        membership: false,
        end: Some(EndDrill {
            verb: "start",
            about: "Start the node where it is not running (ends kill faults)",
            script: crate::kill::end_script,
        }),
        plot: PlotMeta {
            rgb: (192, 57, 43),
            label: "kill",
        },
    },
    NemesisPackage {
        name: "pause",
        about: "SIGSTOP the node process (by pidfile); heal sends SIGCONT",
        options: &[Opt::Target],
        presets: None,
        tools: &["kill", "tr"],
        tools_optional: &[],
        start: crate::pause::start,
        lead_time: no_lead_time,
        sweep: crate::pause::sweep_script,
        status: None,
        fixture: None,
        membership: false,
        end: Some(EndDrill {
            verb: "resume",
            about: "SIGCONT the node process (ends pause faults)",
            script: crate::pause::end_script,
        }),
        plot: PlotMeta {
            rgb: (142, 68, 173),
            label: "pause",
        },
    },
    NemesisPackage {
        name: "partition",
        about: "drop traffic between nodes with iptables, in one of several shapes",
        options: &[Opt::Shape, Opt::OneWay, Opt::Lag],
        presets: Some(crate::partition::preset),
        // ip6tables only for IPv6 peers; without conntrack, open flows are cut by the DROP
        // rules alone.
        tools: &["iptables"],
        tools_optional: &["ip6tables", "conntrack"],
        start: crate::partition::start,
        lead_time: crate::partition::lead_time,
        sweep: crate::partition::sweep_script,
        status: Some(crate::partition::status_script),
        end: None,
        fixture: None,
        membership: false,
        plot: PlotMeta {
            rgb: (230, 126, 34),
            label: "partition",
        },
    },
    NemesisPackage {
        name: "packet",
        about: "delay and drop packets between nodes with tc netem",
        options: &[Opt::Target, Opt::DelayMs, Opt::JitterMs, Opt::LossPercent],
        presets: None,
        tools: &["tc", "ip", "unshare"],
        tools_optional: &[],
        start: crate::packet::start,
        lead_time: no_lead_time,
        sweep: crate::packet::sweep_script,
        status: Some(crate::packet::status_script),
        end: None,
        fixture: None,
        membership: false,
        plot: PlotMeta {
            rgb: (41, 128, 185),
            label: "packet delay/loss",
        },
    },
    NemesisPackage {
        name: "bitflip",
        about: "stop the node, flip one random bit of its log or snapshot; heal starts it",
        options: &[Opt::Target],
        presets: None,
        tools: &["kill", "tr", "setsid", "nohup", "od", "dd", "wc", "sed", "grep"],
        tools_optional: &[],
        start: crate::disk::start_bitflip,
        lead_time: no_lead_time,
        sweep: crate::disk::sweep_script,
        status: None,
        end: None,
        fixture: None,
        membership: false,
        plot: PlotMeta {
            rgb: (22, 160, 133),
            label: "bitflip",
        },
    },
    NemesisPackage {
        name: "truncate",
        about: "stop the node, cut a random tail (at most 4 KiB) off its log; heal starts it",
        options: &[Opt::Target],
        presets: None,
        tools: &["kill", "tr", "setsid", "nohup", "truncate", "wc", "tail"],
        tools_optional: &[],
        start: crate::disk::start_truncate,
        lead_time: no_lead_time,
        sweep: crate::disk::sweep_script,
        status: None,
        end: None,
        fixture: None,
        membership: false,
        plot: PlotMeta {
            rgb: (127, 140, 141),
            label: "truncate",
        },
    },
    NemesisPackage {
        name: "wipe",
        about: "stop the node and remove its whole durable state; heal starts it empty",
        options: &[Opt::Target],
        presets: None,
        tools: &["kill", "tr", "setsid", "nohup", "find", "cat", "wc", "rm"],
        tools_optional: &[],
        start: crate::disk::start_wipe,
        lead_time: no_lead_time,
        sweep: crate::disk::sweep_script,
        status: None,
        end: None,
        fixture: None,
        membership: false,
        plot: PlotMeta {
            rgb: (44, 62, 80),
            label: "wipe",
        },
    },
    NemesisPackage {
        name: "member-remove",
        about: "remove the node from the configuration (via the leader), stop it and wipe it; heal starts it fresh to join again",
        options: &[Opt::Target],
        presets: None,
        tools: MEMBERSHIP_TOOLS,
        tools_optional: &[],
        start: crate::membership::start_remove,
        lead_time: no_lead_time,
        sweep: crate::membership::sweep_script,
        status: None,
        end: Some(EndDrill {
            verb: "member-add",
            about: "Start the node as a fresh joiner that asks to be added and promoted (ends member-remove faults)",
            script: crate::membership::end_script,
        }),
        fixture: None,
        membership: true,
        plot: PlotMeta {
            rgb: (22, 160, 133),
            label: "member-remove",
        },
    },
    NemesisPackage {
        name: "member-replace",
        about: "remove the node from the configuration, wipe it and start it as a fresh node that joins and catches up",
        options: &[Opt::Target],
        presets: None,
        tools: MEMBERSHIP_TOOLS,
        tools_optional: &[],
        start: crate::membership::start_replace,
        lead_time: no_lead_time,
        sweep: crate::membership::sweep_script,
        status: None,
        end: None,
        fixture: None,
        membership: true,
        plot: PlotMeta {
            rgb: (39, 174, 96),
            label: "member-replace",
        },
    },
    NemesisPackage {
        name: "lose-unfsynced",
        about: "stop the node and drop every write it had not fsynced (its state on faultline's lazyfs); heal starts it",
        options: &[Opt::Target],
        presets: None,
        tools: &["kill", "tr", "setsid", "nohup", "awk", "umount", "cat", "sed", "cut", "grep"],
        tools_optional: &[],
        start: crate::lazyfs::start,
        lead_time: no_lead_time,
        sweep: crate::lazyfs::sweep_script,
        status: Some(crate::lazyfs::status_script),
        end: None,
        fixture: Some(crate::lazyfs::fixture),
        membership: false,
        plot: PlotMeta {
            rgb: (211, 84, 0),
            label: "lose un-fsynced",
        },
    },
];

pub fn lookup(name: &str) -> Result<&'static NemesisPackage> {
    REGISTRY.iter().find(|p| p.name == name).ok_or_else(|| {
        NemesisError::Invalid(format!(
            "unknown nemesis {name:?} (known: {})",
            REGISTRY
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// A family name or one of a family's presets: the package and the option the preset sets.
pub fn lookup_preset(name: &str) -> Result<(&'static NemesisPackage, Option<(Opt, String)>)> {
    if let Ok(p) = lookup(name) {
        return Ok((p, None));
    }
    for p in REGISTRY {
        if let Some(set) = p.presets.and_then(|f| f(name)) {
            return Ok((p, Some(set)));
        }
    }
    lookup(name).map(|p| (p, None))
}

/// Host tools the given families need, deduplicated, in registry order.
pub fn tools_for<'a>(families: impl IntoIterator<Item = &'a str>) -> Vec<&'static str> {
    let families: Vec<&str> = families.into_iter().collect();
    let mut out: Vec<&'static str> = Vec::new();
    for p in REGISTRY.iter().filter(|p| families.contains(&p.name)) {
        for t in p.tools {
            if !out.contains(t) {
                out.push(t);
            }
        }
    }
    out
}

/// Plot metadata for a history `f` such as `start-partition`; `None` for non-nemesis ops.
pub fn plot_for_f(f: &str) -> Option<PlotMeta> {
    let family = f
        .strip_prefix("start-")
        .or_else(|| f.strip_prefix("stop-"))?;
    REGISTRY.iter().find(|p| p.name == family).map(|p| p.plot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for p in REGISTRY {
            assert_eq!(lookup(p.name).unwrap().name, p.name);
            assert_eq!(REGISTRY.iter().filter(|q| q.name == p.name).count(), 1);
        }
        assert!(
            lookup("flood")
                .unwrap_err()
                .to_string()
                .contains("kill, pause, partition, packet, bitflip, truncate, wipe")
        );
        assert_eq!(plot_for_f("stop-partition").unwrap().label, "partition");
        assert!(plot_for_f("cas").is_none());
        assert_eq!(lookup("kill").unwrap().plot.css(), "#c0392b");
    }

    #[test]
    fn every_drill_default_applies_and_every_option_is_read_by_some_family() {
        for o in Opt::ALL {
            let mut f = FaultOptions::default();
            o.apply(&mut f, o.drill_default().unwrap_or("true"))
                .unwrap();
            assert!(
                REGISTRY.iter().any(|p| p.takes(o)),
                "{o} is read by no family"
            );
            assert!(o.test_flag().starts_with("--nemesis-"));
        }
        assert!(
            Opt::DelayMs
                .apply(&mut FaultOptions::default(), "soon")
                .is_err()
        );
        assert!(Opt::Lag.apply(&mut FaultOptions::default(), "3d").is_err());
    }

    #[test]
    fn presets_resolve_to_their_family_and_option() {
        let (p, set) = lookup_preset("leader-partition").unwrap();
        assert_eq!(p.name, "partition");
        assert_eq!(set, Some((Opt::Shape, "leader".to_string())));
        assert_eq!(lookup_preset("kill").unwrap().1, None);
        assert!(lookup_preset("flood").is_err());
    }

    #[test]
    fn tools_come_from_the_chosen_packages() {
        let t = tools_for(["partition", "packet"]);
        assert!(t.contains(&"iptables") && t.contains(&"tc"));
        assert!(
            lookup("partition")
                .unwrap()
                .tools_optional
                .contains(&"conntrack")
        );
        assert!(!tools_for(["kill"]).contains(&"iptables"));
    }

    #[test]
    fn intent_names_only_the_options_the_family_reads() {
        let i = lookup("partition")
            .unwrap()
            .intent(&FaultOptions::default());
        assert_eq!(i["shape"], "halves");
        assert_eq!(i["one_way"], false);
        assert!(i.get("target").is_none());
        let i = lookup("kill").unwrap().intent(&FaultOptions::default());
        assert_eq!(i, serde_json::json!({"target": "one"}));
    }
}
