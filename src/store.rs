//! The store: one directory per run, `store/<test-name>/<UTC timestamp>/`, holding
//! everything needed to re-check or compare the run later without the cluster:
//!
//! ```text
//! test.json       options, seed, faultline version and commit, inventory digest
//! history.jsonl   every client, nemesis and monitor event, appended as the run goes
//! results.json    the checkers' verdicts
//! faultline.log   the controller's log
//! nodes/<name>/   each node's logs, collected at the end
//! ```
//!
//! `store/latest` and `store/<test-name>/latest` point at the newest run.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

pub const TEST_FILE: &str = "test.json";
pub const HISTORY_FILE: &str = "history.jsonl";
pub const RESULTS_FILE: &str = "results.json";
pub const LOG_FILE: &str = "faultline.log";
pub const NODES_DIR: &str = "nodes";

/// Runs of one test that may start in the same millisecond before `create` gives up
/// (rather than reuse a directory).
const RUNS_PER_MS_MAX: u32 = 999;

/// The commit this binary was built from (see build.rs).
pub const GIT_COMMIT: &str = env!("FAULTLINE_GIT_COMMIT");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A run's directory, created by [`RunDir::create`].
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `<store>/<name>/<timestamp>/` (with a numeric suffix if two runs start in
    /// the same millisecond) and repoints the `latest` links at it.
    pub fn create(store: &Path, name: &str) -> anyhow::Result<RunDir> {
        let now = SystemTime::now();
        let stamp = utc_stamp(now);
        let test_dir = store.join(name);
        std::fs::create_dir_all(&test_dir)
            .with_context(|| format!("cannot create store directory {}", test_dir.display()))?;
        let mut path = test_dir.join(&stamp);
        let mut suffix = 0;
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && suffix < RUNS_PER_MS_MAX => {
                    suffix += 1;
                    path = test_dir.join(format!("{stamp}-{suffix}"));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()));
                }
            }
        }
        std::fs::create_dir_all(path.join(NODES_DIR))
            .with_context(|| format!("cannot create {}", path.join(NODES_DIR).display()))?;
        let dir = RunDir { path };
        let rel = dir.path.strip_prefix(store).unwrap_or(&dir.path).to_path_buf();
        relink(&store.join("latest"), &rel)?;
        let leaf = dir.path.file_name().map(PathBuf::from).unwrap_or_default();
        relink(&test_dir.join("latest"), &leaf)?;
        Ok(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.path.join(NODES_DIR).join(node)
    }

    /// Writes `value` as pretty JSON, atomically (temp file, then rename), so a reader
    /// never sees half a file.
    pub fn write_json(&self, name: &str, value: &serde_json::Value) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)? + "\n";
        write_atomic(&self.file(name), text.as_bytes())
    }
}

/// Writes a temporary file and renames it over `path`, so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

/// Points the symlink `link` at `target` by creating a new link and renaming it over the
/// old one, so the link is never missing.
fn relink(link: &Path, target: &Path) -> anyhow::Result<()> {
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
    std::fs::rename(&tmp, link).with_context(|| format!("cannot update {}", link.display()))?;
    Ok(())
}

/// `20261127T051234.567Z`: sorts by time, and is safe in a path.
pub fn utc_stamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{ms:03}Z")
}

/// `2026-11-27T05:12:34.567Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// UTC calendar fields of `t` (Howard Hinnant's days-to-civil algorithm).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let dur = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = dur.as_secs() as i64;
    let ms = dur.subsec_millis();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, (sod / 60) % 60, sod % 60, ms)
}

/// sha256 of the inventory file, so a stored run records which cluster it ran against.
pub fn digest_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("sha256:{:x}", Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_756_354_567);
        assert_eq!(rfc3339(t), "2026-11-27T05:12:34.567Z");
        assert_eq!(utc_stamp(t), "20261127T051234.567Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn run_dirs_are_unique_and_latest_follows_the_newest() {
        let store = std::env::temp_dir().join(format!("fl-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let a = RunDir::create(&store, "t").unwrap();
        let b = RunDir::create(&store, "t").unwrap();
        assert_ne!(a.path, b.path);
        assert!(b.path.join(NODES_DIR).is_dir());
        let latest = std::fs::canonicalize(store.join("latest")).unwrap();
        assert_eq!(latest, std::fs::canonicalize(&b.path).unwrap());
        let per_test = std::fs::canonicalize(store.join("t").join("latest")).unwrap();
        assert_eq!(per_test, latest);
        b.write_json(TEST_FILE, &serde_json::json!({"seed": 1})).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(b.file(TEST_FILE)).unwrap()).unwrap();
        assert_eq!(back["seed"], 1);
        let leftovers: Vec<_> = std::fs::read_dir(&b.path)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        std::fs::remove_dir_all(&store).unwrap();
    }
}
