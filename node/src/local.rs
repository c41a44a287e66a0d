//! A cluster of real `faultline node` processes on loopback, for the benchmark and for
//! process-level tests (kill -9 of the pid we spawned, restart from disk).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::Algo;
use crate::protocol::NodeStatus;

#[derive(Debug, thiserror::Error)]
#[error("no leader within {timeout:?}; last statuses {last}")]
pub struct NoLeader {
    pub timeout: Duration,
    /// (id, role, term) of every node that answered the last poll.
    pub last: String,
}

pub struct LocalCluster {
    exe: PathBuf,
    pub dir: PathBuf,
    pub names: Vec<String>,
    pub client_addrs: Vec<String>,
    configs: Vec<PathBuf>,
    procs: Vec<Option<Child>>,
    /// Remove `dir` on drop.
    cleanup: bool,
}

/// Distinct free loopback ports, found by binding port 0 (racy only against other programs
/// grabbing the same ephemeral port in the next instant).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

impl LocalCluster {
    /// Writes configs for `n` nodes under `dir` and starts them. `ports` holds 2n ports
    /// (client, peer per node); `extra` are `KEY=VALUE` knobs passed as `--set`.
    pub fn start(
        exe: &Path,
        algo: Algo,
        n: usize,
        ports: &[u16],
        dir: &Path,
        extra: &[String],
    ) -> std::io::Result<LocalCluster> {
        assert!(ports.len() >= 2 * n, "need two ports per node");
        std::fs::create_dir_all(dir)?;
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let client_addrs: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", ports[2 * i])).collect();
        let mut peers = String::new();
        for i in 0..n {
            peers.push_str(&format!(
                "  - {{id: {}, client_addr: \"{}\", peer_addr: \"127.0.0.1:{}\"}}\n",
                names[i],
                client_addrs[i],
                ports[2 * i + 1]
            ));
        }
        let mut configs = Vec::new();
        for i in 0..n {
            let data = dir.join(&names[i]);
            std::fs::create_dir_all(&data)?;
            let yaml = format!(
                "id: {}\nalgo: {}\ndata_dir: \"{}\"\nlisten_client: \"{}\"\nlisten_peer: \"127.0.0.1:{}\"\npeers:\n{peers}",
                names[i],
                algo.as_str(),
                data.display(),
                client_addrs[i],
                ports[2 * i + 1]
            );
            let path = data.join("node.yaml");
            std::fs::write(&path, yaml)?;
            configs.push(path);
        }
        let mut c = LocalCluster {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            names,
            client_addrs,
            configs,
            procs: (0..n).map(|_| None).collect(),
            cleanup: false,
        };
        for i in 0..n {
            c.spawn(i, extra)?;
        }
        Ok(c)
    }

    /// Remove the cluster's directory when dropped.
    pub fn remove_dir_on_drop(&mut self) {
        self.cleanup = true;
    }

    pub fn spawn(&mut self, i: usize, extra: &[String]) -> std::io::Result<()> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("node").arg("--config").arg(&self.configs[i]);
        for s in extra {
            cmd.arg("--set").arg(s);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(self.dir.join(format!("{}.stderr", self.names[i])))?))
            .spawn()?;
        self.procs[i] = Some(child);
        Ok(())
    }

    /// The exit status of node `i`'s process if it has exited (reaping it), else `None`.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.procs[i].as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].as_ref().map(|c| c.id())
    }

    /// SIGKILL the process we spawned for node `i` and reap it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM node `i` and wait up to `timeout` for a clean exit (then SIGKILL).
    /// Returns whether it exited on its own, successfully.
    pub fn terminate(&mut self, i: usize, timeout: Duration) -> bool {
        let Some(mut c) = self.procs[i].take() else { return false };
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Polls every live node's status until one reports itself leader and a majority agree.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<(usize, NodeStatus), NoLeader> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no status yet");
        while Instant::now() < deadline {
            let mut statuses = Vec::new();
            for (i, addr) in self.client_addrs.iter().enumerate() {
                if self.procs[i].is_none() {
                    continue;
                }
                if let Ok(mut c) = Client::connect(addr, Duration::from_millis(300)).await
                    && let Ok(s) = c.status().await
                {
                    statuses.push((i, s));
                }
            }
            let majority = self.names.len() / 2 + 1;
            for (i, s) in &statuses {
                let agree = statuses.iter().filter(|(_, o)| o.leader.as_deref() == Some(s.id.as_str())).count();
                if s.role == "leader" && agree >= majority {
                    return Ok((*i, s.clone()));
                }
            }
            last = format!("{:?}", statuses.iter().map(|(_, s)| (&s.id, &s.role, s.term)).collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(NoLeader { timeout, last })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            if self.procs[i].is_some() {
                self.terminate(i, Duration::from_secs(3));
            }
        }
        if self.cleanup {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
