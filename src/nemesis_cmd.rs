//! `faultline nemesis -i INVENTORY <fault>`: ad-hoc fault drills on a running cluster.
//!
//! A drill's fault is journaled on each host and carries an expiry there, so it heals
//! itself even if this process dies. With `--for D` the drill waits `D`, heals, and exits
//! (Ctrl-C heals early); without it the fault stays until `heal` (or `start`/`resume`), or
//! until its expiry (`--expiry`, default 1 h), which the output states.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use faultline_nemesis::executor::{HealReport, ProcessState, heal, heal_family, status};
use faultline_nemesis::packet::PacketSpec;
use faultline_nemesis::{
    Applied, Cluster, FaultOptions, NemesisError, Shape, TargetSpec, journal, kill, lookup, pause,
};

use crate::control::{Control, ControlOptions};
use crate::deploy::Layout;
use crate::exit::usage;
use nemesis_remote::InventoryCluster;

#[path = "nemesis_remote.rs"]
pub mod nemesis_remote;

/// A drill's fault heals itself after this long unless told otherwise.
const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);
/// Past `--for`, the host's own expiry waits this much longer than the drill's heal.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct NemesisArgs {
    /// Inventory file, or the name of a local cluster.
    #[arg(short = 'i', long, global = true)]
    inventory: Option<String>,
    /// The nodes' client port, for asking who the leader is.
    #[arg(long, default_value_t = 7000, global = true)]
    client_port: u16,
    /// The node's data directory on the hosts (its pidfile is `<data-dir>/node.pid`).
    #[arg(long, default_value = "/var/lib/faultline/node", global = true)]
    data_dir: String,
    /// Command that starts the node on a host (default: the deployed faultline node).
    #[arg(long, global = true)]
    start_command: Option<String>,
    /// Seed for random choices (targets, halves); default from the clock, printed.
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// Also print the applied fault as one JSON line (`{"family":..,"journal":..,"value":..}`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Drill,
}

#[derive(clap::Args, Clone)]
struct Timing {
    /// Hold the fault this long, then heal (e.g. 30s, 2m, 500ms).
    #[arg(long = "for", value_name = "DURATION")]
    hold: Option<String>,
    /// The host heals the fault on its own after this long (default 1h; with --for, the
    /// hold plus 5s).
    #[arg(long, value_name = "DURATION")]
    expiry: Option<String>,
}

#[derive(clap::Subcommand)]
enum Drill {
    /// Cut the network into a shape with iptables.
    Partition {
        /// halves, one, leader, majorities-ring, bridge, quorum-loss, constrained, chained.
        #[arg(long, default_value = "halves")]
        shape: String,
        /// Drop only one direction of each cut.
        #[arg(long)]
        one_way: bool,
        /// For `constrained`: how long the future hub is cut off first so its log lags.
        #[arg(long, default_value = "5s")]
        lag: String,
        #[command(flatten)]
        timing: Timing,
    },
    /// SIGKILL the node process (by pidfile).
    Kill {
        /// one, minority, majority, all, leader, followers, or node names (n1,n3).
        #[arg(long, default_value = "one")]
        target: String,
        #[command(flatten)]
        timing: Timing,
    },
    /// Start the node where it is not running (ends kill faults).
    Start {
        #[arg(long, default_value = "all")]
        target: String,
    },
    /// SIGSTOP the node process (by pidfile).
    Pause {
        #[arg(long, default_value = "one")]
        target: String,
        #[command(flatten)]
        timing: Timing,
    },
    /// SIGCONT the node process (ends pause faults).
    Resume {
        #[arg(long, default_value = "all")]
        target: String,
    },
    /// Delay and drop packets between nodes (needs tc netem on the hosts).
    Packet {
        #[arg(long, default_value = "one")]
        target: String,
        #[arg(long, default_value_t = 50)]
        delay_ms: u32,
        #[arg(long, default_value_t = 10)]
        jitter_ms: u32,
        #[arg(long, default_value_t = 0.0)]
        loss_percent: f64,
        #[command(flatten)]
        timing: Timing,
    },
    /// Undo every journaled fault on every host.
    Heal {
        /// Also remove faultline's rules and qdiscs and resume the node on hosts without a
        /// journal entry.
        #[arg(long)]
        all: bool,
    },
    /// Which faults are active on which hosts.
    Status,
}

