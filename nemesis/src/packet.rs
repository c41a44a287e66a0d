//! `packet`: delay and loss with `tc netem`, only on traffic to peer nodes.
//!
//! faultline installs a `prio` root qdisc with its own handle (`fa17:`) on the interface that
//! routes to the peers, hangs netem under an extra band, and steers only peer destinations
//! into that band with u32 filters — so the controller's SSH traffic is neither delayed nor
//! dropped. An interface whose root qdisc is not the kernel default is refused: faultline never
//! replaces or deletes a qdisc it did not create. Many kernels (containers, minimal VMs) lack
//! netem; [`probe_script`] finds out in a throw-away network namespace and the fault fails
//! with an error that says so.

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::{Cluster, run_checked};
use crate::journal::{self, HostFault};
use crate::script::quote;
use crate::target::resolve_with;
use crate::{Applied, FaultOptions, NemesisError, Result};

pub const HANDLE: &str = "fa17";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketSpec {
    pub delay_ms: u32,
    pub jitter_ms: u32,
    pub loss_percent: f64,
}

impl Default for PacketSpec {
    fn default() -> Self {
        PacketSpec {
            delay_ms: 50,
            jitter_ms: 10,
            loss_percent: 0.0,
        }
    }
}

impl PacketSpec {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=100.0).contains(&self.loss_percent) {
            return Err(NemesisError::Invalid(format!(
                "loss {}% is not within 0..=100",
                self.loss_percent
            )));
        }
        if self.delay_ms > 60_000 || self.jitter_ms > self.delay_ms {
            return Err(NemesisError::Invalid(format!(
                "delay {} ms / jitter {} ms: delay at most 60000 ms, jitter at most the delay",
                self.delay_ms, self.jitter_ms
            )));
        }
        Ok(())
    }

    fn netem_args(&self) -> String {
        let mut a = format!("delay {}ms", self.delay_ms);
        if self.jitter_ms > 0 {
            a.push_str(&format!(" {}ms", self.jitter_ms));
        }
        if self.loss_percent > 0.0 {
            a.push_str(&format!(" loss {}%", self.loss_percent));
        }
        a
    }
}

/// Tries a netem qdisc on the loopback of a fresh, private network namespace (`unshare -n`),
/// which vanishes with the command: nothing on the host is touched. Prints `netem: yes` or
/// `netem: no: <reason>`.
pub fn probe_script() -> String {
    r#"if ! command -v tc >/dev/null 2>&1; then echo "netem: no: tc (iproute2) is not installed"; exit 0; fi
if ! command -v unshare >/dev/null 2>&1; then echo "netem: no: unshare (util-linux) is not installed"; exit 0; fi
if out=$(unshare -n tc qdisc add dev lo root netem delay 1ms 2>&1); then echo "netem: yes"; else echo "netem: no: $out"; fi
"#
    .to_string()
}

/// Reads [`probe_script`] output: `Ok(())` when netem works, else the reason.
pub fn parse_probe(stdout: &str) -> std::result::Result<(), String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("netem: "))
        .unwrap_or("");
    match line.strip_prefix("netem: ") {
        Some("yes") => Ok(()),
        Some(rest) => {
            let reason = rest.strip_prefix("no: ").unwrap_or(rest).trim();
            let hint = if reason.contains("qdisc kind is unknown") {
                " (the kernel has no sch_netem module)"
            } else {
                ""
            };
            Err(format!("{reason}{hint}"))
        }
        None => Err(format!("unexpected probe output: {:?}", stdout.trim())),
    }
}

pub async fn probe(cx: &dyn Cluster, node: &str) -> Result<()> {
    let out = run_checked(cx, node, "netem probe", &probe_script()).await?;
    parse_probe(&out.stdout).map_err(|reason| {
        NemesisError::Unsupported(format!(
            "{node}: packet faults need tc netem, which this host cannot run: {reason}"
        ))
    })
}

/// Applies netem for traffic to `peers` on the interface that routes to them.
pub fn apply_script(peers: &[String], spec: &PacketSpec) -> String {
    let first = quote(peers.first().map(String::as_str).unwrap_or("127.0.0.1"));
    let mut s = format!(
        r#"dev=$(ip -o route get {first} | sed -n 's/.* dev \([^ ]*\).*/\1/p')
[ -n "$dev" ] || {{ echo "no route to {first_raw}" >&2; exit 1; }}
root=$(tc qdisc show dev "$dev" root)
case "$root" in
  *" {HANDLE}: "*) tc qdisc del dev "$dev" root ;;
  *" 0: "*|"") ;;
  *) echo "refusing to replace root qdisc on $dev that faultline did not create: $root" >&2; exit 1 ;;
