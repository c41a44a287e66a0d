//! The progress line on stderr: the current phase, and during the run elapsed time and
//! op counts. On a terminal it redraws one line; otherwise it prints a line every 5 s.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::history::Recorder;

fn tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Announces a lifecycle phase. On a terminal this is the progress line itself, redrawn
/// by the next phase and wiped by [`clear`]; elsewhere it is a log line.
pub fn phase(name: &str) {
    let mut err = std::io::stderr().lock();
    if tty() {
        let _ = write!(err, "\r\x1b[2Kfaultline: {name} ...");
    } else {
        let _ = writeln!(err, "faultline: {name} ...");
    }
    let _ = err.flush();
}

/// Wipes the progress line, so what follows (the summary) starts on a clean line.
pub fn clear() {
    if tty() {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

/// A line for the user, clearing any progress line first.
pub fn note(msg: &str) {
    let mut err = std::io::stderr().lock();
    if tty() {
        let _ = write!(err, "\r\x1b[2K");
    }
    let _ = writeln!(err, "faultline: {msg}");
}

/// Redraws the run's progress until aborted.
pub fn spawn(rec: Recorder, time_limit_s: f64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let tty = tty();
        let every = if tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        let run_start = rec.now_ns();
        loop {
            tokio::time::sleep(every).await;
            let c = rec.counts();
            let elapsed = (rec.now_ns() - run_start) as f64 / 1e9;
            let line = format!(
                "[{elapsed:5.1}/{time_limit_s:.0} s] invoked {} ok {} fail {} info {} | nemesis events {}",
                c.invoke.load(Ordering::Relaxed),
                c.ok.load(Ordering::Relaxed),
                c.fail.load(Ordering::Relaxed),
                c.info.load(Ordering::Relaxed),
                c.nemesis.load(Ordering::Relaxed),
            );
            let mut err = std::io::stderr().lock();
            if tty {
                let _ = write!(err, "\r\x1b[2K{line}");
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
        }
    })
}
