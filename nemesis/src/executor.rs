//! Running faults: the [`Executor`] a test run spawns, plus [`heal`] and [`status`] that the
//! CLI and the runner share.

use std::collections::BTreeMap;
use std::sync::Arc;

use faultline_history::{Event, EventType, Process};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, HostPaths, run_all};
use crate::journal::{self, Entry, Select, heal_on};
use crate::registry::{REGISTRY, lookup};
use crate::schedule::{Action, NemesisConfig, Schedule};
use crate::script::{ALIVE_FN, quote};
use crate::{Applied, NemesisError, Result};

/// Applies a [`Schedule`] to a cluster and reports every fault and heal as history events.
pub struct Executor {
    cluster: Arc<dyn Cluster>,
    config: NemesisConfig,
    seed: u64,
}

/// What a run of the executor did. A fault is `planned` when the schedule asks for it,
/// then either `applied` or `failed`; a failed fault never took effect, so the history has
/// no fault window for it and the run cannot vouch for the system under that fault.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub faults_planned: usize,
    pub faults_applied: usize,
    pub faults_failed: usize,
    pub heals: usize,
    pub heal_errors: Vec<String>,
}

impl Summary {
    /// The summary as `results.json` stats keep it: `faults` (planned, applied, failed),
    /// `faults-failed`, `heals`, `heal-errors`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "faults": {
                "planned": self.faults_planned,
                "applied": self.faults_applied,
                "failed": self.faults_failed,
            },
            "faults-started": self.faults_applied,
            "faults-failed": self.faults_failed,
            "heals": self.heals,
            "heal-errors": self.heal_errors,
        })
    }
}

/// Where the executor's events go. Sending waits for room (backpressure): an event is never
/// dropped, because a lost start or stop silently corrupts fault windows.
pub type EventSender = tokio::sync::mpsc::Sender<Event>;

async fn send(events: &EventSender, e: Event) {
    if let Err(e) = events.send(e).await {
        // Only when the recorder is gone, i.e. the run is being torn down.
        tracing::error!(f = %e.0.f, "nemesis event after the history closed; not recorded");
    }
}

fn event(run_start: Instant, kind: EventType, f: String, value: serde_json::Value) -> Event {
    Event {
        index: None,
        time: run_start.elapsed().as_nanos() as u64,
        process: Process::nemesis(),
        kind,
        f,
        key: None,
        value,
        error: None,
        node: None,
    }
}

impl Executor {
    pub fn new(cluster: Arc<dyn Cluster>, config: NemesisConfig, seed: u64) -> Self {
        Executor {
            cluster,
            config,
            seed,
        }
    }