esac
tc qdisc add dev "$dev" root handle {HANDLE}: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1
tc qdisc add dev "$dev" parent {HANDLE}:4 handle fa18: netem {args}
"#,
        first_raw = peers
            .first()
            .map(String::as_str)
            .unwrap_or("")
            .replace(['\'', '"', '$', '`', '\\'], ""),
        args = spec.netem_args(),
    );
    for p in peers {
        s.push_str(&format!(
            "tc filter add dev \"$dev\" parent {HANDLE}: protocol ip prio 1 u32 match ip dst {}/32 flowid {HANDLE}:4\n",
            quote(p)
        ));
    }
    s
}

/// Removes faultline's root qdisc from every interface that has one, and nothing else.
pub fn teardown_script() -> String {
    format!(
        r#"command -v tc >/dev/null 2>&1 || exit 0
for dev in $(ls /sys/class/net); do
  case "$(tc qdisc show dev "$dev" root 2>/dev/null)" in *" {HANDLE}: "*) tc qdisc del dev "$dev" root ;; esac
done
"#
    )
}

/// The registry's sweep: [`teardown_script`], whatever the journal says.
pub fn sweep_script(_: &crate::HostPaths) -> String {
    teardown_script()
}

/// One line per interface that carries faultline's qdisc.
pub fn status_script(_: &crate::HostPaths) -> String {
    format!(
        r#"command -v tc >/dev/null 2>&1 || exit 0
for dev in $(ls /sys/class/net); do
  case "$(tc qdisc show dev "$dev" root 2>/dev/null)" in *" {HANDLE}: "*) echo "netem qdisc on $dev" ;; esac
done
"#
    )
}

pub fn start<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
) -> crate::BoxFuture<'a, Result<Applied>> {
    Box::pin(async move {
        opts.packet.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let (targets, leader) = resolve_with(&opts.target, cx, &mut rng).await?;
        for t in &targets {
            probe(cx, t).await?;
        }
        let nodes = cx.nodes();
        let id = journal::new_id("packet", &mut rng);
        let description = json!({
            "target": opts.target.to_string(),
            "targets": targets,
            "leader": leader,
            "delay_ms": opts.packet.delay_ms,
            "jitter_ms": opts.packet.jitter_ms,
            "loss_percent": opts.packet.loss_percent,
            "expiry_ms": opts.expiry.as_millis() as u64,
        });
        let mut hosts = Vec::new();
        for t in &targets {
            let peers = nodes
                .iter()
                .filter(|n| *n != t)
                .map(|n| {
                    cx.address(n)
                        .ok_or_else(|| NemesisError::Invalid(format!("no address for node {n:?}")))
                })
                .collect::<Result<Vec<_>>>()?;
            hosts.push(HostFault {
                node: t.clone(),
                apply: apply_script(&peers, &opts.packet),
                undo: teardown_script(),
            });
        }
        let hosts =
            journal::apply_journaled(cx, "packet", &id, opts.expiry, &description, hosts).await?;
        Ok(Applied {
            family: "packet",
            journal_id: id,
            hosts,
            description,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_is_classified() {
        assert_eq!(parse_probe("netem: yes\n"), Ok(()));
        let e = parse_probe("netem: no: Error: Specified qdisc kind is unknown.\n").unwrap_err();
        assert!(e.contains("no sch_netem"), "{e}");
        assert!(
            parse_probe("netem: no: tc (iproute2) is not installed")
                .unwrap_err()
                .contains("iproute2")
        );
        assert!(parse_probe("garbage").is_err());
    }

    /// Runs the real probe on this machine and checks it agrees with a direct attempt in a
    /// private namespace: the probe must not invent an answer.
    #[test]
    fn probe_agrees_with_the_kernel() {
        let probe = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe_script())
            .output()
            .unwrap();
        let verdict = parse_probe(&String::from_utf8_lossy(&probe.stdout));
        let direct = std::process::Command::new("unshare")
            .args([
                "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
            ])
            .output()
            .unwrap();
        assert_eq!(
            verdict.is_ok(),
            direct.status.success(),
            "probe said {verdict:?}"
        );
        if let Err(reason) = verdict {
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn only_peer_destinations_are_steered_into_netem() {
        let s = apply_script(
            &["10.1.0.2".into(), "10.1.0.3".into()],
            &PacketSpec {
                delay_ms: 100,
                jitter_ms: 5,
                loss_percent: 1.5,
            },
        );
        assert!(s.contains("netem delay 100ms 5ms loss 1.5%"));
        assert_eq!(s.matches("match ip dst").count(), 2);
        assert!(s.contains("refusing to replace root qdisc"));
        assert!(
            PacketSpec {
                delay_ms: 1,
                jitter_ms: 2,
                loss_percent: 0.0
            }
            .validate()
            .is_err()
        );
        assert!(
            PacketSpec {
                delay_ms: 1,
                jitter_ms: 0,
                loss_percent: 101.0
            }
            .validate()
            .is_err()
        );
    }
}
