//! Running faults: the [`Executor`] a test run spawns, plus [`heal`] and [`status`] that the
//! CLI and the runner share.

use std::collections::BTreeMap;
use std::sync::Arc;

use faultline_history::{Event, EventType, Process};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, run_all};
use crate::journal::{self, Entry, Select, heal_on};
use crate::registry::lookup;
use crate::schedule::{Action, NemesisConfig, Schedule};
use crate::script::{ALIVE_FN, quote};
use crate::{Applied, NemesisError, Result, packet, partition, pause};

/// Applies a [`Schedule`] to a cluster and reports every fault and heal as history events.
pub struct Executor {
    cluster: Arc<dyn Cluster>,
    config: NemesisConfig,
    seed: u64,
}

/// What a run of the executor did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub faults_started: usize,
    pub faults_failed: usize,
    pub heals: usize,
    pub heal_errors: Vec<String>,
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
    /// and replays any journal left on any host before returning. `emit` receives each event
    /// as it happens, `time` relative to `run_start`, `index` unset.
    pub async fn run<F>(self, run_start: Instant, cancel: CancellationToken, mut emit: F) -> Summary
    where
        F: FnMut(Event) + Send,
    {
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
                    let mut intent = json!({"target": opts.target.to_string()});
                    if let Some(s) = shape {
                        intent = json!({"shape": s.name(), "one_way": opts.one_way});
                    }
                    emit(event(
                        run_start,
                        EventType::Invoke,
                        pkg.start_f(),
                        intent.clone(),
                    ));
                    match (pkg.start)(cx, &opts, seed).await {
                        Ok(applied) => {
                            let mut ev = event(
                                run_start,
                                EventType::Info,
                                pkg.start_f(),
                                applied.description.clone(),
                            );
                            ev.node = applied.description.get("targets").cloned();
                            emit(ev);
                            summary.faults_started += 1;
                            active.push((applied, Instant::now(), hold));
                        }
                        Err(e) => {
                            tracing::warn!(family = %family, error = %e, "fault not applied");
                            let mut ev = event(run_start, EventType::Info, pkg.start_f(), intent);
                            ev.error = Some(e.to_string());
                            emit(ev);
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
                    stop_one(cx, run_start, &a, &mut emit, &mut summary).await;
                }
            }
        }
        while let Some((a, _, _)) = active.pop() {
            stop_one(cx, run_start, &a, &mut emit, &mut summary).await;
        }
        let report = heal(cx, false).await;
        for e in report.errors {
            summary.heal_errors.push(e.to_string());
        }
        summary
    }
}

async fn stop_one<F: FnMut(Event) + Send>(
    cx: &dyn Cluster,
    run_start: Instant,
    a: &Applied,
    emit: &mut F,
    summary: &mut Summary,
) {
    let f = format!("stop-{}", a.family);
    let value = json!({"journal": a.journal_id, "hosts": a.hosts});
    emit(event(
        run_start,
        EventType::Invoke,
        f.clone(),
        value.clone(),
    ));
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
    emit(ev);
}

/// What a heal did.
#[derive(Debug, Default)]
pub struct HealReport {
    /// Per node, the journal entries replayed.
    pub healed: Vec<(String, Vec<String>)>,
    pub errors: Vec<NemesisError>,
}