    /// Runs until `cancel` fires (or the schedule's step bound), then heals every active fault
    /// and replays any journal left on any host before returning. `events` receives each
    /// event as it happens, `time` relative to `run_start`, `index` unset; a full queue
    /// holds the nemesis back rather than losing the event.
    pub async fn run(
        self,
        run_start: Instant,
        cancel: CancellationToken,
        events: EventSender,
    ) -> Summary {
        let cx: &dyn Cluster = &*self.cluster;
        let mut summary = Summary::default();
        // Each active fault with when it took effect and its scheduled length.
        let mut active: Vec<(Applied, Instant, std::time::Duration)> = Vec::new();
        for step in Schedule::new(&self.config, self.seed) {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(run_start + step.at) => {}
            }
            match step.action {
                Action::Start {
                    family,
                    seed,
                    hold,
                    shape,
                } => {
                    let Ok(pkg) = lookup(&family) else { continue };
                    let opts = self.config.options(shape, hold);
                    let intent = pkg.intent(&opts);
                    summary.faults_planned += 1;
                    send(
                        &events,
                        event(run_start, EventType::Invoke, pkg.start_f(), intent.clone()),
                    )
                    .await;
                    match (pkg.start)(cx, &opts, seed).await {
                        Ok(applied) => {
                            let mut ev = event(
                                run_start,
                                EventType::Info,
                                pkg.start_f(),
                                applied.description.clone(),
                            );
                            ev.node = applied.description.get("targets").cloned();
                            send(&events, ev).await;
                            summary.faults_applied += 1;
                            active.push((applied, Instant::now(), hold));
                        }
                        Err(e) => {
                            tracing::warn!(family = %family, error = %e, "fault not applied");
                            let mut ev = event(run_start, EventType::Info, pkg.start_f(), intent);
                            ev.error = Some(e.to_string());
                            send(&events, ev).await;
                            summary.faults_failed += 1;
                        }
                    }
                }
                Action::Stop { family } => {
                    let Some(pos) = active.iter().position(|(a, _, _)| a.family == family) else {
                        continue;
                    };
                    // A fault that took long to apply (a lag phase, slow hosts) still gets
                    // its full scheduled length.
                    let (_, applied_at, hold) = active[pos];
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep_until(applied_at + hold) => {}
                    }
                    let (a, _, _) = active.remove(pos);
                    stop_one(cx, run_start, &a, &events, &mut summary).await;
                }
            }
        }
        while let Some((a, _, _)) = active.pop() {
            stop_one(cx, run_start, &a, &events, &mut summary).await;
        }
        // Faults only: the run's fixtures outlive its faults (the runner removes them once
        // the nodes are stopped).
        let (_, errors) = heal_on(cx, &cx.nodes(), &Select::All).await;
        for e in errors {
            summary.heal_errors.push(e.to_string());
        }
        summary
    }
}

async fn stop_one(
    cx: &dyn Cluster,
    run_start: Instant,
    a: &Applied,
    events: &EventSender,
    summary: &mut Summary,
) {
    let f = format!("stop-{}", a.family);
    let value = json!({"journal": a.journal_id, "hosts": a.hosts});
    send(
        events,
        event(run_start, EventType::Invoke, f.clone(), value.clone()),
    )
    .await;
    let (_, errors) = heal_on(cx, &a.hosts, &Select::Id(a.journal_id.clone())).await;
    let mut ev = event(run_start, EventType::Info, f, value);
    ev.node = Some(json!(a.hosts));
    if !errors.is_empty() {
        let msg = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(error = %msg, "heal failed");
        ev.error = Some(msg.clone());
        summary.heal_errors.push(msg);
    }
    summary.heals += 1;
    send(events, ev).await;
}

/// What a heal did.
#[derive(Debug, Default)]
pub struct HealReport {
    /// Per node, the journal entries replayed.
    pub healed: Vec<(String, Vec<String>)>,
    pub errors: Vec<NemesisError>,
}

/// Replays every journal on every node. With `sweep`, also runs every package's sweep on
/// every node, journal or not (faultline's chains and qdisc go, the node process is
/// resumed) — for hosts whose journal directory was lost. Healing a healed cluster succeeds.
pub async fn heal(cx: &dyn Cluster, sweep: bool) -> HealReport {
    let nodes = cx.nodes();
    let (mut healed, mut errors) = heal_on(cx, &nodes, &Select::All).await;
    // Fixtures after faults: a fault's undo may need the fixture (a node restarted on its
    // mount), and the fixture's undo then stops, syncs and restarts that node cleanly.
    let f = heal_fixtures(cx).await;
    healed.extend(f.healed);
    errors.extend(f.errors);
    if sweep {
        let paths = cx.paths();
        // Each sweep in its own subshell: one that exits early does not skip the others.
        let script: String = REGISTRY
            .iter()
            .map(|p| (p.sweep)(&paths))
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!("(\n{s})\n"))
            .collect();
        for (_, r) in run_all(
            cx,
            "heal sweep",
            nodes.iter().map(|n| (n.clone(), script.clone())).collect(),
        )
        .await
        {
            if let Err(e) = r {
                errors.push(e);
            }
        }
    }
    HealReport { healed, errors }
}

