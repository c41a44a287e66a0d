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
use faultline_nemesis::registry::{NemesisPackage, REGISTRY};
use faultline_nemesis::{Applied, Cluster, FaultOptions, NemesisError, Opt, TargetSpec, journal};

use crate::control::{Control, ControlOptions};
use crate::exit::usage;
use crate::nemesis_remote::InventoryCluster;

/// A drill's fault heals itself after this long unless told otherwise.
const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);
/// Past `--for`, the host's own expiry waits this much longer than the drill's heal.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct NemesisArgs {
    /// Inventory file, or the name of a local cluster.
    #[arg(short = 'i', long, global = true)]
    inventory: Option<String>,
    /// The database on the hosts (its layout gives the pidfile kill and pause act on, and
    /// its status who leads): raft, paxos, ...
    #[arg(long, default_value = "raft", global = true)]
    db: String,
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

#[derive(clap::Args, Clone, Debug)]
struct Timing {
    /// Hold the fault this long, then heal (e.g. 30s, 2m, 500ms).
    #[arg(long = "for", value_name = "DURATION")]
    hold: Option<String>,
    /// The host heals the fault on its own after this long (default 1h; with --for, the
    /// hold plus 5s).
    #[arg(long, value_name = "DURATION")]
    expiry: Option<String>,
}

/// A drill, with subcommands derived from the nemesis registry: one per family (its flags
/// are the options the family reads, plus `--for`/`--expiry`), one per family that has an
/// end drill (`start` after kill, `resume` after pause), then `heal` and `status`.
#[derive(Debug)]
enum Drill {
    Fault {
        pkg: &'static NemesisPackage,
        /// The family's options as given (or defaulted), in the package's order.
        values: Vec<(Opt, String)>,
        timing: Timing,
    },
    End {
        pkg: &'static NemesisPackage,
        target: String,
    },
    /// Undo every journaled fault on every host; `all` also sweeps hosts without a journal.
    Heal {
        all: bool,
    },
    Status,
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn option_arg(o: Opt) -> clap::Arg {
    let a = clap::Arg::new(o.name())
        .long(o.name())
        .help(capitalised(o.help()));
    if o.is_switch() {
        return a.action(clap::ArgAction::SetTrue);
    }
    let value_name = match o {
        Opt::Target => "TARGET",
        Opt::Shape => "SHAPE",
        Opt::Lag => "DURATION",
        Opt::DelayMs | Opt::JitterMs => "MS",
        Opt::LossPercent => "PERCENT",
        Opt::OneWay => "BOOL",
    };
    let a = a.action(clap::ArgAction::Set).value_name(value_name);
    match o.drill_default() {
        Some(d) => a.default_value(d),
        None => a,
    }
}

impl clap::Subcommand for Drill {
    fn augment_subcommands(mut cmd: clap::Command) -> clap::Command {
        use clap::Args;
        for p in REGISTRY {
            let mut sub = clap::Command::new(p.name).about(capitalised(p.about));
            for o in p.options {
                sub = sub.arg(option_arg(*o));
            }
            cmd = cmd.subcommand(Timing::augment_args(sub));
            if let Some(end) = &p.end {
                cmd = cmd.subcommand(
                    clap::Command::new(end.verb).about(end.about).arg(
                        clap::Arg::new("target")
                            .long("target")
                            .default_value("all")
                            .help(capitalised(Opt::Target.help())),
                    ),
                );
            }
        }
        cmd.subcommand(
            clap::Command::new("heal")
                .about("Undo every journaled fault on every host")
                .arg(
                    clap::Arg::new("all")
                        .long("all")
                        .action(clap::ArgAction::SetTrue)
                        .help(
                            "Also run every family's sweep (rules, qdiscs, paused node) on \
                             hosts without a journal entry",
                        ),
                ),
        )
        .subcommand(clap::Command::new("status").about("Which faults are active on which hosts"))
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        matches!(name, "heal" | "status")
            || REGISTRY
                .iter()
                .any(|p| p.name == name || p.end.as_ref().is_some_and(|e| e.verb == name))
    }
}

impl clap::FromArgMatches for Drill {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        use clap::error::ErrorKind;
        let Some((name, sub)) = m.subcommand() else {
            return Err(clap::Error::raw(
                ErrorKind::MissingSubcommand,
                "faultline nemesis needs a drill",
            ));
        };
        match name {
            "heal" => return Ok(Drill::Heal { all: sub.get_flag("all") }),
            "status" => return Ok(Drill::Status),
            _ => {}
        }
        for p in REGISTRY {
            if p.name == name {
                let mut values = Vec::new();
                for o in p.options {
                    if o.is_switch() {
                        if sub.get_flag(o.name()) {
                            values.push((*o, "true".to_string()));
                        }
                    } else if let Some(v) = sub.get_one::<String>(o.name()) {
                        values.push((*o, v.clone()));
                    }
                }
                let timing = Timing::from_arg_matches(sub)?;
                return Ok(Drill::Fault {
                    pkg: p,
                    values,
                    timing,
                });
            }
            if p.end.as_ref().is_some_and(|e| e.verb == name) {
                let target = sub
                    .get_one::<String>("target")
                    .cloned()
                    .unwrap_or_else(|| "all".into());
                return Ok(Drill::End { pkg: p, target });
            }
        }
        Err(clap::Error::raw(
            ErrorKind::InvalidSubcommand,
            format!("unknown drill {name:?}"),
        ))
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// Parses `30s`, `2m`, `1h`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    faultline_nemesis::registry::parse_duration(s).map_err(|e| e.to_string())
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

/// Bad input is a usage error naming the drill flag; anything else a harness error.
fn nemesis_err(e: NemesisError) -> anyhow::Error {
    match e {
        NemesisError::Invalid(m) => usage(m),
        NemesisError::Option { opt, message } => usage(format!("--{opt}: {message}")),
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
    let entry = crate::db::lookup(&args.db).ok_or_else(|| {
        usage(format!(
            "--db {:?}: unknown database (known: {})",
            args.db,
            crate::db::names().join(", ")
        ))
    })?;
    let settings = (entry.validate)(&crate::db::DbArgs::default()).map_err(|e| usage(e.to_string()))?;
    // Validate everything that needs no host before connecting, targets against the
    // inventory included.
    let prepared = prepare(&args.action)?;
    check_targets(&args.action, prepared.as_ref(), &inv.node_names())?;
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
            db: (entry.open)(
                &settings,
                &inv,
                &crate::db::OpenOptions {
                    op_timeout: crate::db::STATUS_TIMEOUT,
                },
            ),
            start_command: args.start_command.clone(),
        });
        let r = drill(&*cx, &args.action, prepared, seed, args.json).await;
        control.close().await;
        r
    })
}

