//! The control layer against a real local cluster: the per-host channel bound, reconnecting
//! after the master connection dies, and in-memory uploads. Needs root and the built
//! `faultline` binary next to the test executable's directory; otherwise says why and returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use futures::future::join_all;

fn faultline_bin() -> Option<PathBuf> {
    // target/<profile>/deps/<test exe> -> target/<profile>/faultline
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("faultline");
    bin.is_file().then_some(bin)
}

fn skip_reason() -> Option<String> {
    if !crate::cluster::net::is_root() {
        return Some("not root".into());
    }
    if let Some(m) = crate::cluster::net::missing_tools() {
        return Some(m);
    }
    if faultline_bin().is_none() {
        return Some("faultline binary not built next to the tests".into());
    }
    None
}

struct Local {
    bin: PathBuf,
    name: String,
}

impl Local {
    fn up(name: &str, nodes: usize) -> (Local, Inventory) {
        let bin = faultline_bin().unwrap();
        let _ = Command::new(&bin)
            .args(["cluster", "down", "--name", name])
            .output();
        let out = Command::new(&bin)
            .args([
                "cluster",
                "up",
                "--nodes",
                &nodes.to_string(),
                "--name",
                name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string();
        let inv = crate::inventory::load(Path::new(&path)).unwrap();
        (
            Local {
                bin,
                name: name.into(),
            },
            inv,
        )
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .args(["cluster", "down", "--name", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_control_bounds_channels_reconnects_and_uploads() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: local cluster tests need root and cluster tools: {why}");
        return;
    }
    let (_local, inv) = Local::up(&format!("t-cr-{}", std::process::id()), 2);
    let control = Control::connect(&inv, &ControlOptions::default())
        .await
        .unwrap();
    assert_eq!(control.node_names(), vec!["n1", "n2"]);

    // 30 concurrent commands on one host: sshd allows 10 sessions per connection, so
    // without the per-host bound (8) some would be refused.
    let started = Instant::now();
    let calls = (0..30).map(|i| {
        let c = control.clone();
        async move {
            c.run(
                "n1",
                &format!("sleep 0.3; echo {i}"),
                Duration::from_secs(30),
            )
            .await
        }
    });
    let results = join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        let out = r
            .unwrap_or_else(|e| panic!("call {i}: {e}"))
            .check()
            .unwrap();
        assert_eq!(out.stdout_str().trim(), i.to_string());
    }
    // At most 8 at a time: 30 sleeps of 0.3 s take at least 4 rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(1150),
        "{:?}",
        started.elapsed()
    );

    // Fan-out keeps the order asked for.
    let outs = control
        .run_on(&["n2", "n1"], "hostname", Duration::from_secs(10))
        .await;
    let names: Vec<String> = outs
        .into_iter()
        .map(|(n, r)| format!("{n}={}", r.unwrap().stdout_str().trim()))
        .collect();
    assert_eq!(names, vec!["n2=n2", "n1=n1"]);

    // An idle master stays: nothing but the controller's exit or close ends it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let out = control
        .run("n2", "hostname", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "n2");

    // Kill n1's master connection; the next call reconnects by itself.
    let sockets: Vec<PathBuf> = std::fs::read_dir(&control.inner.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("master"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(sockets.len(), 2);
    for s in &sockets {
        let o = Command::new("ssh")
            .arg("-S")
            .arg(s)
            .args(["-O", "exit", "x"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let out = control
        .run("n1", "hostname", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "n1");

    // In-memory upload: copied, then skipped; the bytes and mode arrive intact.
    let data = b"id: n1\nalgo: raft\n".to_vec();
    for want in [Uploaded::Copied { bytes: 18 }, Uploaded::AlreadyPresent] {
        let r = control
            .put_bytes(
                &["n1", "n2"],
                &data,
                "/var/lib/faultline/conf/node.yaml",
                0o600,
            )
            .await;
        assert!(
            r.iter().all(|(_, r)| matches!(r, Ok(u) if *u == want)),
            "{r:?}"
        );
    }
    let out = control
        .run(
            "n2",
            "stat -c %a /var/lib/faultline/conf/node.yaml; cat /var/lib/faultline/conf/node.yaml",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "600\nid: n1\nalgo: raft\n");

    // Unknown node and a non-zero exit are reported, not hidden.
    assert!(matches!(
        control.run("n9", "true", Duration::from_secs(5)).await,
        Err(ControlError::UnknownNode(_))
    ));
    let out = control
        .run("n1", "echo oops >&2; exit 7", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.status, Some(7));
    let e = out.check().unwrap_err().to_string();
    assert!(e.contains("exit code 7") && e.contains("oops"), "{e}");

    let dir = control.inner.dir.clone();
    control.close().await;
    assert!(!dir.exists());
}
