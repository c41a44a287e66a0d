//! Disk faults on a stopped node: `bitflip` (one bit of the log or the snapshot), `truncate`
//! (the log's tail) and `wipe` (the whole durable state), Jepsen's `bitflip-wal`,
//! `truncate-wal` and a lost disk. Each kills the node by its pidfile, damages its files, and
//! prints `changed {json}` saying exactly what it changed (file, offset, bytes), which the
//! history event carries. The heal starts the node again: what it does with the damage
//! (repair a torn tail, refuse a corrupt middle, stay out after a wipe) is what the run tests.
//!
//! Which files: the database names its durable state in [`crate::HostPaths::state`]; a
//! database that names none cannot carry these faults (`Unsupported`), rather than having
//! some guessed file damaged. Offsets and lengths come from the fault's seed, so a run is
//! reproducible given the same files.

use rand::{Rng, SeedableRng};

use crate::cluster::{Cluster, StatePaths};
use crate::journal;
use crate::kill::{start_script, stop_script};
use crate::script::quote;
use crate::{Applied, FaultOptions, NemesisError, Result};

/// At most this many bytes are cut from a log's tail: a page, the most a torn or lost write
/// takes at once, and small enough that the node has a log left to recover.
pub const TRUNCATE_BYTES_MAX: u64 = 4096;

/// What a disk fault does to the files, given per-host random numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Flip bit `bit` of the byte at `pick_offset % size` of one non-empty file, chosen by
    /// `pick_file` among the log and snapshot files.
    Bitflip {
        pick_file: u64,
        pick_offset: u64,
        bit: u8,
    },
    /// Cut `1 + pick % min(size, TRUNCATE_BYTES_MAX)` bytes off the last log file.
    Truncate { pick: u64 },
    /// Remove the whole state directory.
    Wipe,
}

impl Damage {
    fn draw(family: &str, rng: &mut impl Rng) -> Damage {
        // 2^52: dash's arithmetic is signed 64-bit, so the script's modulo never overflows.
        let big = |rng: &mut dyn rand::RngCore| rng.next_u64() >> 12;
        match family {
            "bitflip" => Damage::Bitflip {
                pick_file: big(rng),
                pick_offset: big(rng),
                bit: rng.random_range(0..8),
            },
            "truncate" => Damage::Truncate { pick: big(rng) },
            "wipe" => Damage::Wipe,
            other => unreachable!("no disk family {other}"),
        }
    }
}

/// Lists the existing, non-empty regular files among the globs (relative to the state
/// directory), one per line, in glob (sorted) order.
fn files_fn(globs: &[String]) -> String {
    format!(
        r#"state_files() {{
  for f in {globs}; do
    [ -f "$f" ] && [ -s "$f" ] && printf '%s\n' "$f"
  done
  return 0
}}
"#,
        // Globs are the database's own patterns, not user input; they must expand, so they
        // are not quoted (but are checked to hold no shell syntax in `check_glob`).
        globs = globs.join(" ")
    )
}

/// A glob may hold path characters and `*` only: it is spliced into the script unquoted.
fn check_glob(g: &str) -> Result<()> {
    let ok = !g.is_empty()
        && g.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '*'));
    if ok {
        Ok(())
    } else {
        Err(NemesisError::Invalid(format!(
            "state file pattern {g:?} may hold only letters, digits, '/', '.', '_', '-' and '*'"
        )))
    }
}