/// Replays every journal on every node. With `sweep`, also removes faultline's chains and
/// qdisc and resumes the node process on every node, journal or not — for hosts whose
/// journal directory was lost. Healing a healed cluster succeeds.
pub async fn heal(cx: &dyn Cluster, sweep: bool) -> HealReport {
    let nodes = cx.nodes();
    let (healed, mut errors) = heal_on(cx, &nodes, &Select::All).await;
    if sweep {
        let pidfile = cx.paths().pidfile;
        let script = format!(
            "{}{}{}",
            partition::teardown_script(),
            packet::teardown_script(),
            pause::resume_script(&pidfile)
        );
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
    /// Rules in faultline's chains, as `iptables -S` prints them.
    pub rules: Vec<String>,
    /// Jump rules into faultline's chains from INPUT and OUTPUT.
    pub jumps: usize,
    pub process: ProcessState,
    /// faultline's netem qdisc is installed somewhere on the host.
    pub qdisc: bool,
}

impl HostStatus {
    pub fn is_clean(&self) -> bool {
        self.journal.is_empty()
            && self.rules.is_empty()
            && self.jumps == 0
            && !self.qdisc
            && !matches!(self.process, ProcessState::Stopped(_))
    }
}

pub fn status_script(pidfile: &str, journal_dir: &str) -> String {
    format!(
        r#"echo "== journal"
{list}echo "== rules"
for t in iptables ip6tables; do
  command -v $t >/dev/null 2>&1 || continue
  for c in {cin} {cout}; do $t -w -S "$c" 2>/dev/null | grep -v '^-N ' || true; done
done
echo "== jumps"
for t in iptables ip6tables; do
  command -v $t >/dev/null 2>&1 || continue
  $t -w -S INPUT 2>/dev/null; $t -w -S OUTPUT 2>/dev/null
done | grep -c -e '-j {cin}$' -e '-j {cout}$' || true
echo "== process"
{ALIVE_FN}pf={pf}
pid=$(tr -d ' \n' < "$pf" 2>/dev/null || true)
case "$pid" in
  ''|*[!0-9]*) echo "none" ;;
  *) if alive "$pid"; then st=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1); case "$st" in T|t) echo "stopped $pid" ;; *) echo "running $pid" ;; esac; else echo "dead $pid"; fi ;;
esac
echo "== qdisc"
tc qdisc show 2>/dev/null | grep -c ' {handle}: ' || true
"#,
        list = journal::list_script(journal_dir),
        cin = partition::CHAIN_IN,
        cout = partition::CHAIN_OUT,
        pf = quote(pidfile),
        handle = packet::HANDLE,
    )
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
    let count = |k: &str| {
        get(k)
            .first()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0usize)
    };
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
    HostStatus {
        node: node.to_string(),
        journal: journal::parse_listing(&get("journal").join("\n")),
        rules: get("rules").iter().map(|s| s.to_string()).collect(),
        jumps: count("jumps"),
        process,
        qdisc: count("qdisc") > 0,
    }
}

/// Every node's faults. A node that cannot be reached is reported as an error for that node.
pub async fn status(cx: &dyn Cluster) -> Vec<(String, Result<HostStatus>)> {
    let paths = cx.paths();
    let script = status_script(&paths.pidfile, &paths.journal_dir);
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

    #[tokio::test(start_paused = true)]
    async fn faults_and_heals_become_history_events_and_cancel_heals_everything() {
        let fake = Arc::new(FakeCluster::new(5));
        let config =
            NemesisConfig::from_flags("partition,kill", 10.0, Some("one"), None, false).unwrap();
        let cancel = CancellationToken::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let exec = Executor::new(fake.clone(), config, 99);
        let c2 = cancel.clone();
        let task = tokio::spawn(async move {
            exec.run(Instant::now(), c2, move |e| sink.lock().unwrap().push(e))
                .await
        });
        tokio::time::sleep(Duration::from_secs(95)).await;
        cancel.cancel();
        let summary = task.await.unwrap();
        let events = events.lock().unwrap().clone();
        assert!(summary.faults_started >= 3, "{summary:?}");
        assert_eq!(summary.faults_started, summary.heals);
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
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let exec = Executor::new(fake.clone(), config, 3);
        let c2 = cancel.clone();
        let task = tokio::spawn(async move {
            exec.run(Instant::now(), c2, move |e| sink.lock().unwrap().push(e))
                .await
        });
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
        let out = "== journal\n{\"id\":\"pause-1-aa\",\"family\":\"pause\",\"created_unix_ms\":1,\"expires_unix_ms\":2,\"undo\":\"x\",\"watchdog_pid\":77}\n== rules\n-A FAULTLINE-IN -s 10.0.0.2/32 -j DROP\n== jumps\n2\n== process\nstopped 4242\n== qdisc\n0\n";
        let st = parse_status("n1", out);
        assert_eq!(st.journal.len(), 1);
        assert_eq!(st.journal[0].as_ref().unwrap().watchdog_pid, Some(77));
        assert_eq!(st.rules.len(), 1);
        assert_eq!(st.jumps, 2);
        assert_eq!(st.process, ProcessState::Stopped(4242));
        assert!(!st.qdisc);
        assert!(!st.is_clean());
        let clean = parse_status(
            "n1",
            "== journal\n== rules\n== jumps\n0\n== process\nnone\n== qdisc\n0\n",
        );
        assert!(clean.is_clean());
        assert_eq!(clean.process, ProcessState::NoPidfile);
    }
}
