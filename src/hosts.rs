//! `faultline hosts prepare -i INVENTORY`: installs what faultline needs on each host
//! (iptables, conntrack, iproute2, procps, coreutils and the rest) with the host's own
//! package manager, through sudo, on all hosts in parallel. Idempotent: a tool already there
//! is left alone, and the table says which were there and which were installed.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use crate::control::{Control, ControlOptions};

/// Every tool a test or a drill may run on a host.
pub const HOST_TOOLS: &[&str] = &[
    "iptables", "ip6tables", "conntrack", "tc", "ip", "kill", "ps", "setsid", "nohup", "timeout",
    "sha256sum", "tar",
];

/// Prints `pm=NAME` for the first package manager the host has (nothing if none).
pub const PACKAGE_MANAGER_SH: &str =
    "for m in apt-get dnf yum zypper; do if command -v $m >/dev/null 2>&1; then echo pm=$m; break; fi; done\n";

/// The package that provides `tool` under package manager `pm`.
pub fn package_for(tool: &str, pm: &str) -> &'static str {
    let rpm = matches!(pm, "dnf" | "yum");
    match tool {
        "iptables" | "ip6tables" => "iptables",
        "conntrack" if pm == "apt-get" => "conntrack",
        "conntrack" => "conntrack-tools",
        "tc" if rpm => "iproute-tc",
        "tc" | "ip" if !rpm => "iproute2",
        "ip" => "iproute",
        "kill" | "ps" | "pkill" if rpm => "procps-ng",
        "kill" | "ps" | "pkill" => "procps",
        "setsid" => "util-linux",
        "tar" => "tar",
        "sudo" => "sudo",
        _ => "coreutils",
    }
}

/// The command that installs `packages` with `pm`.
pub fn install_command(pm: &str, packages: &[&str]) -> Option<String> {
    let p = packages.join(" ");
    Some(match pm {
        "apt-get" => format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y {p} || {{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {p}; }}"
        ),
        "dnf" => format!("dnf install -y {p}"),
        "yum" => format!("yum install -y {p}"),
        "zypper" => format!("zypper --non-interactive install {p}"),
        _ => return None,
    })
}

fn packages(pm: &str, tools: &[String]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = tools.iter().map(|t| package_for(t, pm)).collect();
    v.sort();
    v.dedup();
    v
}

/// One pre-flight line: the missing tools of a host, their packages, and how to install them.
pub fn describe_missing(node: &str, pm: &str, missing: &[String]) -> String {
    let pkgs = packages(if pm.is_empty() { "apt-get" } else { pm }, missing);
    let how = match install_command(pm, &pkgs) {
        Some(_) => format!("`sudo {pm} install -y {}`", pkgs.join(" ")),
        None => format!("the host's package manager (packages {})", pkgs.join(" ")),
    };
    format!(
        "{node}: missing tool(s) {}: install with {how}, or run `faultline hosts prepare -i INVENTORY`",
        missing.join(", ")
    )
}

#[derive(clap::Args)]
pub struct HostsArgs {
    #[command(subcommand)]
    cmd: HostsCmd,
}