/// Options for a fault drill, checked before any connection is made.
#[derive(Debug)]
struct Prepared {
    pkg: &'static NemesisPackage,
    opts: FaultOptions,
    hold: Option<Duration>,
}

fn prepare(action: &Drill) -> anyhow::Result<Option<Prepared>> {
    match action {
        Drill::Fault {
            pkg,
            values,
            timing,
        } => {
            let (hold, expiry) = timing.resolve()?;
            let mut opts = FaultOptions {
                expiry,
                ..Default::default()
            };
            for (o, v) in values {
                o.apply(&mut opts, v)
                    .map_err(|e| usage(format!("--{o}: {e}")))?;
            }
            opts.validate().map_err(nemesis_err)?;
            // A lead phase (the lag of `constrained`) comes before the hold.
            opts.expiry += (pkg.lead_time)(&opts);
            Ok(Some(Prepared { pkg, opts, hold }))
        }
        Drill::End { target, .. } => {
            target.parse::<TargetSpec>().map_err(nemesis_err)?;
            Ok(None)
        }
        Drill::Heal { .. } | Drill::Status => Ok(None),
    }
}

/// Named targets must be in the inventory, and no target or shape may be unsatisfiable at
/// its size: a usage error before anything connects.
fn check_targets(action: &Drill, prepared: Option<&Prepared>, nodes: &[String]) -> anyhow::Result<()> {
    if let Some(p) = prepared {
        p.pkg.check_targets(&p.opts, nodes).map_err(nemesis_err)?;
    }
    if let Drill::End { target, .. } = action {
        let spec: TargetSpec = target.parse().map_err(nemesis_err)?;
        spec.check(nodes).map_err(|e| usage(format!("--target: {e}")))?;
    }
    Ok(())
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
        Drill::End { pkg, target } => {
            let end = pkg.end.as_ref().expect("End drills come from packages with one");
            let spec: TargetSpec = target.parse().map_err(nemesis_err)?;
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            let (nodes, _) = faultline_nemesis::target::resolve_with(&spec, cx, &mut rng)
                .await
                .map_err(nemesis_err)?;
            let report = heal_family(cx, &nodes, pkg.name).await;
            for (node, ids) in &report.healed {
                if !ids.is_empty() {
                    outln!("{node}: healed {}", ids.join(", "));
                }
            }
            let mut errors = report.errors;
            for n in &nodes {
                let script = (end.script)(cx, n);
                match faultline_nemesis::cluster::run_checked(cx, n, end.verb, &script).await {
                    Ok(out) => outln!("{n}: {}", out.stdout.trim()),
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
    let applied = (p.pkg.start)(cx, &p.opts, seed).await.map_err(nemesis_err)?;
    print_applied(&applied, p.opts.expiry, seed);
    if json {
        outln!(
            "{}",
            serde_json::json!({"family": applied.family, "journal": applied.journal_id, "hosts": applied.hosts, "value": applied.description})
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let Some(hold) = p.hold else {
        outln!(
            "the fault stays until `faultline nemesis -i ... heal`; each host undoes it on its own in {}",
            human(p.opts.expiry)
        );
        return Ok(ExitCode::SUCCESS);
    };
    outln!("holding for {} (Ctrl-C heals now)", human(hold));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let (mut int, mut term) = signals;
    tokio::select! {
        _ = tokio::time::sleep(hold) => {}
        _ = int.recv() => outln!("interrupted: healing now"),
        _ = term.recv() => outln!("terminated: healing now"),
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
    outln!(
        "{} applied (journal {}, seed {seed}, expires in {})",
        a.family,
        a.journal_id,
        human(expiry)
    );
    for role in ["leader", "isolated", "hub", "bridge", "far"] {
        if let Some(v) = d.get(role).and_then(|v| v.as_str()) {
            outln!("{role}: {v}");
        }
    }
    if let Some(shape) = d.get("shape").and_then(|s| s.as_str()) {
        outln!(
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
        outln!("{t}");
    } else if let Some(targets) = d.get("targets") {
        outln!(
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
            outln!("{node}: nothing to heal");
        } else {
            outln!("{node}: healed {}", ids.join(", "));
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
                let rules: Vec<String> = s
                    .leftovers
                    .iter()
                    .flat_map(|(family, lines)| {
                        lines.iter().map(move |l| {
                            format!("{family}: {}", l.strip_prefix("-A ").unwrap_or(l))
                        })
                    })
                    .collect();
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
    outln!("{t}");
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

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: NemesisArgs,
    }

    fn drill(argv: &[&str]) -> Drill {
        use clap::Parser;
        let mut v = vec!["faultline", "-i", "inv.yaml"];
        v.extend_from_slice(argv);
        Wrap::try_parse_from(v).unwrap().args.action
    }

    fn is_usage(r: anyhow::Result<impl std::fmt::Debug>) -> String {
        let e = r.expect_err("rejected");
        assert!(e.chain().any(|c| c.is::<crate::exit::UsageError>()), "{e:#}");
        e.to_string()
    }

    #[test]
    fn nemesis_drills_are_derived_from_the_registry() {
        use clap::CommandFactory;
        let cmd = Wrap::command();
        for p in REGISTRY {
            let sub = cmd.find_subcommand(p.name).expect(p.name);
            for o in p.options {
                assert!(sub.get_arguments().any(|a| a.get_long() == Some(o.name())), "{} --{o}", p.name);
            }
            // Only the options the family reads.
            let longs: Vec<&str> = sub.get_arguments().filter_map(|a| a.get_long()).collect();
            for o in Opt::ALL.iter().filter(|o| !p.takes(**o)) {
                assert!(!longs.contains(&o.name()), "{} must not take --{o}", p.name);
            }
            if let Some(e) = &p.end {
                assert!(cmd.find_subcommand(e.verb).is_some());
            }
        }
        assert!(
            <Wrap as clap::Parser>::try_parse_from(["f", "-i", "x", "kill", "--shape", "leader"])
                .is_err()
        );
        let Drill::Fault { pkg, values, .. } = drill(&["packet", "--delay-ms", "70"]) else {
            panic!()
        };
        assert_eq!(pkg.name, "packet");
        assert!(values.contains(&(Opt::DelayMs, "70".to_string())));
        assert!(matches!(drill(&["resume"]), Drill::End { pkg, .. } if pkg.name == "pause"));
        assert!(matches!(drill(&["heal", "--all"]), Drill::Heal { all: true }));
    }

    #[test]
    fn nemesis_bad_drills_are_usage_errors_before_any_connection() {
        assert!(is_usage(prepare(&drill(&["partition", "--shape", "ring"]))).contains("--shape"));
        assert!(is_usage(prepare(&drill(&["kill", "--target", ""]))).contains("--target"));
        is_usage(prepare(&drill(&["pause", "--for", "1x"])));
        is_usage(prepare(&drill(&["packet", "--loss-percent", "150"])));
        is_usage(prepare(&drill(&["packet", "--delay-ms", "soon"])));
        is_usage(prepare(&drill(&["start", "--target", ""])));
        let p = prepare(&drill(&[
            "partition", "--shape", "constrained", "--one-way", "--lag", "2s", "--for", "10s",
        ]))
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
    fn nemesis_drill_targets_are_checked_against_the_inventory() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let check = |argv: &[&str]| {
            let d = drill(argv);
            let p = prepare(&d).unwrap();
            check_targets(&d, p.as_ref(), &nodes)
        };
        assert!(is_usage(check(&["kill", "--target", "n9"])).contains("n9"));
        assert!(is_usage(check(&["pause", "--target", "nope"])).contains("nope"));
        assert!(is_usage(check(&["start", "--target", "n1,n7"])).contains("n7"));
        assert!(is_usage(check(&["partition", "--shape", "constrained"])).contains("5 nodes"));
        check(&["kill", "--target", "n2"]).unwrap();
        check(&["partition", "--shape", "leader"]).unwrap();
        check(&["heal"]).unwrap();
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
