//! The on-host journal that makes every fault undoable without the controller.
//!
//! Before a fault touches a host, the host gets `<dir>/<id>.undo.sh` (the exact undo) and a
//! detached watchdog `setsid sh -c 'sleep N; sh <id>.undo.sh; rm <id>.*'`, and then
//! `<dir>/<id>.json` (what, when, expiry, the undo, the watchdog's pid). So a fault heals
//! itself after its expiry even if the controller is SIGKILLed, and `faultline nemesis heal`
//! or the start of any test replays whatever journals are left. Undo scripts are idempotent:
//! healing what is already healed succeeds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, run_all};
use crate::script::quote;
use crate::{NemesisError, Result};

const UNDO_EOF: &str = "FAULTLINE_UNDO_EOF";

/// One journal entry as stored in `<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub family: String,
    pub created_unix_ms: u64,
    pub expires_unix_ms: u64,
    pub undo: String,
    #[serde(default)]
    pub description: serde_json::Value,
    /// The expiry watchdog's process group; an explicit heal cancels it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog_pid: Option<u32>,
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `<family>-<unix ms>-<random>`: unique across controllers, sortable by time, and its
/// prefix lets a heal select one family with a glob.
pub fn new_id(family: &str, rng: &mut impl Rng) -> String {
    format!(
        "{family}-{}-{:06x}",
        now_unix_ms(),
        rng.random::<u32>() & 0xff_ffff
    )
}

/// Which journals a heal replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    All,
    Family(String),
    Id(String),
}

impl Select {
    fn glob(&self) -> String {
        match self {
            Select::All => "*".to_string(),
            Select::Family(f) => format!("{}-*", quote(f)),
            Select::Id(id) => quote(id),
        }
    }
}

/// Seconds the watchdog sleeps: at least one, rounded up.
pub fn expiry_secs(expiry: Duration) -> u64 {
    expiry.as_millis().div_ceil(1000).max(1) as u64
}

/// The script that journals a fault, arms its watchdog and then applies it. `set -e`: if the
/// journal cannot be written the fault is never applied.
pub fn apply_script(dir: &str, entry: &Entry, apply: &str) -> String {
    assert!(
        !entry.undo.lines().any(|l| l == UNDO_EOF),
        "undo script contains the heredoc delimiter"
    );
    assert!(entry.watchdog_pid.is_none());
    let json = serde_json::to_string(entry).expect("journal entry serializes");
    let prefix = format!(
        "{},\"watchdog_pid\":",
        json.strip_suffix('}').expect("a JSON object")
    );
    let secs = expiry_secs(Duration::from_millis(
        entry.expires_unix_ms.saturating_sub(entry.created_unix_ms),
    ));
    format!(
        "set -e\n\
         J={dir}\n\
         id={id}\n\
         mkdir -p \"$J\"\n\
         cat > \"$J/$id.undo.sh\" <<'{UNDO_EOF}'\n\
         {undo}\n\
         {UNDO_EOF}\n\
         setsid sh -c 'sleep \"$1\"; sh \"$0/$2.undo.sh\" >/dev/null 2>&1; rm -f \"$0/$2.json\" \"$0/$2.undo.sh\"' \"$J\" {secs} \"$id\" </dev/null >/dev/null 2>&1 &\n\
         wd=$!\n\
         printf '%s%s}}\\n' {prefix} \"$wd\" > \"$J/$id.json.tmp\"\n\
         mv \"$J/$id.json.tmp\" \"$J/$id.json\"\n\
         {apply}\n",
        dir = quote(dir),
        id = quote(&entry.id),
        undo = entry.undo.trim_end(),
        prefix = quote(&prefix),
        apply = apply.trim_end(),
    )
}

/// Replays the selected journals: cancels each watchdog (only if its command line still
/// names the entry, so a recycled pid is never signalled), runs the undo, removes the entry.
/// Prints `healed <id>` per entry; fails if any undo failed, leaving that entry for a retry.
pub fn heal_script(dir: &str, select: &Select) -> String {
    format!(
        r#"J={dir}
[ -d "$J" ] || exit 0
rm -f "$J"/*.json.tmp
rc=0
for u in "$J"/{glob}.undo.sh; do
  [ -e "$u" ] || continue
  id=$(basename "$u" .undo.sh)
  j="$J/$id.json"
  wd=$(sed -n 's/.*"watchdog_pid":\([0-9][0-9]*\).*/\1/p' "$j" 2>/dev/null || true)
  if [ -n "$wd" ] && tr '\0' ' ' < "/proc/$wd/cmdline" 2>/dev/null | grep -qF -- "$id"; then
    kill -TERM -"$wd" 2>/dev/null || true
  fi
  if sh "$u"; then rm -f "$j" "$u"; echo "healed $id"; else echo "undo of $id failed" >&2; rc=1; fi
done
exit $rc
"#,
        dir = quote(dir),
        glob = select.glob(),
    )
}