/// The damage itself, run after the kill with the state directory as working directory.
/// No `sync`: the restarted node reads the damage through the page cache, and a global sync
/// on a host whose disk carries fsync-bound nodes stalls them all for seconds (a bitflip took
/// 3.5 s and stopped every write in a local cluster sharing one disk).
/// Prints one `changed {json}` line; exits non-zero (with a message) when there is nothing
/// to damage, so a fault that changed nothing is never recorded as applied.
pub fn damage_script(state: &StatePaths, damage: Damage) -> Result<String> {
    for g in state.log.iter().chain(&state.snapshot) {
        check_glob(g)?;
    }
    let dir = quote(&state.dir);
    let head = format!(
        "d={dir}\n[ -d \"$d\" ] || {{ echo \"no state directory $d\" >&2; exit 1; }}\ncd \"$d\"\n"
    );
    let body = match damage {
        Damage::Bitflip {
            pick_file,
            pick_offset,
            bit,
        } => {
            let all: Vec<String> = state.log.iter().chain(&state.snapshot).cloned().collect();
            format!(
                r#"{files}files=$(state_files)
n=$(printf '%s\n' "$files" | grep -c . || true)
[ "$n" -gt 0 ] || {{ echo "no log or snapshot file in $d to flip a bit of" >&2; exit 1; }}
f=$(printf '%s\n' "$files" | sed -n "$(( {pick_file} % n + 1 ))p")
size=$(wc -c < "$f" | tr -d ' ')
off=$(( {pick_offset} % size ))
b=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' \n')
nb=$(( b ^ (1 << {bit}) ))
printf "$(printf '\\%03o' "$nb")" | dd of="$f" bs=1 seek="$off" count=1 conv=notrunc 2>/dev/null
echo "changed {{\"action\":\"bitflip\",\"file\":\"$d/$f\",\"size_bytes\":$size,\"offset\":$off,\"bit\":{bit},\"before\":$b,\"after\":$nb}}"
"#,
                files = files_fn(&all)
            )
        }
        Damage::Truncate { pick } => format!(
            r#"{files}f=$(state_files | tail -n 1)
[ -n "$f" ] || {{ echo "no log file in $d to truncate" >&2; exit 1; }}
size=$(wc -c < "$f" | tr -d ' ')
room=$size; [ "$room" -gt {max} ] && room={max}
cut=$(( 1 + {pick} % room ))
truncate -s $(( size - cut )) "$f"
echo "changed {{\"action\":\"truncate\",\"file\":\"$d/$f\",\"size_bytes\":$size,\"offset\":$(( size - cut )),\"cut_bytes\":$cut}}"
"#,
            files = files_fn(&state.log),
            max = TRUNCATE_BYTES_MAX,
        ),
        Damage::Wipe => r#"files=$(find . -type f | wc -l | tr -d ' ')
bytes=$(find . -type f -exec cat {} + | wc -c | tr -d ' ')
cd /
rm -rf "$d"
echo "changed {\"action\":\"wipe\",\"dir\":\"$d\",\"files\":$files,\"bytes\":$bytes}"
"#
        .to_string(),
    };
    Ok(format!("{head}{body}"))
}

/// The state paths, or why this database cannot carry a disk fault.
fn state_of(cx: &dyn Cluster, family: &str) -> Result<StatePaths> {
    cx.paths().state.ok_or_else(|| {
        NemesisError::Unsupported(format!(
            "{family}: the database names no durable state files for faultline to damage"
        ))
    })
}

fn start_family<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
    family: &'static str,
) -> crate::BoxFuture<'a, Result<Applied>> {
    Box::pin(async move {
        let state = state_of(cx, family)?;
        // Build every host's script before anything runs, so a bad pattern touches no host.
        let mut scripts = std::collections::BTreeMap::new();
        for (i, node) in cx.nodes().iter().enumerate() {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            scripts.insert(node.clone(), damage_script(&state, Damage::draw(family, &mut rng))?);
        }
        journal::process_fault(cx, opts, seed, family, move |node, pidfile| {
            (
                format!("{}{}", stop_script(pidfile), scripts[node]),
                start_script(pidfile, &cx.start_command(node)),
            )
        })
        .await
    })
}

pub fn start_bitflip<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
) -> crate::BoxFuture<'a, Result<Applied>> {
    start_family(cx, opts, seed, "bitflip")
}

pub fn start_truncate<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
) -> crate::BoxFuture<'a, Result<Applied>> {
    start_family(cx, opts, seed, "truncate")
}

pub fn start_wipe<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
) -> crate::BoxFuture<'a, Result<Applied>> {
    start_family(cx, opts, seed, "wipe")
}

