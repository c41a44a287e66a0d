//! `faultline exec -i INVENTORY [--nodes n1,n3] [--timeout-s N] [--upload LOCAL=REMOTE] -- CMD...`:
//! one command on many hosts, each output line prefixed with its node, exit 0 only if every
//! node succeeded. `--upload` first copies a file (verified, skipped where already present).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::control::{Control, ControlError, ControlOptions, Output, RunAs, Uploaded};
use crate::exit::usage;

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Inventory file, or the name of a local cluster.
    #[arg(short = 'i', long)]
    inventory: String,
    /// Only these nodes (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Bound on the command on each node; default the inventory's command_timeout_ms.
    #[arg(long)]
    timeout_s: Option<f64>,
    /// Bound on connecting to each node; default the inventory's connect_timeout_ms.
    #[arg(long)]
    connect_timeout_s: Option<f64>,
    /// Copy a local file to every selected node before the command.
    #[arg(long, value_name = "LOCAL=REMOTE")]
    upload: Option<String>,
    /// File mode (octal) of the uploaded file.
    #[arg(long, default_value = "644")]
    mode: String,
    /// Run the command (and write the upload) as root through sudo: the host's `become`
    /// from the inventory, else `sudo -n` to root. Without it, as the login user.
    #[arg(long)]
    sudo: bool,
    /// The command, run with `sh -c` (words are joined with spaces, as ssh does).
    #[arg(last = true, required_unless_present = "upload")]
    cmd: Vec<String>,
}

fn seconds(v: Option<f64>, what: &str) -> anyhow::Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
            Ok(Some(Duration::from_secs_f64(s)))
        }
        Some(s) => Err(usage(format!("--{what} must be in (0, 86400], got {s}"))),
    }
}

pub fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let mut inv = crate::inventory::resolve_cli(&args.inventory)?;
    if !args.nodes.is_empty() {
        inv = inv.select(&args.nodes).map_err(|e| usage(e.to_string()))?;
    }
    let timeout = seconds(args.timeout_s, "timeout-s")?;
    let connect_timeout = seconds(args.connect_timeout_s, "connect-timeout-s")?;
    let cmd = args.cmd.join(" ");
    if cmd.trim().is_empty() && args.upload.is_none() {
        return Err(usage("empty command"));
    }
    let upload = match &args.upload {
        None => None,
        Some(spec) => {
            let (local, remote) = spec
                .split_once('=')
                .filter(|(l, r)| !l.is_empty() && r.starts_with('/'))
                .ok_or_else(|| {
                    usage(format!(
                        "--upload wants LOCAL=/ABSOLUTE/REMOTE, got {spec:?}"
                    ))
                })?;
            if !std::path::Path::new(local).is_file() {
                return Err(usage(format!("--upload: no such file {local:?}")));
            }
            let mode = u32::from_str_radix(&args.mode, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| {
                    usage(format!(
                        "--mode wants an octal file mode, got {:?}",
                        args.mode
                    ))
                })?;
            Some((std::path::PathBuf::from(local), remote.to_string(), mode))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let opts = ControlOptions {
            connect_timeout,
            ..ControlOptions::default()
        };
        let (control, connect_failures) = Control::connect_partial(&inv, &opts).await?;
        let control = control.with_run_as(if args.sudo { RunAs::Privileged } else { RunAs::Login });
        let timeout = timeout.unwrap_or_else(|| control.default_timeout());
        let mut failures: Vec<(String, String)> = connect_failures
            .into_iter()
            .map(|(n, e)| (n, e.to_string()))
            .collect();
        for (_, msg) in &failures {
            eprintln!("{msg}");
        }
        let mut targets = control.node_names();
        if let Some((local, remote, mode)) = &upload {
            let results = control.upload(&targets, local, remote, *mode).await;
            targets.clear();
            for (node, r) in results {
                match r {
                    Ok(Uploaded::Copied { bytes }) => {
                        outln!(
                            "{node}: uploaded {} -> {remote} ({bytes} bytes)",
                            local.display()
                        );
                        targets.push(node);
                    }
                    Ok(Uploaded::AlreadyPresent) => {
                        outln!("{node}: {remote} already up to date");
                        targets.push(node);
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        failures.push((node, short(&e)));
                    }
                }
            }
        }
        if cmd.trim().is_empty() {
            targets.clear();
        }
        let mut pending: FuturesUnordered<_> = targets
            .into_iter()
            .map(|n| {
                let control = control.clone();
                let cmd = cmd.clone();
                async move {
                    let r = control.run(&n, &cmd, timeout).await;
                    (n, r)
                }
            })
            .collect();
        // Printed as each node finishes, each node's lines together.
        while let Some((node, r)) = pending.next().await {
            match r {
                Ok(out) => {
                    print_prefixed(&node, &out);
                    if !out.success() {
                        failures.push((node, out.status_str()));
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    failures.push((node, short(&e)));
                }
            }
        }
        control.close().await;
        if failures.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        failures.sort();
        let total = inv.nodes.len();
        eprintln!(
            "faultline exec: {} of {total} node(s) failed:",
            failures.len()
        );
        for (n, why) in &failures {
            eprintln!("  {n}: {why}");
        }
        Ok(ExitCode::from(crate::exit::HARNESS))
    })
}

fn short(e: &ControlError) -> String {
    let s = e.to_string();
    let s = s
        .strip_prefix(&format!("{}: ", e.node().unwrap_or("")))
        .unwrap_or(&s)
        .to_string();
    s.lines().next().unwrap_or("").to_string()
}

fn print_prefixed(node: &str, out: &Output) {
    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = writeln!(o, "{node}: {line}");
    }
    let _ = o.flush();
    let stderr = std::io::stderr();
    let mut e = stderr.lock();
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let _ = writeln!(e, "{node}: {line}");
    }
    if out.truncated {
        let _ = writeln!(e, "{node}: (output truncated)");
    }
}
