//! Loads one history and prints its event count: for measuring what loading alone costs
//! (`/usr/bin/time -v target/debug/examples/load FILE`). `--whole` reads the file into one
//! string first, as loading did before it streamed, for comparison.
//!
//! A large history to try it on: `scripts/gen-history.py 100 /tmp/h100.jsonl`.

use std::path::Path;

use faultline_history::formats::{self, Format};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let whole = args.iter().any(|a| a == "--whole");
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: load [--whole] FILE");
        std::process::exit(64);
    };
    let events = if whole {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            std::process::exit(3)
        });
        formats::parse(&text, path, Format::Auto)
    } else {
        formats::load(Path::new(path), Format::Auto)
    };
    match events {
        Ok(events) => println!(
            "{} events, {} bytes each in the vector",
            events.len(),
            std::mem::size_of::<faultline_history::Event>()
        ),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(3)
        }
    }
}