/// A disk fault leaves a stopped node with damaged files; the damage is the point and is not
/// undone, and restarting nodes is not a heal sweep's business (as with `kill`).
pub fn sweep_script(_: &crate::HostPaths) -> String {
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn state(dir: &std::path::Path) -> StatePaths {
        StatePaths {
            dir: dir.to_string_lossy().into_owned(),
            log: vec!["wal/*.log".into()],
            snapshot: vec!["snap.bin".into()],
            lazyfs: None,
        }
    }

    fn run(script: &str) -> (bool, String, String) {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn changed(stdout: &str) -> serde_json::Value {
        let line = stdout.lines().find_map(|l| l.strip_prefix("changed ")).expect(stdout);
        serde_json::from_str(line).unwrap()
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("faultline-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("wal")).unwrap();
        d
    }

    #[test]
    fn bitflip_flips_exactly_the_recorded_bit() {
        let d = tmp("flip");
        let before: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::write(d.join("wal/0001.log"), &before).unwrap();
        for (pick_offset, bit) in [(0u64, 0u8), (999, 7), (123_456_789, 3)] {
            std::fs::write(d.join("wal/0001.log"), &before).unwrap();
            let s = damage_script(&state(&d), Damage::Bitflip { pick_file: 0, pick_offset, bit }).unwrap();
            let (ok, out, err) = run(&s);
            assert!(ok, "{err}");
            let c = changed(&out);
            let off = (pick_offset % 1000) as usize;
            assert_eq!(c["offset"], off as u64);
            assert_eq!(c["file"], format!("{}/wal/0001.log", d.display()));
            let after = std::fs::read(d.join("wal/0001.log")).unwrap();
            assert_eq!(after.len(), before.len());
            let diff: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
            assert_eq!(diff, vec![off]);
            assert_eq!(before[off] ^ after[off], 1 << bit);
            assert_eq!(c["before"], before[off] as u64);
            assert_eq!(c["after"], after[off] as u64);
        }
        // The snapshot is a candidate too; empty files are not.
        std::fs::write(d.join("wal/0001.log"), b"").unwrap();
        std::fs::write(d.join("snap.bin"), [0u8; 8]).unwrap();
        let s = damage_script(&state(&d), Damage::Bitflip { pick_file: 5, pick_offset: 2, bit: 1 }).unwrap();
        let (ok, out, _) = run(&s);
        assert!(ok);
        assert_eq!(changed(&out)["file"], format!("{}/snap.bin", d.display()));
        assert_eq!(std::fs::read(d.join("snap.bin")).unwrap(), [0, 0, 2, 0, 0, 0, 0, 0]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn truncate_cuts_the_last_log_file_by_the_recorded_bytes() {
        let d = tmp("trunc");
        std::fs::write(d.join("wal/0001.log"), [1u8; 100]).unwrap();
        std::fs::write(d.join("wal/0002.log"), [2u8; 10_000]).unwrap();
        let s = damage_script(&state(&d), Damage::Truncate { pick: 5000 }).unwrap();
        let (ok, out, err) = run(&s);
        assert!(ok, "{err}");
        let c = changed(&out);
        assert_eq!(c["cut_bytes"], 1 + 5000 % TRUNCATE_BYTES_MAX);
        let len = std::fs::metadata(d.join("wal/0002.log")).unwrap().len();
        assert_eq!(len, 10_000 - (1 + 5000 % TRUNCATE_BYTES_MAX));
        assert_eq!(c["offset"], len);
        assert_eq!(std::fs::metadata(d.join("wal/0001.log")).unwrap().len(), 100);
        // A file shorter than the cap can lose all of it, never more.
        std::fs::remove_file(d.join("wal/0002.log")).unwrap();
        let s = damage_script(&state(&d), Damage::Truncate { pick: 99 }).unwrap();
        let (ok, out, _) = run(&s);
        assert!(ok);
        assert_eq!(changed(&out)["cut_bytes"], 100);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn wipe_removes_the_state_directory_and_nothing_else() {
        let d = tmp("wipe");
        std::fs::write(d.join("wal/0001.log"), [1u8; 100]).unwrap();
        let outside = d.with_extension("keep");
        std::fs::write(&outside, b"x").unwrap();
        let (ok, out, err) = run(&damage_script(&state(&d), Damage::Wipe).unwrap());
        assert!(ok, "{err}");
        let c = changed(&out);
        assert_eq!((c["files"].as_u64(), c["bytes"].as_u64()), (Some(1), Some(100)));
        assert!(!d.exists());
        assert!(outside.exists());
        std::fs::remove_file(outside).unwrap();
    }

    #[test]
    fn nothing_to_damage_is_an_error_not_a_silent_success() {
        let d = tmp("empty");
        for damage in [Damage::Bitflip { pick_file: 0, pick_offset: 0, bit: 0 }, Damage::Truncate { pick: 1 }] {
            let (ok, out, err) = run(&damage_script(&state(&d), damage).unwrap());
            assert!(!ok, "{out}");
            assert!(err.contains("no log"), "{err}");
        }
        std::fs::remove_dir_all(&d).unwrap();
        let (ok, _, err) = run(&damage_script(&state(&d), Damage::Wipe).unwrap());
        assert!(!ok && err.contains("no state directory"), "{err}");
    }

    #[test]
    fn patterns_cannot_inject_commands() {
        let mut s = state(std::path::Path::new("/x"));
        s.log = vec!["*.log; touch /tmp/pwned".into()];
        assert!(damage_script(&s, Damage::Truncate { pick: 1 }).is_err());
    }

    #[tokio::test]
    async fn a_database_without_state_paths_cannot_carry_a_disk_fault() {
        let cx = crate::fake::FakeCluster::new(3);
        let e = start_bitflip(&cx, &FaultOptions::default(), 1).await.unwrap_err();
        assert!(matches!(e, NemesisError::Unsupported(_)), "{e}");
        assert!(cx.scripts().is_empty(), "no host may be touched");
    }
}