/// Parses `30s`, `2m`, `1h`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: use e.g. 30s, 2m, 1h, 500ms"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= 7.0 * 86_400.0) {
        return Err(format!(
            "duration {s:?} must be more than 0 and at most 7 days"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

impl Timing {
    /// (hold, expiry), validated.
    fn resolve(&self) -> anyhow::Result<(Option<Duration>, Duration)> {
        let hold = self
            .hold
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(usage)?;
        let expiry = match (&self.expiry, hold) {
            (Some(e), _) => parse_duration(e).map_err(usage)?,
            (None, Some(h)) => h + EXPIRY_MARGIN,
            (None, None) => DEFAULT_EXPIRY,
        };
        if let Some(h) = hold
            && expiry < h
        {
            return Err(usage(format!(
                "--expiry {} is shorter than --for {}",
                human(expiry),
                human(h)
            )));
        }
        Ok((hold, expiry))
    }
}

fn nemesis_err(e: NemesisError) -> anyhow::Error {
    match e {
        NemesisError::Invalid(m) => usage(m),
        other => anyhow::Error::new(other),
    }
}

pub fn run(args: NemesisArgs) -> anyhow::Result<ExitCode> {
    let inv_arg = args
        .inventory
        .clone()
        .ok_or_else(|| usage("faultline nemesis needs -i INVENTORY"))?;
    let inv = crate::inventory::resolve_cli(&inv_arg)?;
    let seed = args
        .seed
        .unwrap_or_else(|| journal::now_unix_ms() ^ u64::from(std::process::id()));
    let layout = Layout {
        data_dir: args.data_dir.clone(),
        client_port: args.client_port,
        ..Layout::node()
    };
    // Validate everything that needs no host before connecting.
    let prepared = prepare(&args.action)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let control = Control::connect(&inv, &ControlOptions::default())
            .await
            .context("connecting to the hosts")?;
        let cx = Arc::new(InventoryCluster {
            control: control.clone(),
            db: crate::db::node::BundledNode::at(&inv, layout),
            start_command: args.start_command.clone(),
        });
        let r = drill(&*cx, &args.action, prepared, seed, args.json).await;
        control.close().await;
        r
    })
}

/// Options for a fault drill, checked before any connection is made.
struct Prepared {
    family: &'static str,
    opts: FaultOptions,
    hold: Option<Duration>,
}

fn prepare(action: &Drill) -> anyhow::Result<Option<Prepared>> {
    let target = |t: &str| t.parse::<TargetSpec>().map_err(nemesis_err);
    let p = match action {
        Drill::Partition {
            shape,
            one_way,
            lag,
            timing,
        } => {
            let (hold, expiry) = timing.resolve()?;
            let shape: Shape = shape.parse().map_err(nemesis_err)?;
            let lag = parse_duration(lag).map_err(usage)?;
            Prepared {
                family: "partition",
                // The lag phase of `constrained` comes before the hold.
                opts: FaultOptions {
                    shape,
                    one_way: *one_way,
                    expiry: if shape == Shape::Constrained {
                        expiry + lag
                    } else {
                        expiry
                    },
                    lag,
                    ..Default::default()
                },
                hold,
            }
        }
        Drill::Kill { target: t, timing } | Drill::Pause { target: t, timing } => {
            let (hold, expiry) = timing.resolve()?;
            let family = if matches!(action, Drill::Kill { .. }) {
                "kill"
            } else {
                "pause"
            };
            Prepared {
                family,
                opts: FaultOptions {
                    target: target(t)?,
                    expiry,
                    ..Default::default()
                },
                hold,
            }
        }
        Drill::Packet {
            target: t,
            delay_ms,
            jitter_ms,
            loss_percent,
            timing,
        } => {
            let (hold, expiry) = timing.resolve()?;
            let packet = PacketSpec {
                delay_ms: *delay_ms,
                jitter_ms: *jitter_ms,
                loss_percent: *loss_percent,
            };
            packet.validate().map_err(nemesis_err)?;
            Prepared {
                family: "packet",
                opts: FaultOptions {
                    target: target(t)?,
                    expiry,
                    packet,
                    ..Default::default()
                },
                hold,
            }
        }
        Drill::Start { target: t } | Drill::Resume { target: t } => {
            target(t)?;
            return Ok(None);
        }
        Drill::Heal { .. } | Drill::Status => return Ok(None),
    };
    Ok(Some(p))
}

