//! What every CLI test needs: the binary, a private store directory, and a local
//! namespace cluster under a unique name that is always taken down.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

pub fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

/// An empty directory of its own under the system temp directory.
pub fn temp_store(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A local cluster (`faultline cluster up`) and a private store, both removed on drop.
/// Names are `t<tag><pid>`: unique across concurrent test processes and short enough for
/// interface names.
pub struct LocalCluster {
    pub name: String,
    pub store: PathBuf,
}

impl LocalCluster {
    pub fn up(tag: &str, nodes: usize) -> LocalCluster {
        let name = format!("t{tag}{}", std::process::id() % 100_000);
        let store = temp_store(&format!("{name}-store"));
        // Built before `up` so that a failed `up` is still taken down.
        let c = LocalCluster { name, store };
        let out = faultline()
            .args([
                "cluster",
                "up",
                "--nodes",
                &nodes.to_string(),
                "--name",
                &c.name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = faultline()
            .args(["cluster", "down", "--name", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Why this machine cannot run tests that need root and `tools`, or `None` when it can.
pub fn missing_root_or_tools(tools: &[&str]) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    tools
        .iter()
        .find(|tool| {
            !["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .any(|d| std::path::Path::new(d).join(tool).exists())
        })
        .map(|tool| format!("{tool} not installed"))
}
