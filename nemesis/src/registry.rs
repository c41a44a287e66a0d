//! The nemesis registry: a family is a file plus one line in [`REGISTRY`].

use crate::{Applied, BoxFuture, Cluster, FaultOptions, NemesisError, Result};

/// How reports draw a family's fault windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PlotMeta {
    /// Colour of the shaded window, RGB.
    pub rgb: (u8, u8, u8),
    /// Legend label.
    pub label: &'static str,
}

impl PlotMeta {
    /// `#rrggbb`, for HTML and SVG.
    pub fn css(&self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.rgb.0, self.rgb.1, self.rgb.2)
    }
}

pub type StartFn =
    for<'a> fn(&'a dyn Cluster, &'a FaultOptions, u64) -> BoxFuture<'a, Result<Applied>>;

/// A nemesis package: its fault, how it heals, and how it is drawn. Every fault heals by
/// replaying its journal entry (see [`crate::journal`]), so heal needs no per-family code.
#[derive(Debug)]
pub struct NemesisPackage {
    pub name: &'static str,
    pub about: &'static str,
    /// Applies the fault with the given options and per-fault seed.
    pub start: StartFn,
    pub plot: PlotMeta,
}

impl NemesisPackage {
    /// History `f` of a fault's start.
    pub fn start_f(&self) -> String {
        format!("start-{}", self.name)
    }

    /// History `f` of a fault's heal.
    pub fn stop_f(&self) -> String {
        format!("stop-{}", self.name)
    }
}

pub static REGISTRY: &[NemesisPackage] = &[
    NemesisPackage {
        name: "kill",
        about: "SIGKILL the node process (by pidfile); heal restarts it",
        start: crate::kill::start,
        plot: PlotMeta {
            rgb: (192, 57, 43),
            label: "kill",
        },
    },
    NemesisPackage {
        name: "pause",
        about: "SIGSTOP the node process (by pidfile); heal sends SIGCONT",
        start: crate::pause::start,
        plot: PlotMeta {
            rgb: (142, 68, 173),
            label: "pause",
        },
    },
    NemesisPackage {
        name: "partition",
        about: "drop traffic between nodes with iptables, in one of several shapes",
        start: crate::partition::start,
        plot: PlotMeta {
            rgb: (230, 126, 34),
            label: "partition",
        },
    },
    NemesisPackage {
        name: "packet",
        about: "delay and drop packets between nodes with tc netem",
        start: crate::packet::start,
        plot: PlotMeta {
            rgb: (41, 128, 185),
            label: "packet delay/loss",
        },
    },
];

pub fn lookup(name: &str) -> Result<&'static NemesisPackage> {
    REGISTRY.iter().find(|p| p.name == name).ok_or_else(|| {
        NemesisError::Invalid(format!(
            "unknown nemesis {name:?} (known: {})",
            REGISTRY
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Plot metadata for a history `f` such as `start-partition`; `None` for non-nemesis ops.
pub fn plot_for_f(f: &str) -> Option<PlotMeta> {
    let family = f
        .strip_prefix("start-")
        .or_else(|| f.strip_prefix("stop-"))?;
    REGISTRY.iter().find(|p| p.name == family).map(|p| p.plot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for p in REGISTRY {
            assert_eq!(lookup(p.name).unwrap().name, p.name);
            assert_eq!(REGISTRY.iter().filter(|q| q.name == p.name).count(), 1);
        }
        assert!(
            lookup("flood")
                .unwrap_err()
                .to_string()
                .contains("kill, pause, partition, packet")
        );
        assert_eq!(plot_for_f("stop-partition").unwrap().label, "partition");
        assert!(plot_for_f("cas").is_none());
        assert_eq!(lookup("kill").unwrap().plot.css(), "#c0392b");
    }
}