async fn drill(
    cx: &dyn Cluster,
    action: &Drill,
    prepared: Option<Prepared>,
    seed: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(p) = prepared {
        return fault(cx, p, seed, json).await;
    }
    match action {
        Drill::Heal { all } => {
            let report = heal(cx, *all).await;
            print_heal(&report);
            finish_heal(report)
        }
        Drill::Status => print_status(cx).await,
        Drill::Start { target } | Drill::Resume { target } => {
            let is_start = matches!(action, Drill::Start { .. });
            let spec: TargetSpec = target.parse().map_err(nemesis_err)?;
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            let (nodes, _) = faultline_nemesis::target::resolve_with(&spec, cx, &mut rng)
                .await
                .map_err(nemesis_err)?;
            let family = if is_start { "kill" } else { "pause" };
            let report = heal_family(cx, &nodes, family).await;
            for (node, ids) in &report.healed {
                if !ids.is_empty() {
                    println!("{node}: healed {}", ids.join(", "));
                }
            }
            let pidfile = cx.paths().pidfile;
            let mut errors = report.errors;
            for n in &nodes {
                let script = if is_start {
                    kill::start_script(&pidfile, &cx.start_command(n))
                } else {
                    pause::resume_script(&pidfile)
                };
                match faultline_nemesis::cluster::run_checked(
                    cx,
                    n,
                    if is_start { "start" } else { "resume" },
                    &script,
                )
                .await
                {
                    Ok(out) => println!("{n}: {}", out.stdout.trim()),
                    Err(e) => errors.push(e),
                }
            }
            finish_heal(HealReport {
                healed: report.healed,
                errors,
            })
        }
        _ => unreachable!("fault drills are prepared"),
    }
}

fn finish_heal(report: HealReport) -> anyhow::Result<ExitCode> {
    if report.errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let msgs: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    anyhow::bail!("heal incomplete: {}", msgs.join("; "))
}

