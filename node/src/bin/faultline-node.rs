//! `faultline-node`: the node image uploaded to hosts. It runs only the bundled node, with
//! the same command line as `faultline node` (`[node] --config PATH [--set KEY=VALUE]...`),
//! so the controller starts either with one command. Built statically by
//! `scripts/build-node-image.sh`, it runs on any x86_64 Linux whatever its glibc, and is a
//! fraction of the controller's size.

use std::path::PathBuf;
use std::process::ExitCode;

use faultline_node::config::{Config, ConfigError};

const USAGE: &str = "usage: faultline-node [node] --config PATH [--set KEY=VALUE]...\n       faultline-node lazyfs --dir DIR [--bytes-max N]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("lazyfs") {
        args.next();
        return match faultline_node::lazyfs::Args::parse(args) {
            Ok(a) => faultline_node::lazyfs::main(&a),
            Err(e) => usage(&e),
        };
    }
    if args.peek().map(String::as_str) == Some("node") {
        args.next();
    }
    let mut config: Option<PathBuf> = None;
    let mut sets = Vec::new();
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--config" => match value() {
                Some(v) => config = Some(PathBuf::from(v)),
                None => return usage("--config needs a path"),
            },
            "--set" => match value() {
                Some(v) => sets.push(v),
                None => return usage("--set needs KEY=VALUE"),
            },
            "--version" => {
                println!("faultline-node {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unexpected argument {other:?}")),
        }
    }
    let Some(path) = config else {
        return usage("--config PATH is required");
    };
    let cfg = match Config::load(&path, &sets) {
        Ok(c) => c,
        Err(e @ ConfigError::Read { .. }) => {
            eprintln!("faultline-node: {e}");
            return ExitCode::from(3);
        }
        Err(e) => return usage(&e.to_string()),
    };
    match faultline_node::node::run_node(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultline-node: node failed: {e}");
            ExitCode::from(3)
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("faultline-node: {msg}\n{USAGE}");
    ExitCode::from(64)
}