/// Replays the fixture journal on every node (every fixture of every family).
pub async fn heal_fixtures(cx: &dyn Cluster) -> HealReport {
    let (healed, errors) = journal::heal_in(cx, &cx.paths().fixture_dir(), &cx.nodes(), &Select::All).await;
    HealReport { healed, errors }
}

/// Sets up on every node the fixtures of the chosen families (those that have one), each
/// journaled with `expiry` in the fixture journal, so a controller that dies leaves nothing
/// behind for longer than that. All or nothing: a host that fails has every fixture healed.
pub async fn setup_fixtures(cx: &dyn Cluster, families: &[String], expiry: std::time::Duration) -> Result<Vec<String>> {
    let dir = cx.paths().fixture_dir();
    let mut set_up = Vec::new();
    for name in families {
        let pkg = crate::registry::lookup(name)?;
        let Some(fixture) = pkg.fixture else { continue };
        let mut hosts = Vec::new();
        for node in cx.nodes() {
            let (apply, undo) = fixture(cx, &node)?;
            hosts.push(journal::HostFault { node, apply, undo });
        }
        let mut rng = rand::rng();
        let id = journal::new_id(pkg.name, &mut rng);
        let description = json!({"fixture": pkg.name});
        if let Err(e) = journal::apply_journaled_in(cx, &dir, pkg.name, &id, expiry, &description, hosts).await {
            let _ = heal_fixtures(cx).await;
            return Err(e);
        }
        set_up.push(pkg.name.to_string());
    }
    Ok(set_up)
}

/// Heals only one family's journals on the given nodes (`resume` heals pauses, `start` heals
/// kills).
pub async fn heal_family(cx: &dyn Cluster, nodes: &[String], family: &str) -> HealReport {
    let (healed, errors) = heal_on(cx, nodes, &Select::Family(family.to_string())).await;
    HealReport { healed, errors }
}

/// The node process as seen through its pidfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    Running(u32),
    Stopped(u32),
    Dead(u32),
    NoPidfile,
}

/// Faults active on one host, from its journal and its live state.
#[derive(Debug, Clone)]
pub struct HostStatus {
    pub node: String,
    pub journal: Vec<std::result::Result<Entry, String>>,
    pub process: ProcessState,
    /// Per family with a status probe, the live leftovers it found (rules, qdiscs), one line
    /// each; empty when the family left nothing.
    pub leftovers: BTreeMap<String, Vec<String>>,
}

impl HostStatus {
    pub fn is_clean(&self) -> bool {
        self.journal.is_empty()
            && self.leftovers.values().all(Vec::is_empty)
            && !matches!(self.process, ProcessState::Stopped(_))
    }

    /// One family's leftovers.
    pub fn leftovers_of(&self, family: &str) -> &[String] {
        self.leftovers.get(family).map_or(&[], Vec::as_slice)
    }
}

/// Sections `journal`, `process`, then `family <name>` for each package with a status probe.
pub fn status_script(paths: &HostPaths) -> String {
    let mut s = format!(
        r#"echo "== journal"
{list}echo "== process"
{ALIVE_FN}pf={pf}
pid=$(tr -d ' \n' < "$pf" 2>/dev/null || true)
case "$pid" in
  ''|*[!0-9]*) echo "none" ;;
  *) if alive "$pid"; then st=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1); case "$st" in T|t) echo "stopped $pid" ;; *) echo "running $pid" ;; esac; else echo "dead $pid"; fi ;;
esac
"#,
        list = journal::list_script(&paths.journal_dir),
        pf = quote(&paths.pidfile),
    );
    for p in REGISTRY {
        if let Some(probe) = p.status {
            s.push_str(&format!("echo \"== family {}\"\n(\n{})\n", p.name, probe(paths)));
        }
    }
    s
}

