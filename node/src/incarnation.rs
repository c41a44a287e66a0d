//! Incarnations: a node that lost its durable state must not rejoin under its old name.
//!
//! A Raft node that forgot its vote can vote twice in one term; a Paxos acceptor that forgot
//! its promise can break it; either forgot log entries it acknowledged, which may have been
//! the quorum that made them committed. Such a node is a new member that has the old one's
//! name. So every data directory gets a random incarnation id when it is created, sent in
//! every peer hello, and every node remembers (durably) the incarnation it first saw for each
//! peer. A peer that comes back with another one lost its state: its connections are refused
//! and nothing is sent to it, until it is replaced by a membership change (or the cluster is
//! deployed afresh, which starts every node with a new data directory).
//!
//! What this does not see: a state directory cut back without being removed keeps its
//! incarnation (the disk faults' `truncate` can do that); the torn-tail rule of the WAL is
//! what stands there.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{error, warn};

/// What a peer's incarnation check can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IncarnationError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: expected `<peer> <incarnation>`, got {text:?}")]
    Parse { path: PathBuf, line: usize, text: String },
}

/// This node's incarnation and the ones it has seen for its peers.
pub struct Incarnations {
    own: u64,
    path: PathBuf,
    /// Accept a peer's new incarnation (PLANTED BUG `unsafe_rejoin_empty`).
    unsafe_rejoin_empty: bool,
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    seen: BTreeMap<String, u64>,
    /// Peers refused for a changed incarnation since this process started.
    replaced: BTreeMap<String, u64>,
}

