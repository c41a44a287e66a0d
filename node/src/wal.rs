//! Durable storage: an append-only log of CRC-framed records plus one snapshot file.
//!
//! Frame: `len: u32 LE | crc32(len): u32 LE | crc32(payload): u32 LE | payload`, after an
//! 8-byte file magic. A batch of records is written with one `write` and made durable with
//! one `fdatasync` (group commit). On open, a frame whose (checked) length runs past the end
//! of the file, or a last frame whose payload checksum fails, is a torn write from a crash
//! and is truncated away; a bad frame followed by more data — including a corrupt length,
//! which the length's own checksum exposes — is corruption in the middle and an error,
//! because silently dropping acknowledged records would turn a disk fault into a consistency
//! violation.
//!
//! Compaction writes a new snapshot file and a new log (`*.tmp`, fsync, rename, fsync the
//! directory), so every crash point leaves either the old or the new pair — and the core
//! tolerates the old log alongside the new snapshot.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::replica::Snapshot;

const WAL_MAGIC: &[u8; 8] = b"FLWAL\x00\x00\x01";
const SNAP_MAGIC: &[u8; 8] = b"FLSNP\x00\x00\x01";
const HEADER: usize = 8;
const FRAME_HEADER: usize = 12;
/// No single record may exceed this; a larger length field is garbage.
pub const MAX_RECORD_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: corrupt record at byte offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path}: not a faultline {what} file (bad magic)")]
    BadMagic { path: PathBuf, what: &'static str },
}

/// What is wrong with a log or snapshot image; [`WalError`] adds the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("bad magic")]
    BadMagic,
    #[error("record header checksum mismatch")]
    HeaderChecksum { offset: u64 },
    #[error("record length {len} exceeds the limit")]
    TooLong { offset: u64, len: usize },
    #[error("checksum mismatch before the end of the log")]
    Checksum { offset: u64 },
    #[error("truncated snapshot header")]
    TruncatedSnapshot,
    #[error("snapshot length {len} does not match the file")]
    SnapshotLength { len: usize },
    #[error("snapshot checksum mismatch")]
    SnapshotChecksum,
    #[error("undecodable snapshot: {0}")]
    SnapshotDecode(postcard::Error),
}

impl ImageError {
    /// Byte offset of the damaged frame (0 for whole-file problems).
    pub fn offset(&self) -> u64 {
        match self {
            ImageError::HeaderChecksum { offset }
            | ImageError::TooLong { offset, .. }
            | ImageError::Checksum { offset } => *offset,
            _ => 0,
        }
    }