#[derive(clap::Subcommand)]
enum HostsCmd {
    /// Install the tools faultline runs on hosts (through sudo, with each host's package
    /// manager); prints what was already there and what was installed.
    Prepare {
        /// Inventory file, or the name of a local cluster.
        #[arg(short = 'i', long)]
        inventory: String,
        /// Only these nodes (comma-separated); default all.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
}

pub fn run(args: HostsArgs) -> anyhow::Result<ExitCode> {
    let HostsCmd::Prepare { inventory, nodes } = args.cmd;
    prepare_cli(&inventory, &nodes)
}

/// `hosts prepare` (also `test --prepare-hosts`): prints the per-host table.
pub fn prepare_cli(inventory: &str, nodes: &[String]) -> anyhow::Result<ExitCode> {
    let mut inv = crate::inventory::resolve_cli(inventory)?;
    if !nodes.is_empty() {
        inv = inv.select(nodes).map_err(|e| crate::exit::usage(e.to_string()))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let control = Control::connect(&inv, &ControlOptions::default()).await?;
        let r = prepare(&control).await;
        control.close().await;
        let rows = r?;
        outln!("{:<8} {:<10} {:<40} installed", "node", "manager", "already present");
        let mut failed = false;
        for row in &rows {
            outln!(
                "{:<8} {:<10} {:<40} {}",
                row.node,
                if row.pm.is_empty() { "-" } else { &row.pm },
                row.present.join(","),
                match &row.error {
                    Some(e) => format!("FAILED: {e}"),
                    None if row.installed.is_empty() => "-".into(),
                    None => row.installed.join(","),
                }
            );
            failed |= row.error.is_some();
        }
        Ok(if failed { ExitCode::from(crate::exit::HARNESS) } else { ExitCode::SUCCESS })
    })
}

/// What `prepare` found and did on one host.
#[derive(Debug)]
pub struct Prepared {
    pub node: String,
    pub pm: String,
    pub present: Vec<String>,
    /// Packages installed.
    pub installed: Vec<String>,
    pub error: Option<String>,
}

/// Installs the missing [`HOST_TOOLS`] on every host, in parallel, through the hosts'
/// `become`. A host that has them all is not touched.
pub async fn prepare(control: &Control) -> anyhow::Result<Vec<Prepared>> {
    let mut probe = String::from(PACKAGE_MANAGER_SH);
    for t in HOST_TOOLS {
        probe.push_str(&format!("if command -v {t} >/dev/null 2>&1; then echo have={t}; else echo missing={t}; fi\n"));
    }
    let calls = control.node_names().into_iter().map(|node| {
        let probe = probe.clone();
        async move {
            let mut row = Prepared { node: node.clone(), pm: String::new(), present: vec![], installed: vec![], error: None };
            let out = match control.run(&node, &probe, Duration::from_secs(30)).await.and_then(|o| o.check()) {
                Ok(o) => o.stdout_str(),
                Err(e) => {
                    row.error = Some(e.to_string());
                    return row;
                }
            };
            let mut missing = Vec::new();
            for line in out.lines() {
                match line.split_once('=') {
                    Some(("pm", v)) => row.pm = v.trim().into(),
                    Some(("have", v)) => row.present.push(v.trim().into()),
                    Some(("missing", v)) => missing.push(v.trim().to_string()),
                    _ => {}
                }
            }
            if missing.is_empty() {
                return row;
            }
            let pkgs = packages(&row.pm, &missing);
            let Some(cmd) = install_command(&row.pm, &pkgs) else {
                row.error = Some(format!("no apt-get, dnf, yum or zypper to install {}", pkgs.join(" ")));
                return row;
            };
            match control.run(&node, &cmd, Duration::from_secs(900)).await.and_then(|o| o.check()) {
                Ok(_) => row.installed = pkgs.iter().map(|p| p.to_string()).collect(),
                Err(e) => row.error = Some(e.to_string()),
            }
            row
        }
    });
    let rows = futures::future::join_all(calls).await;
    if rows.is_empty() {
        bail!("no hosts");
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_follow_the_package_manager() {
        assert_eq!(package_for("tc", "apt-get"), "iproute2");
        assert_eq!(package_for("tc", "dnf"), "iproute-tc");
        assert_eq!(package_for("conntrack", "zypper"), "conntrack-tools");
        assert_eq!(package_for("ps", "yum"), "procps-ng");
        assert_eq!(package_for("timeout", "zypper"), "coreutils");
        assert!(install_command("pacman", &["x"]).is_none());
        let m = describe_missing("n2", "dnf", &["tc".into(), "conntrack".into()]);
        assert!(m.contains("n2") && m.contains("sudo dnf install -y conntrack-tools iproute-tc"), "{m}");
    }
}