/// Writes `text` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
fn write_durably(path: &Path, text: &str) -> Result<(), IncarnationError> {
    let io = |source| IncarnationError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

impl Incarnations {
    /// Loads (or, for a new state directory, creates) `<dir>/incarnation` and `<dir>/peers`.
    /// Call after the WAL is open, so `dir` exists.
    pub fn open(dir: &Path, unsafe_rejoin_empty: bool) -> Result<Incarnations, IncarnationError> {
        let own_path = dir.join("incarnation");
        let own = match std::fs::read_to_string(&own_path) {
            Ok(s) => s.trim().parse().map_err(|_| IncarnationError::Parse {
                path: own_path.clone(),
                line: 1,
                text: s.trim().to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Never 0, so a hello from an older build cannot pass for a real id.
                let id = rand::random::<u64>().max(1);
                write_durably(&own_path, &format!("{id}\n"))?;
                id
            }
            Err(source) => return Err(IncarnationError::Io { path: own_path, source }),
        };
        let path = dir.join("peers");
        let mut seen = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                for (i, l) in s.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let mut it = l.split_whitespace();
                    let parsed = match (it.next(), it.next().and_then(|x| x.parse::<u64>().ok()), it.next()) {
                        (Some(name), Some(inc), None) => Some((name.to_string(), inc)),
                        _ => None,
                    };
                    let (name, inc) =
                        parsed.ok_or_else(|| IncarnationError::Parse { path: path.clone(), line: i + 1, text: l.into() })?;
                    seen.insert(name, inc);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(IncarnationError::Io { path, source }),
        }
        Ok(Incarnations { own, path, unsafe_rejoin_empty, book: Mutex::new(Book { seen, replaced: BTreeMap::new() }) })
    }

    pub fn own(&self) -> u64 {
        self.own
    }

    /// Checks a peer's hello. The first incarnation seen for a peer is recorded durably
    /// before it is accepted; a different one later is refused (`Err` with the one known).
    pub fn check(&self, peer: &str, incarnation: u64) -> Result<(), u64> {
        let mut book = self.book.lock().expect("incarnation book lock");
        match book.seen.get(peer).copied() {
            Some(known) if known == incarnation => Ok(()),
            Some(known) if !self.unsafe_rejoin_empty => {
                if book.replaced.insert(peer.to_string(), incarnation).is_none() {
                    error!(
                        peer,
                        known,
                        theirs = incarnation,
                        "peer came back with a new incarnation: it lost its durable state; refusing it until it is replaced"
                    );
                }
                Err(known)
            }
            known => {
                if known.is_some() {
                    warn!(peer, theirs = incarnation, "unsafe_rejoin_empty: accepting a peer that lost its durable state");
                }
                book.seen.insert(peer.to_string(), incarnation);
                let text: String = book.seen.iter().map(|(p, i)| format!("{p} {i}\n")).collect();
                if let Err(e) = write_durably(&self.path, &text) {
                    // Not recorded means not checkable later: refuse rather than accept blind.
                    error!(error = %e, "cannot record a peer's incarnation");
                    book.seen.remove(peer);
                    return Err(0);
                }
                Ok(())
            }
        }
    }

    /// Forgets what was recorded for `peer`, once a committed configuration no longer has it
    /// as a member: the name may then be given to a fresh node (a removed host wiped and
    /// added again), which must be learned anew rather than refused as a wiped member.
    /// Whatever it held before its removal can no longer count toward any quorum.
    pub fn forget(&self, peer: &str) -> Result<(), IncarnationError> {
        let mut book = self.book.lock().expect("incarnation book lock");
        book.replaced.remove(peer);
        if book.seen.remove(peer).is_some() {
            let text: String = book.seen.iter().map(|(p, i)| format!("{p} {i}\n")).collect();
            write_durably(&self.path, &text)?;
        }
        Ok(())
    }

    /// The incarnation recorded for `peer`, 0 if none.
    pub fn known(&self, peer: &str) -> u64 {
        self.book.lock().expect("incarnation book lock").seen.get(peer).copied().unwrap_or(0)
    }

    /// Whether a peer's hello says it knew another incarnation of this node: this node's
    /// state directory was wiped since (never under `unsafe_rejoin_empty`).
    pub fn replaced_by(&self, knows_us_as: u64) -> bool {
        !self.unsafe_rejoin_empty && knows_us_as != 0 && knows_us_as != self.own
    }

    /// Peers refused for a changed incarnation.
    pub fn replaced(&self) -> Vec<String> {
        self.book.lock().expect("incarnation book lock").replaced.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fl-inc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_peer_with_a_new_incarnation_is_refused_across_restarts() {
        let d = dir("refuse");
        let a = Incarnations::open(&d, false).unwrap();
        let own = a.own();
        assert!(a.check("n2", 7).is_ok());
        assert!(a.check("n2", 7).is_ok());
        assert_eq!(a.check("n2", 8), Err(7), "a wiped n2 comes back with another id");
        assert_eq!(a.replaced(), vec!["n2"]);
        drop(a);
        // Restarted: same own id, and the book survived.
        let b = Incarnations::open(&d, false).unwrap();
        assert_eq!(b.own(), own);
        assert_eq!(b.check("n2", 8), Err(7));
        assert!(b.check("n3", 1).is_ok(), "a peer first seen now is recorded");
        // A wiped directory is a new incarnation.
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::create_dir_all(&d).unwrap();
        let c = Incarnations::open(&d, false).unwrap();
        assert_ne!(c.own(), own);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_removed_member_is_forgotten_durably_and_its_name_learned_anew() {
        let d = dir("forget");
        let a = Incarnations::open(&d, false).unwrap();
        assert!(a.check("n2", 7).is_ok());
        assert!(a.check("n3", 9).is_ok());
        assert_eq!(a.check("n2", 8), Err(7));
        a.forget("n2").unwrap();
        assert!(a.replaced().is_empty(), "no longer reported as refused");
        drop(a);
        let b = Incarnations::open(&d, false).unwrap();
        assert_eq!(b.known("n2"), 0, "forgotten across a restart");
        assert_eq!(b.known("n3"), 9, "the others are kept");
        assert!(b.check("n2", 8).is_ok(), "the fresh n2 is learned");
        assert_eq!(b.check("n2", 7), Err(8), "and then held to its own incarnation");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unsafe_rejoin_empty_accepts_the_new_incarnation() {
        let d = dir("unsafe");
        let a = Incarnations::open(&d, true).unwrap();
        assert!(a.check("n2", 7).is_ok());
        assert!(a.check("n2", 8).is_ok());
        assert!(a.replaced().is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_book_is_an_error_naming_the_line() {
        let d = dir("bad");
        std::fs::write(d.join("peers"), "n2 7\nn3 x\n").unwrap();
        let e = Incarnations::open(&d, false).err().unwrap().to_string();
        assert!(e.contains("peers:2") && e.contains("n3 x"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