    fn in_file(self, path: &Path, what: &'static str) -> WalError {
        match self {
            ImageError::BadMagic => WalError::BadMagic { path: path.to_path_buf(), what },
            e => WalError::Corrupt { path: path.to_path_buf(), offset: e.offset(), reason: e.to_string() },
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

/// The outcome of scanning a log image.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    pub records: Vec<Vec<u8>>,
    /// Bytes of valid frames (including the magic); anything after is a torn tail.
    pub valid_len: u64,
    pub torn_bytes: u64,
}

/// Parses a whole log image. Pure, so it can be fuzzed without a file system.
pub fn scan(buf: &[u8]) -> Result<Scan, ImageError> {
    if buf.len() < HEADER {
        // A crash while creating the file: nothing was ever acknowledged from it.
        if WAL_MAGIC.starts_with(buf) {
            return Ok(Scan { records: Vec::new(), valid_len: 0, torn_bytes: buf.len() as u64 });
        }
        return Err(ImageError::BadMagic);
    }
    if &buf[..HEADER] != WAL_MAGIC {
        return Err(ImageError::BadMagic);
    }
    let mut records = Vec::new();
    let mut off = HEADER;
    while off < buf.len() {
        let rest = &buf[off..];
        let torn = |records, off: usize| Ok(Scan { records, valid_len: off as u64, torn_bytes: (buf.len() - off) as u64 });
        if rest.iter().all(|&b| b == 0) {
            // Preallocated or zero-filled blocks after a crash.
            return torn(records, off);
        }
        if rest.len() < FRAME_HEADER {
            return torn(records, off);
        }
        let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().expect("4 bytes"));
        let (len, len_crc, crc) = (word(0) as usize, word(4), word(8));
        if crc32fast::hash(&rest[0..4]) != len_crc {
            return Err(ImageError::HeaderChecksum { offset: off as u64 });
        }
        if len > MAX_RECORD_BYTES {
            return Err(ImageError::TooLong { offset: off as u64, len });
        }
        if rest.len() < FRAME_HEADER + len {
            return torn(records, off);
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            if off + FRAME_HEADER + len == buf.len() {
                return torn(records, off);
            }
            return Err(ImageError::Checksum { offset: off as u64 });
        }
        records.push(payload.to_vec());
        off += FRAME_HEADER + len;
    }
    Ok(Scan { records, valid_len: off as u64, torn_bytes: 0 })
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// What `Wal::open` found on disk.
pub struct Recovered<R> {
    pub snapshot: Option<Snapshot>,
    pub records: Vec<R>,
    pub torn_bytes: u64,
}

/// The log file and snapshot of one replica, in `dir`.
pub struct Wal {
    dir: PathBuf,
    file: File,
    fsync: bool,
    len: u64,
    pub records_written: u64,
    pub syncs: u64,
}

impl Wal {
    fn log_path(dir: &Path) -> PathBuf {
        dir.join("wal.log")
    }

    fn snap_path(dir: &Path) -> PathBuf {
        dir.join("snapshot.bin")
    }

    /// Opens (creating if needed) the log in `dir`, truncating a torn tail, and decodes
    /// every record. `fsync: false` is for benchmarks and planted-bug runs only.
    pub fn open<R: DeserializeOwned>(dir: &Path, fsync: bool) -> Result<(Wal, Recovered<R>), WalError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let snapshot = read_snapshot(&Self::snap_path(dir))?;
        let path = Self::log_path(dir);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io(&path))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(io(&path))?;
        let scan = scan(&buf).map_err(|e| e.in_file(&path, "log"))?;
        if scan.torn_bytes > 0 || buf.len() < HEADER {
            file.set_len(scan.valid_len).map_err(io(&path))?;
            if scan.valid_len == 0 {
                file.write_all(WAL_MAGIC).map_err(io(&path))?;
            }
            file.sync_all().map_err(io(&path))?;
            sync_dir(dir)?;
        }
        let mut records = Vec::with_capacity(scan.records.len());
        let mut off = HEADER as u64;
        for payload in &scan.records {
            let r = postcard::from_bytes(payload).map_err(|e| WalError::Corrupt {
                path: path.clone(),
                offset: off,
                reason: format!("undecodable record: {e}"),
            })?;
            records.push(r);
            off += (FRAME_HEADER + payload.len()) as u64;
        }
        let len = file.metadata().map_err(io(&path))?.len();
        let wal = Wal { dir: dir.to_path_buf(), file, fsync, len, records_written: 0, syncs: 0 };
        Ok((wal, Recovered { snapshot, records, torn_bytes: scan.torn_bytes }))
    }

    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Appends a batch and, with fsync on, makes it durable before returning.
    pub fn append<R: Serialize>(&mut self, records: &[R]) -> Result<(), WalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            let payload = postcard::to_allocvec(r).expect("records always serialize");
            frame(&mut buf, &payload);
        }
        let path = Self::log_path(&self.dir);
        self.file.write_all(&buf).map_err(io(&path))?;
        if self.fsync {
            self.file.sync_data().map_err(io(&path))?;
            self.syncs += 1;
        }
        self.len += buf.len() as u64;
        self.records_written += records.len() as u64;
        Ok(())
    }

    /// Persists a snapshot atomically. Always fsynced: snapshots are rare and a torn one
    /// would lose the state machine.
    pub fn save_snapshot(&mut self, snap: &Snapshot) -> Result<(), WalError> {
        let path = Self::snap_path(&self.dir);
        let tmp = self.dir.join("snapshot.bin.tmp");
        let payload = postcard::to_allocvec(snap).expect("snapshots serialize");
        let mut buf = Vec::with_capacity(payload.len() + 16);
        buf.extend_from_slice(SNAP_MAGIC);
        frame(&mut buf, &payload);
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&buf).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)
    }

    /// Replaces the log with `records` (the core's `durable_records()` after compaction).
    pub fn rewrite<R: Serialize>(&mut self, records: &[R]) -> Result<(), WalError> {
        let path = Self::log_path(&self.dir);
        let tmp = self.dir.join("wal.log.tmp");
        let mut buf = WAL_MAGIC.to_vec();
        for r in records {
            frame(&mut buf, &postcard::to_allocvec(r).expect("records serialize"));
        }
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&buf).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().append(true).open(&path).map_err(io(&path))?;
        self.len = buf.len() as u64;
        Ok(())
    }
}

fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, WalError> {
    let buf = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    decode_snapshot(&buf).map(Some).map_err(|e| e.in_file(path, "snapshot"))
}

/// Decodes a snapshot file image. A snapshot is renamed into place only after its fsync, so
/// any damage here is real corruption, never a torn write.
pub fn decode_snapshot(buf: &[u8]) -> Result<Snapshot, ImageError> {
    if buf.len() < HEADER || &buf[..HEADER] != SNAP_MAGIC {
        return Err(ImageError::BadMagic);
    }
    let rest = &buf[HEADER..];
    if rest.len() < FRAME_HEADER {
        return Err(ImageError::TruncatedSnapshot);
    }
    let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().expect("4 bytes"));
    let (len, len_crc, crc) = (word(0) as usize, word(4), word(8));
    if crc32fast::hash(&rest[0..4]) != len_crc || rest.len() != FRAME_HEADER + len {
        return Err(ImageError::SnapshotLength { len });
    }
    if crc32fast::hash(&rest[FRAME_HEADER..]) != crc {
        return Err(ImageError::SnapshotChecksum);
    }
    postcard::from_bytes(&rest[FRAME_HEADER..]).map_err(ImageError::SnapshotDecode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = WAL_MAGIC.to_vec();
        for p in payloads {
            frame(&mut b, p);
        }
        b
    }

    #[test]
    fn torn_tail_is_truncated_but_middle_corruption_is_an_error() {
        let full = image(&[b"one", b"two", b"three"]);
        let s = scan(&full).unwrap();
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.torn_bytes, 0);
        // Every prefix of the last frame is a torn tail that loses only that frame.
        let last_start = full.len() - (FRAME_HEADER + 5);
        for cut in last_start..full.len() {
            let s = scan(&full[..cut]).unwrap();
            assert_eq!(s.records.len(), 2, "cut at {cut}");
            assert_eq!(s.valid_len as usize, last_start);
        }
        // A flipped bit in the last frame: torn.
        let mut bad = full.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(scan(&bad).unwrap().records.len(), 2);
        // A flipped bit in the first frame with valid frames after it: corruption.
        let mut bad = full.clone();
        bad[HEADER + FRAME_HEADER] ^= 1;
        let e = scan(&bad).unwrap_err();
        assert_eq!(e.offset(), HEADER as u64);
        assert!(matches!(e, ImageError::Checksum { .. }), "{e}");
        // A corrupt length in the middle is not mistaken for a torn tail.
        let mut bad = full.clone();
        bad[HEADER + 3] ^= 0x40;
        assert!(matches!(scan(&bad).unwrap_err(), ImageError::HeaderChecksum { .. }));
        // Zero-filled tail after a crash.
        let mut z = full.clone();
        z.extend_from_slice(&[0u8; 64]);
        assert_eq!(scan(&z).unwrap().records.len(), 3);
    }

    #[test]
    fn reopen_recovers_records_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, rec) = Wal::open::<u64>(dir.path(), true).unwrap();
            assert!(rec.records.is_empty() && rec.snapshot.is_none());
            w.append(&[1u64, 2, 3]).unwrap();
            w.append(&[4u64]).unwrap();
        }
        // Simulate a crash in the middle of a write.
        let path = dir.path().join("wal.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap(); // a header cut short
        drop(f);
        {
            let (mut w, rec) = Wal::open::<u64>(dir.path(), true).unwrap();
            assert_eq!(rec.records, vec![1, 2, 3, 4]);
            assert_eq!(rec.torn_bytes, 6);
            w.save_snapshot(&Snapshot { index: 4, term: 1, data: vec![7; 10] }).unwrap();
            w.rewrite(&[5u64]).unwrap();
            w.append(&[6u64]).unwrap();
        }
        let (_, rec) = Wal::open::<u64>(dir.path(), true).unwrap();
        assert_eq!(rec.records, vec![5, 6]);
        assert_eq!(rec.snapshot.unwrap().index, 4);
    }

    #[test]
    fn undecodable_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("wal.log"), image(&[&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]])).unwrap();
        match Wal::open::<u64>(dir.path(), false) {
            Err(WalError::Corrupt { reason, .. }) => assert!(reason.contains("undecodable")),
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
        fs::write(dir.path().join("wal.log"), b"not a wal at all").unwrap();
        assert!(matches!(Wal::open::<u64>(dir.path(), false), Err(WalError::BadMagic { .. })));
    }
}