/// Drops a journal entry without running its undo: used when a newer fault has already
/// replaced this one's effect on the host (the lag phase of `constrained`).
pub fn forget_script(dir: &str, id: &str) -> String {
    format!(
        r#"J={dir}
id={id}
j="$J/$id.json"
wd=$(sed -n 's/.*"watchdog_pid":\([0-9][0-9]*\).*/\1/p' "$j" 2>/dev/null || true)
if [ -n "$wd" ] && tr '\0' ' ' < "/proc/$wd/cmdline" 2>/dev/null | grep -qF -- "$id"; then
  kill -TERM -"$wd" 2>/dev/null || true
fi
rm -f "$j" "$J/$id.undo.sh"
"#,
        dir = quote(dir),
        id = quote(id),
    )
}

/// Prints every journal entry as one JSON line. Never exits: it is embedded in larger scripts.
pub fn list_script(dir: &str) -> String {
    format!(
        r#"J={dir}
for j in "$J"/*.json; do
  [ -e "$j" ] || continue
  tr -d '\n' < "$j"; echo
done
"#,
        dir = quote(dir)
    )
}

/// Parses [`list_script`] output; a line that is not an entry is reported, not skipped.
pub fn parse_listing(stdout: &str) -> Vec<std::result::Result<Entry, String>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| format!("unreadable journal entry {l:?}: {e}"))
        })
        .collect()
}

/// What one host must do for one fault.
#[derive(Debug, Clone)]
pub struct HostFault {
    pub node: String,
    pub apply: String,
    pub undo: String,
}

/// Journals and applies one fault on every listed host at once. If any host fails, the
/// fault is healed everywhere it was journaled and the first error is returned, so a fault
/// is never left half-applied and untracked.
pub async fn apply_journaled(
    cx: &dyn Cluster,
    family: &'static str,
    id: &str,
    expiry: Duration,
    description: &serde_json::Value,
    hosts: Vec<HostFault>,
) -> Result<Vec<String>> {
    let out = apply_journaled_output(cx, family, id, expiry, description, hosts).await?;
    Ok(out.into_iter().map(|(n, _)| n).collect())
}

/// [`apply_journaled`], keeping each host's output (for faults that report what they did).
pub async fn apply_journaled_output(
    cx: &dyn Cluster,
    family: &'static str,
    id: &str,
    expiry: Duration,
    description: &serde_json::Value,
    hosts: Vec<HostFault>,
) -> Result<Vec<(String, crate::Output)>> {
    apply_journaled_in(cx, &cx.paths().journal_dir, family, id, expiry, description, hosts).await
}

/// [`apply_journaled_output`] into the journal at `dir` (the fault journal, or the
/// fixture journal).
pub async fn apply_journaled_in(
    cx: &dyn Cluster,
    dir: &str,
    family: &'static str,
    id: &str,
    expiry: Duration,
    description: &serde_json::Value,
    hosts: Vec<HostFault>,
) -> Result<Vec<(String, crate::Output)>> {
    let dir = dir.to_string();
    let created = now_unix_ms();
    let scripts = hosts
        .iter()
        .map(|h| {
            let entry = Entry {
                id: id.to_string(),
                family: family.to_string(),
                created_unix_ms: created,
                expires_unix_ms: created + expiry.as_millis() as u64,
                undo: h.undo.clone(),
                description: description.clone(),
                watchdog_pid: None,
            };
            (h.node.clone(), apply_script(&dir, &entry, &h.apply))
        })
        .collect();
    let results = run_all(cx, &format!("{family} fault"), scripts).await;
    let mut first_err: Option<NemesisError> = None;
    for (_, r) in &results {
        if let Err(e) = r {
            first_err.get_or_insert_with(|| e.clone());
        }
    }
    if let Some(e) = first_err {
        let nodes: Vec<String> = results.into_iter().map(|(n, _)| n).collect();
        let _ = heal_in(cx, &dir, &nodes, &Select::Id(id.to_string())).await;
        return Err(e);
    }
    Ok(results
        .into_iter()
        .map(|(n, r)| (n, r.expect("errors returned above")))
        .collect())
}

/// Runs [`heal_script`] on the given nodes; returns `(node, healed ids)` and the errors.
pub async fn heal_on(
    cx: &dyn Cluster,
    nodes: &[String],
    select: &Select,
) -> (Vec<(String, Vec<String>)>, Vec<NemesisError>) {
    heal_in(cx, &cx.paths().journal_dir, nodes, select).await
}

/// [`heal_on`] for the journal at `dir`.
pub async fn heal_in(
    cx: &dyn Cluster,
    dir: &str,
    nodes: &[String],
    select: &Select,
) -> (Vec<(String, Vec<String>)>, Vec<NemesisError>) {
    let script = heal_script(dir, select);
    let results = run_all(
        cx,
        "heal",
        nodes.iter().map(|n| (n.clone(), script.clone())).collect(),
    )
    .await;
    let mut healed = Vec::new();
    let mut errors = Vec::new();
    for (node, r) in results {
        match r {
            Ok(out) => healed.push((
                node,
                out.stdout
                    .lines()
                    .filter_map(|l| l.strip_prefix("healed "))
                    .map(str::to_string)
                    .collect(),
            )),
            Err(e) => errors.push(e),
        }
    }
    (healed, errors)
}

/// The shared shape of the process faults (kill, pause, the disk faults): pick the targets
/// from the seed, describe them, and apply each host's journaled (apply, undo) scripts, given
/// the node name and its pidfile. A host whose script prints `changed {json}` lines has them
/// recorded under `changed.<node>` in the description, so the history says exactly what was
/// damaged.
pub async fn process_fault(
    cx: &dyn Cluster,
    opts: &crate::FaultOptions,
    seed: u64,
    family: &'static str,
    scripts: impl Fn(&str, &str) -> (String, String),
) -> Result<crate::Applied> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (targets, leader) = crate::target::resolve_with(&opts.target, cx, &mut rng).await?;
    process_fault_on(cx, opts, &mut rng, family, targets, leader, scripts).await
}

/// [`process_fault`] on targets resolved already, with the rng that resolved them: for a
/// family that acts on the targets before their scripts run (the membership faults remove
/// them first, after which `leader` names another node).
pub async fn process_fault_on(
    cx: &dyn Cluster,
    opts: &crate::FaultOptions,
    rng: &mut rand::rngs::StdRng,
    family: &'static str,
    targets: Vec<String>,
    leader: Option<String>,
    scripts: impl Fn(&str, &str) -> (String, String),
) -> Result<crate::Applied> {
    let pidfile = cx.paths().pidfile;
    let id = new_id(family, rng);
    let mut description = serde_json::json!({
        "target": opts.target.to_string(),
        "targets": targets,
        "leader": leader,
        "expiry_ms": opts.expiry.as_millis() as u64,
    });
    let hosts = targets
        .iter()
        .map(|n| {
            let (apply, undo) = scripts(n, &pidfile);
            HostFault {
                node: n.clone(),
                apply,
                undo,
            }
        })
        .collect();
    let outputs = apply_journaled_output(cx, family, &id, opts.expiry, &description, hosts).await?;
    let mut changed = serde_json::Map::new();
    for (node, out) in &outputs {
        let mut lines = Vec::new();
        for l in out.stdout.lines().filter_map(|l| l.strip_prefix("changed ")) {
            // The fault is applied by now: an unreadable report is kept verbatim rather than
            // failing (and leaving an applied fault unrecorded).
            let v = serde_json::from_str(l).unwrap_or_else(|_| serde_json::Value::String(l.to_string()));
            lines.push(v);
        }
        if !lines.is_empty() {
            changed.insert(node.clone(), serde_json::Value::Array(lines));
        }
    }
    if !changed.is_empty() {
        description["changed"] = serde_json::Value::Object(changed);
    }
    let hosts = outputs.into_iter().map(|(n, _)| n).collect();
    Ok(crate::Applied {
        family,
        journal_id: id,
        hosts,
        description,
    })
}
