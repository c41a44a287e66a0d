//! Node logs in a run directory (`nodes/<name>/…`): a scan for panics, and excerpts
//! around each fault's start and heal so a reader sees what the nodes said at the time.
//!
//! This reads files, so it lives here rather than among the checkers; its result is
//! recorded in `results.json` as the `node-logs` check.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use faultline_checkers::recovery::FaultWindow;
use serde::Serialize;

use super::run::parse_rfc3339_ns;

/// Bytes read per log file: a runaway log must not stall the report.
const FILE_BYTES_MAX: u64 = 256 << 20;
/// Files looked at per node.
const FILES_PER_NODE_MAX: usize = 16;
/// Panics kept in the report (all are counted).
const PANICS_KEPT_MAX: usize = 20;
/// Lines shown per node per fault edge.
const EXCERPT_LINES_MAX: usize = 12;
/// Lines within this long of a fault edge belong to its excerpt.
const EXCERPT_RADIUS_NS: i128 = 2_000_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct PanicHit {
    pub node: String,
    pub file: String,
    pub line: usize,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Excerpt {
    pub window: usize,
    /// `start` or `heal`.
    pub edge: &'static str,
    pub node: String,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogScan {
    pub nodes: Vec<String>,
    pub files: usize,
    pub panics_total: usize,
    pub panics: Vec<PanicHit>,
    pub excerpts: Vec<Excerpt>,
}

fn is_panic(line: &str) -> bool {
    line.contains("panicked at") || line.contains("RUST_BACKTRACE")
}

fn node_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() && depth < 2 {
                stack.push((p, depth + 1));
            } else if p.is_file() && out.len() < FILES_PER_NODE_MAX {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.ends_with(".log")
                    || name.contains("log")
                    || name == "stderr"
                    || name == "stdout"
                {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Scans `<run>/nodes/*/` for panics and, when the run's wall-clock start is known, cuts
/// excerpts around each fault edge from timestamped lines.
pub fn scan(run_dir: &Path, windows: &[FaultWindow], start_unix_ns: Option<i128>) -> LogScan {
    let mut scan = LogScan::default();
    let Ok(rd) = std::fs::read_dir(run_dir.join("nodes")) else {
        return scan;
    };
    let mut nodes: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    nodes.sort();
    // Fault edges in wall-clock ns.
    let edges: Vec<(usize, &'static str, i128)> = match start_unix_ns {
        Some(t0) => windows
            .iter()
            .enumerate()
            .flat_map(|(i, w)| {
                let mut v = vec![(i + 1, "start", t0 + w.start_ns as i128)];
                if let Some(e) = w.end_ns {
                    v.push((i + 1, "heal", t0 + e as i128));
                }
                v
            })
            .collect(),
        None => Vec::new(),
    };
    for node_dir in nodes {
        let node = node_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        scan.nodes.push(node.clone());
        let mut excerpts: Vec<Vec<String>> = vec![Vec::new(); edges.len()];
        for file in node_files(&node_dir) {
            scan.files += 1;
            let Ok(f) = std::fs::File::open(&file) else {
                continue;
            };
            let rel = file
                .strip_prefix(run_dir)
                .unwrap_or(&file)
                .display()
                .to_string();
            let reader = std::io::BufReader::new(f.take(FILE_BYTES_MAX));
            for (lineno, line) in reader.split(b'\n').enumerate() {
                let Ok(bytes) = line else { break };
                let text = String::from_utf8_lossy(&bytes);
                if is_panic(&text) {
                    scan.panics_total += 1;
                    if scan.panics.len() < PANICS_KEPT_MAX {
                        scan.panics.push(PanicHit {
                            node: node.clone(),
                            file: rel.clone(),
                            line: lineno + 1,
                            text: text.chars().take(500).collect(),
                        });
                    }
                }
                if edges.is_empty() {
                    continue;
                }
                let Some(ts) = text.split_whitespace().next().and_then(parse_rfc3339_ns) else {
                    continue;
                };
                for (k, (_, _, at)) in edges.iter().enumerate() {
                    if (ts - at).abs() <= EXCERPT_RADIUS_NS && excerpts[k].len() < EXCERPT_LINES_MAX
                    {
                        excerpts[k].push(text.chars().take(300).collect());
                    }
                }
            }
        }
        for (k, lines) in excerpts.into_iter().enumerate() {
            if !lines.is_empty() {
                scan.excerpts.push(Excerpt {
                    window: edges[k].0,
                    edge: edges[k].1,
                    node: node.clone(),
                    lines,
                });
            }
        }
    }
    scan.excerpts
        .sort_by(|a, b| (a.window, a.edge, &a.node).cmp(&(b.window, b.edge, &b.node)));
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_panics_and_cuts_excerpts_around_fault_edges() {
        let dir = std::env::temp_dir().join(format!("faultline-logscan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("nodes/n1/logs")).unwrap();
        std::fs::create_dir_all(dir.join("nodes/n2")).unwrap();
        std::fs::write(
            dir.join("nodes/n1/logs/node.log"),
            "1970-01-01T00:00:01Z INFO started\n\
             1970-01-01T00:00:10Z INFO became leader term=2\n\
             1970-01-01T00:00:30Z INFO quiet\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("nodes/n2/node.log"),
            "thread 'main' panicked at node/src/raft.rs:12:5:\nboom\n",
        )
        .unwrap();
        let w = FaultWindow {
            family: "kill".into(),
            start_ns: 9_000_000_000,
            end_ns: Some(20_000_000_000),
            value: serde_json::Value::Null,
        };
        let s = scan(&dir, &[w], Some(0));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(s.nodes, vec!["n1", "n2"]);
        assert_eq!(s.panics_total, 1);
        assert_eq!(s.panics[0].node, "n2");
        assert_eq!(s.panics[0].line, 1);
        assert_eq!(s.excerpts.len(), 1);
        assert_eq!(s.excerpts[0].edge, "start");
        assert!(s.excerpts[0].lines[0].contains("became leader"));
    }
}