pub fn parse_status(node: &str, stdout: &str) -> HostStatus {
    let mut sections: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut cur = "";
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            cur = name.trim();
            sections.entry(cur).or_default();
        } else if !cur.is_empty() && !line.trim().is_empty() {
            sections.entry(cur).or_default().push(line);
        }
    }
    let get = |k: &str| sections.get(k).cloned().unwrap_or_default();
    let process = match get("process")
        .first()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
    {
        Some(w) if w.len() == 2 => {
            let pid = w[1].parse().unwrap_or(0);
            match w[0] {
                "running" => ProcessState::Running(pid),
                "stopped" => ProcessState::Stopped(pid),
                _ => ProcessState::Dead(pid),
            }
        }
        _ => ProcessState::NoPidfile,
    };
    let leftovers = sections
        .iter()
        .filter_map(|(k, v)| {
            let family = k.strip_prefix("family ")?;
            Some((
                family.to_string(),
                v.iter().map(|l| l.to_string()).collect(),
            ))
        })
        .collect();
    HostStatus {
        node: node.to_string(),
        journal: journal::parse_listing(&get("journal").join("\n")),
        process,
        leftovers,
    }
}

/// Every node's faults. A node that cannot be reached is reported as an error for that node.
pub async fn status(cx: &dyn Cluster) -> Vec<(String, Result<HostStatus>)> {
    let script = status_script(&cx.paths());
    let nodes = cx.nodes();
    run_all(
        cx,
        "status",
        nodes.iter().map(|n| (n.clone(), script.clone())).collect(),
    )
    .await
    .into_iter()
    .map(|(n, r)| {
        let st = r.map(|o| parse_status(&n, &o.stdout));
        (n, st)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeCluster;
    use crate::schedule::Schedule;
    use crate::{FaultOptions, Shape, TargetSpec};
    use std::sync::Mutex;
    use std::time::Duration;

    type Collected = Arc<Mutex<Vec<Event>>>;

    /// Runs `exec` with a one-slot queue drained into a vector, as the runner's recorder is.
    fn run_collecting(
        exec: Executor,
        cancel: &CancellationToken,
    ) -> (Collected, tokio::task::JoinHandle<Summary>) {
        let events: Collected = Default::default();
        let sink = events.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let drain = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                sink.lock().unwrap().push(e);
            }
        });
        let c2 = cancel.clone();
        let task = tokio::spawn(async move {
            let s = exec.run(Instant::now(), c2, tx).await;
            drain.await.unwrap();
            s
        });
        (events, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fault_is_counted_and_recorded_with_its_error() {
        let mut fake = FakeCluster::new(3);
        fake.failing = vec!["n1".into(), "n2".into(), "n3".into()];
        let fake = Arc::new(fake);
        let config = NemesisConfig::from_flags("kill", 1.0, Some("all"), None, false).unwrap();
        let cancel = CancellationToken::new();
        let (events, task) = run_collecting(Executor::new(fake, config, 5), &cancel);
        tokio::time::sleep(Duration::from_secs(20)).await;
        cancel.cancel();
        let summary = task.await.unwrap();
        assert!(summary.faults_planned >= 3, "{summary:?}");
        assert_eq!(summary.faults_failed, summary.faults_planned);
        assert_eq!(summary.faults_applied, 0);
        assert_eq!(summary.heals, 0);
        let json = summary.to_json();
        assert_eq!(json["faults"]["failed"], summary.faults_failed);
        assert_eq!(json["faults-failed"], summary.faults_failed);
        let events = events.lock().unwrap().clone();
        let failed: Vec<&Event> = events
            .iter()
            .filter(|e| e.f == "start-kill" && e.kind == EventType::Info)
            .collect();
        assert_eq!(failed.len(), summary.faults_failed);
        assert!(failed.iter().all(|e| e.error.is_some()));
        assert!(
            faultline_checkers::recovery::fault_windows(&events).is_empty(),
            "a fault that never took effect has no window"
        );
        let check = faultline_checkers::recovery::faults_check(&events).unwrap();
        assert_eq!(check.valid, faultline_checkers::Validity::Unknown);
        assert_eq!(check.details["faults"]["failed"], summary.faults_failed);
        assert!(check.details["errors"][0].as_str().unwrap().contains("n1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_whose_faults_all_applied_passes_the_faults_check() {
        let fake = Arc::new(FakeCluster::new(3));
        let config = NemesisConfig::from_flags("kill", 1.0, None, None, false).unwrap();
        let cancel = CancellationToken::new();
        let (events, task) = run_collecting(Executor::new(fake, config, 5), &cancel);
        tokio::time::sleep(Duration::from_secs(20)).await;
        cancel.cancel();
        task.await.unwrap();
        let events = events.lock().unwrap().clone();
        let check = faultline_checkers::recovery::faults_check(&events).unwrap();
        assert_eq!(check.valid, faultline_checkers::Validity::Valid, "{check:?}");
        assert!(faultline_checkers::recovery::faults_check(&[]).is_none(), "no nemesis, no check");
    }

    #[tokio::test(start_paused = true)]
    async fn faults_and_heals_become_history_events_and_cancel_heals_everything() {
        let fake = Arc::new(FakeCluster::new(5));
        let config =
            NemesisConfig::from_flags("partition,kill", 10.0, Some("one"), None, false).unwrap();
        let cancel = CancellationToken::new();
        let (events, task) = run_collecting(Executor::new(fake.clone(), config, 99), &cancel);
        tokio::time::sleep(Duration::from_secs(95)).await;
        cancel.cancel();
        let summary = task.await.unwrap();
        let events = events.lock().unwrap().clone();
        assert!(summary.faults_applied >= 3, "{summary:?}");
        assert_eq!(summary.faults_applied, summary.heals);
        assert_eq!(summary.faults_planned, summary.faults_applied);
        assert!(events.iter().all(|e| e.process.is_nemesis()));
        // Each start and stop is an invoke followed by its info.
        for pair in events.chunks(2) {
            assert_eq!(pair[0].kind, EventType::Invoke);
            assert_eq!(pair[1].kind, EventType::Info);
            assert_eq!(pair[0].f, pair[1].f);
            assert!(pair[0].time <= pair[1].time);
        }
        let starts = events
            .iter()
            .filter(|e| e.f.starts_with("start-") && e.kind == EventType::Info)
            .count();
        let stops = events
            .iter()
            .filter(|e| e.f.starts_with("stop-") && e.kind == EventType::Info)
            .count();
        assert_eq!(
            starts, stops,
            "every fault is healed, the last one on cancellation"
        );
        let part = events
            .iter()
            .find(|e| e.f == "start-partition" && e.kind == EventType::Info)
            .expect("a partition ran");
        assert!(part.value["grudge"].is_object());
        assert!(part.value["shape"].is_string());
        // The final sweep replays journals on every node.
        for n in &fake.nodes {
            assert!(fake.count(n, "healed $id") >= 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_fault_is_still_held_for_its_scheduled_length() {
        let mut fake = FakeCluster::new(5);
        fake.leader = Some("n1".into());
        let fake = Arc::new(fake);
        // Constrained spends its 5 s lag phase before the fault takes effect.
        let config =
            NemesisConfig::from_flags("partition", 10.0, None, Some("constrained"), false).unwrap();
        let holds: Vec<Duration> = Schedule::new(&config, 3)
            .take(12)
            .filter_map(|s| match s.action {
                Action::Start { hold, .. } => Some(hold),
                _ => None,
            })
            .collect();
        let cancel = CancellationToken::new();
        let (events, task) = run_collecting(Executor::new(fake.clone(), config, 3), &cancel);
        tokio::time::sleep(Duration::from_secs(120)).await;
        cancel.cancel();
        task.await.unwrap();
        let events = events.lock().unwrap().clone();
        let starts: Vec<u64> = events
            .iter()
            .filter(|e| e.f == "start-partition" && e.kind == EventType::Info)
            .map(|e| e.time)
            .collect();
        let stops: Vec<u64> = events
            .iter()
            .filter(|e| e.f == "stop-partition" && e.kind == EventType::Invoke)
            .map(|e| e.time)
            .collect();
        assert!(starts.len() >= 3, "{starts:?}");
        for (i, (a, b)) in starts.iter().zip(&stops).enumerate().take(starts.len() - 1) {
            assert!(
                Duration::from_nanos(b - a) >= holds[i],
                "fault {i} held {:?}, scheduled {:?}",
                Duration::from_nanos(b - a),
                holds[i]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fault_that_fails_on_one_host_is_healed_everywhere() {
        let mut fake = FakeCluster::new(3);
        fake.failing = vec!["n2".into()];
        let opts = FaultOptions {
            shape: Shape::Halves,
            ..Default::default()
        };
        let err = crate::partition::start(&fake, &opts, 1).await.unwrap_err();
        assert!(err.to_string().contains("n2"), "{err}");
        for n in ["n1", "n3"] {
            assert_eq!(fake.count(n, "FAULTLINE_UNDO_EOF"), 1, "journaled first");
            assert_eq!(fake.count(n, "healed $id"), 1, "then healed");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn leader_targets_ask_the_cluster() {
        let mut fake = FakeCluster::new(3);
        fake.leader = Some("n3".into());
        let opts = FaultOptions {
            target: TargetSpec::Leader,
            ..Default::default()
        };
        let a = crate::kill::start(&fake, &opts, 5).await.unwrap();
        assert_eq!(a.hosts, vec!["n3"]);
        assert_eq!(a.description["leader"], json!("n3"));
        let s = fake.scripts();
        assert_eq!(s.len(), 1);
        assert!(s[0].1.contains("kill -KILL"));
        assert!(
            s[0].1
                .contains("setsid nohup /usr/local/bin/faultline node"),
            "undo restarts the node"
        );
        fake.leader = None;
        let e = crate::pause::start(&fake, &opts, 5).await.unwrap_err();
        assert!(matches!(e, NemesisError::NoLeader(_)));
    }

    #[test]
    fn status_output_is_parsed() {
        let out = "== journal\n{\"id\":\"pause-1-aa\",\"family\":\"pause\",\"created_unix_ms\":1,\"expires_unix_ms\":2,\"undo\":\"x\",\"watchdog_pid\":77}\n== process\nstopped 4242\n== family partition\n-A FAULTLINE-IN -s 10.0.0.2/32 -j DROP\njump: -A INPUT -j FAULTLINE-IN\n== family packet\n";
        let st = parse_status("n1", out);
        assert_eq!(st.journal.len(), 1);
        assert_eq!(st.journal[0].as_ref().unwrap().watchdog_pid, Some(77));
        assert_eq!(st.leftovers_of("partition").len(), 2);
        assert!(st.leftovers_of("packet").is_empty());
        assert_eq!(st.process, ProcessState::Stopped(4242));
        assert!(!st.is_clean());
        let clean = parse_status(
            "n1",
            "== journal\n== process\nnone\n== family partition\n== family packet\n",
        );
        assert!(clean.is_clean());
        assert_eq!(clean.process, ProcessState::NoPidfile);
        let qdisc = parse_status("n1", "== journal\n== process\nnone\n== family packet\nnetem qdisc on eth0\n");
        assert!(!qdisc.is_clean());
    }

    #[test]
    fn status_and_sweep_scripts_come_from_every_package() {
        let paths = HostPaths::default();
        let s = status_script(&paths);
        for p in REGISTRY.iter().filter(|p| p.status.is_some()) {
            assert!(s.contains(&format!("== family {}", p.name)), "{s}");
        }
        assert!(s.contains("FAULTLINE-IN") && s.contains("fa17"));
    }

    #[tokio::test(start_paused = true)]
    async fn heal_sweep_runs_every_package_sweep() {
        let fake = FakeCluster::new(2);
        let r = heal(&fake, true).await;
        assert!(r.errors.is_empty());
        for n in ["n1", "n2"] {
            assert_eq!(fake.count(n, "FAULTLINE-IN"), 1, "partition sweep");
            assert_eq!(fake.count(n, "fa17"), 1, "packet sweep");
            assert_eq!(fake.count(n, "kill -CONT"), 1, "pause sweep");
        }
    }
}
