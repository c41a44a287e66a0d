//! Standard output that ends quietly when the reader goes away.
//!
//! `faultline check h.jsonl | head -1` closes the pipe early; `println!` would then panic
//! (exit 101 with a backtrace), and in `test` a panic would skip the heal. Every command
//! prints through [`outln!`] / [`out!`] instead: a write that fails with EPIPE marks
//! standard output closed, later writes are dropped, and the command finishes its work
//! and exits with its own code.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to standard output unless the reader is gone. Errors other than a
/// closed pipe are dropped too: output is a report, never a reason to stop a run.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    let r = o.write_fmt(args).and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) });
    let r = r.and_then(|()| o.flush());
    if let Err(e) = r
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` that survives a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*), true) };
}

/// `print!` that survives a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*), false) };
}
