//! One run loop for `test` and `suite`: a runtime, logging, the signal watcher and the
//! seed derivation, written once so both commands stop, heal and exit the same way.
//!
//! The first SIGINT or SIGTERM interrupts the current run, which heals its faults, stops
//! its nodes and keeps its history and partial results (at best `unknown`); no later run
//! starts. Schedulers stop jobs with SIGTERM (systemd, CI timeouts, `timeout(1)`), so it is
//! treated exactly like Ctrl-C. A second signal aborts at once: faults still expire on the
//! hosts by themselves.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::runner::{self, RunOutcome, TestConfig};

/// A seed from the clock and the pid, for runs given none (and recorded, like any seed).
pub fn clock_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}

/// One run's end.
pub struct Finished {
    pub cfg: TestConfig,
    /// `Err` when the run directory could not even be made.
    pub outcome: anyhow::Result<RunOutcome>,
    pub seconds: f64,
}

impl Finished {
    pub fn exit_code(&self) -> u8 {
        match &self.outcome {
            Ok(o) => o.exit_code(),
            Err(e) => crate::exit::code_for_error(e),
        }
    }
}

/// Runs `rounds` in order on one runtime. `before(k, total, cfg)` and `after(finished)`
/// are called around each run, `after_round` after each round. An interrupt ends the loop
/// after the current run's teardown; runs not started are simply absent from the result.
pub fn run(
    rounds: Vec<Vec<TestConfig>>,
    mut before: impl FnMut(usize, usize, &TestConfig),
    mut after: impl FnMut(&Finished),
    mut after_round: impl FnMut(&[Finished]),
) -> anyhow::Result<Vec<Finished>> {
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let total: usize = rounds.iter().map(Vec::len).sum();
    rt.block_on(async move {
        let interrupt = CancellationToken::new();
        let watcher = tokio::spawn(watch_signals(interrupt.clone()));
        let mut all: Vec<Finished> = Vec::new();
        let mut k = 0;
        'rounds: for round in rounds {
            let first = all.len();
            for cfg in round {
                if interrupt.is_cancelled() {
                    break 'rounds;
                }
                before(k, total, &cfg);
                k += 1;
                let t = Instant::now();
                let outcome = runner::run_test(&cfg, interrupt.clone()).await;
                let f = Finished {
                    cfg,
                    outcome,
                    seconds: t.elapsed().as_secs_f64(),
                };
                after(&f);
                all.push(f);
            }
            after_round(&all[first..]);
        }
        watcher.abort();
        Ok(all)
    })
}

/// The process's exit code over several runs: any invalid run wins, then any harness
/// error, then any unknown; nothing run at all is a harness error.
pub fn exit_code(runs: &[Finished]) -> u8 {
    crate::exit::worst(runs.iter().map(Finished::exit_code)).unwrap_or(crate::exit::HARNESS)
}

/// The first SIGINT or SIGTERM cancels `interrupt` (the caller heals, stops and saves);
/// a second one exits at once.
pub(crate) async fn watch_signals(interrupt: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            None
        }
    };
    let next = async |term: &mut Option<tokio::signal::unix::Signal>| -> &'static str {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            Some(_) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => "terminated",
        }
    };
    let how = next(&mut term).await;
    eprintln!(
        "\nfaultline: {how}; healing faults, stopping nodes and saving the history (signal again to abort now)"
    );
    interrupt.cancel();
    let how = next(&mut term).await;
    eprintln!("faultline: {how} again: aborted; faults expire on their own on the hosts, nodes may still run");
    std::process::exit(i32::from(crate::exit::HARNESS));
}

#[cfg(test)]
mod tests {
    use faultline_checkers::Validity;

    use super::*;

    fn finished(valid: Validity, harness_error: Option<&str>) -> Finished {
        let inv = std::env::temp_dir().join(format!("fl-run-loop-inv-{}.yaml", std::process::id()));
        std::fs::write(&inv, "nodes:\n  - name: n1\n    host: 10.0.0.1\n").unwrap();
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            args: crate::test_cmd::TestArgs,
        }
        let cfg = <Wrap as clap::Parser>::parse_from(["t", "-i", inv.to_str().unwrap()])
            .args
            .validate()
            .unwrap();
        Finished {
            cfg,
            outcome: Ok(RunOutcome {
                run_dir: "x".into(),
                valid,
                results: Vec::new(),
                harness_error: harness_error.map(str::to_string),
                interrupted: false,
                stats: serde_json::Value::Null,
                report: None,
            }),
            seconds: 0.0,
        }
    }

    #[test]
    fn an_unknown_run_exits_2_in_suite_as_in_test() {
        // `suite` used to exit 0 when a run was unknown while `test` exited 2.
        assert_eq!(exit_code(&[finished(Validity::Valid, None), finished(Validity::Unknown, None)]), 2);
        assert_eq!(exit_code(&[finished(Validity::Valid, None)]), 0);
        assert_eq!(
            exit_code(&[finished(Validity::Unknown, Some("ssh")), finished(Validity::Invalid, None)]),
            1
        );
        assert_eq!(exit_code(&[finished(Validity::Unknown, Some("ssh"))]), 3);
        assert_eq!(exit_code(&[]), 3, "nothing run is not valid");
    }
}
