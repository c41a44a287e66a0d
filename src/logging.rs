//! Logging: warnings to stderr, everything at `FAULTLINE_LOG` (default info) to the current
//! run's `faultline.log`. Colour only on a terminal, so log files and CI logs carry no
//! escape codes.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

/// The current run's log file; tracing writes there while a run is active.
static LOG_FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Points the tracing file output at `path` (or nowhere).
pub fn log_to(path: Option<&Path>) {
    let file = path.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
    *LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) = file;
}

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

pub fn init() {
    use tracing_subscriber::prelude::*;
    let file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG").unwrap_or_else(|_| "info".into()),
        );
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(stderr_colour())
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry().with(file).with(stderr).try_init();
}

/// Colour codes only for a person at a terminal: CI logs and redirected stderr stay plain.
fn stderr_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

#[cfg(test)]
mod tests {
    #[test]
    fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
        // Under the test harness stderr is captured (a pipe or file), as in CI.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return;
        }
        assert!(!super::stderr_colour());
    }
}