async fn fault(cx: &dyn Cluster, p: Prepared, seed: u64, json: bool) -> anyhow::Result<ExitCode> {
    // Installed before the fault, so an interrupt at any point still leads to the heal.
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
    );
    let pkg = lookup(p.family).map_err(nemesis_err)?;
    let applied = (pkg.start)(cx, &p.opts, seed).await.map_err(nemesis_err)?;
    print_applied(&applied, p.opts.expiry, seed);
    if json {
        println!(
            "{}",
            serde_json::json!({"family": applied.family, "journal": applied.journal_id, "hosts": applied.hosts, "value": applied.description})
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let Some(hold) = p.hold else {
        println!(
            "the fault stays until `faultline nemesis -i ... heal`; each host undoes it on its own in {}",
            human(p.opts.expiry)
        );
        return Ok(ExitCode::SUCCESS);
    };
    println!("holding for {} (Ctrl-C heals now)", human(hold));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let (mut int, mut term) = signals;
    tokio::select! {
        _ = tokio::time::sleep(hold) => {}
        _ = int.recv() => println!("interrupted: healing now"),
        _ = term.recv() => println!("terminated: healing now"),
    }
    let (healed, errors) = journal::heal_on(
        cx,
        &applied.hosts,
        &journal::Select::Id(applied.journal_id.clone()),
    )
    .await;
    let report = HealReport { healed, errors };
    print_heal(&report);
    finish_heal(report)
}

fn print_applied(a: &Applied, expiry: Duration, seed: u64) {
    let d = &a.description;
    println!(
        "{} applied (journal {}, seed {seed}, expires in {})",
        a.family,
        a.journal_id,
        human(expiry)
    );
    for role in ["leader", "isolated", "hub", "bridge", "far"] {
        if let Some(v) = d.get(role).and_then(|v| v.as_str()) {
            println!("{role}: {v}");
        }
    }
    if let Some(shape) = d.get("shape").and_then(|s| s.as_str()) {
        println!(
            "shape: {shape}{}",
            if d["one_way"] == true {
                " (one-way)"
            } else {
                ""
            }
        );
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_header(vec!["node", "drops packets from"]);
        if let Some(g) = d["grudge"].as_object() {
            for (node, peers) in g {
                let peers: Vec<&str> = peers
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                    .unwrap_or_default();
                t.add_row(vec![node.clone(), peers.join(", ")]);
            }
        }
        println!("{t}");
    } else if let Some(targets) = d.get("targets") {
        println!(
            "targets: {}",
            targets
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
}

fn print_heal(r: &HealReport) {
    for (node, ids) in &r.healed {
        if ids.is_empty() {
            println!("{node}: nothing to heal");
        } else {
            println!("{node}: healed {}", ids.join(", "));
        }
    }
    for e in &r.errors {
        eprintln!("heal error: {e}");
    }
}

async fn print_status(cx: &dyn Cluster) -> anyhow::Result<ExitCode> {
    let now = journal::now_unix_ms();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "node",
        "node process",
        "faultline rules",
        "active faults (journal)",
    ]);
    let mut unreachable = Vec::new();
    for (node, st) in status(cx).await {
        match st {
            Ok(s) => {
                let process = match s.process {
                    ProcessState::Running(p) => format!("running ({p})"),
                    ProcessState::Stopped(p) => format!("STOPPED ({p})"),
                    ProcessState::Dead(p) => format!("dead ({p})"),
                    ProcessState::NoPidfile => "no pidfile".into(),
                };
                let mut rules: Vec<String> = s
                    .rules
                    .iter()
                    .filter(|r| r.starts_with("-A "))
                    .map(|r| r[3..].to_string())
                    .collect();
                if s.qdisc {
                    rules.push("netem qdisc".into());
                }
                let faults: Vec<String> = s
                    .journal
                    .iter()
                    .map(|e| match e {
                        Ok(e) => format!(
                            "{} {} (expires in {})",
                            e.family,
                            e.id,
                            human(Duration::from_millis(e.expires_unix_ms.saturating_sub(now)))
                        ),
                        Err(msg) => msg.clone(),
                    })
                    .collect();
                t.add_row(vec![
                    node,
                    process,
                    if rules.is_empty() {
                        "-".into()
                    } else {
                        rules.join("\n")
                    },
                    if faults.is_empty() {
                        "-".into()
                    } else {
                        faults.join("\n")
                    },
                ]);
            }
            Err(e) => {
                t.add_row(vec![node, "unreachable".into(), "?".into(), e.to_string()]);
                unreachable.push(e.to_string());
            }
        }
    }
    println!("{t}");
    if !unreachable.is_empty() {
        anyhow::bail!("status incomplete: {}", unreachable.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3d").unwrap_err().contains("unit"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn nemesis_bad_drills_are_usage_errors_before_any_connection() {
        let is_usage = |d: Drill| {
            let e = prepare(&d).err().expect("rejected");
            e.chain().any(|c| c.is::<crate::exit::UsageError>())
        };
        let timing = Timing {
            hold: None,
            expiry: None,
        };
        assert!(is_usage(Drill::Partition {
            shape: "ring".into(),
            one_way: false,
            lag: "5s".into(),
            timing: timing.clone()
        }));
        assert!(is_usage(Drill::Kill {
            target: "".into(),
            timing: timing.clone()
        }));
        assert!(is_usage(Drill::Pause {
            target: "one".into(),
            timing: Timing {
                hold: Some("1x".into()),
                expiry: None
            }
        }));
        assert!(is_usage(Drill::Packet {
            target: "one".into(),
            delay_ms: 10,
            jitter_ms: 0,
            loss_percent: 150.0,
            timing: timing.clone()
        }));
        let p = prepare(&Drill::Partition {
            shape: "constrained".into(),
            one_way: true,
            lag: "2s".into(),
            timing: Timing {
                hold: Some("10s".into()),
                expiry: None,
            },
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            p.opts.expiry,
            Duration::from_secs(17),
            "hold + margin + lag"
        );
        assert!(p.opts.one_way);
    }

    #[test]
    fn nemesis_expiry_defaults_follow_the_hold() {
        let t = Timing {
            hold: Some("10s".into()),
            expiry: None,
        };
        assert_eq!(
            t.resolve().unwrap(),
            (Some(Duration::from_secs(10)), Duration::from_secs(15))
        );
        let t = Timing {
            hold: None,
            expiry: None,
        };
        assert_eq!(t.resolve().unwrap(), (None, DEFAULT_EXPIRY));
        let t = Timing {
            hold: Some("10s".into()),
            expiry: Some("5s".into()),
        };
        assert!(t.resolve().is_err());
    }
}
