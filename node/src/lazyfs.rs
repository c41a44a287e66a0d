//! `lazyfs`: a FUSE filesystem that keeps written data in memory until it is fsynced, so a
//! fault can drop everything un-synced the way a power cut does (Jepsen's LazyFS).
//!
//! It mounts over the directory it serves and reaches the files underneath through a
//! directory handle opened before the mount (`/proc/self/fd/N/...`). So the directory
//! underneath always holds exactly what was synced: when the filesystem is unmounted, or
//! dies, the node sees its durable state and nothing else.
//!
//! What is durable at once and what waits: creating, removing and renaming files reach the
//! directory underneath immediately (so a rename is never lost; the node fsyncs a file
//! before renaming it into place, which is what this checks). File contents and sizes wait
//! for `fsync`/`fdatasync` of that file. A process kill loses nothing (the page cache
//! survives it); only the `lose` command does.
//!
//! Control: the file `.faultline-lazyfs` in the root, hidden from listings. Writing `lose`
//! drops every un-synced change and `flush` syncs everything (a clean shutdown); reading it
//! returns the last command's report as JSON. Shell scripts drive it with `printf` and `cat`,
//! and a write returns only when the command is done.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
};
use serde_json::json;

/// The control file's name in the root.
pub const CONTROL_NAME: &str = ".faultline-lazyfs";

/// The mount's source name in `/proc/mounts`: how faultline recognises its own mounts and
/// never touches another's.
pub const FS_NAME: &str = "faultline-lazyfs";

/// Default bound on the bytes held in memory (the whole visible state): a node's log and
/// snapshot in a test run are a few MB; past this, writes fail with ENOSPC rather than grow
/// without bound.
pub const BYTES_MAX_DEFAULT: u64 = 256 << 20;

/// At most this many files and directories are served (and loaded at start).
pub const INODES_MAX: usize = 100_000;

const ROOT: u64 = 1;
const CONTROL_INO: u64 = 2;
const FIRST_INO: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum LazyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: more than {INODES_MAX} files and directories")]
    TooMany(PathBuf),
    #[error("{path}: {bytes} bytes of files, more than the {max} bytes this filesystem may hold")]
    TooBig { path: PathBuf, bytes: u64, max: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LazyError + '_ {
    move |source| LazyError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug)]
struct FileData {
    /// What reads see.
    data: Vec<u8>,
    /// The lowest offset changed since the last sync (a shrink counts from the new end);
    /// `None` when the file underneath equals `data`.
    dirty_from: Option<u64>,
}

#[derive(Debug)]
enum Kind {
    Dir(BTreeMap<OsString, u64>),
    File(FileData),
}

#[derive(Debug)]
struct Inode {
    /// `0` once unlinked or replaced: still readable through open handles, no longer
    /// underneath.
    parent: u64,
    name: OsString,
    perm: u16,
    mtime: SystemTime,
    kind: Kind,
}

/// The filesystem's state, without FUSE: what the tests drive directly.
pub struct Disk {
    /// The directory underneath, reached through a handle opened before the mount.
    backing: PathBuf,
    /// Keeps the handle (and so `backing`) valid.
    _dir: File,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    bytes: u64,
    bytes_max: u64,
    report: Vec<u8>,
}

/// A failed operation, as the errno the caller sees.
type Fs<T> = std::result::Result<T, i32>;

impl Disk {
    /// Serves `dir`, loading what it holds. Call before mounting over `dir`.
    pub fn open(dir: &Path, bytes_max: u64) -> Result<Disk, LazyError> {
        let handle = File::open(dir).map_err(io(dir))?;
        use std::os::fd::AsRawFd;
        let backing = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
        let mut disk = Disk {
            backing,
            _dir: handle,
            inodes: HashMap::new(),
            next_ino: FIRST_INO,
            bytes: 0,
            bytes_max,
            report: b"{}\n".to_vec(),
        };
        disk.inodes.insert(
            ROOT,
            Inode { parent: ROOT, name: OsString::new(), perm: 0o755, mtime: SystemTime::now(), kind: Kind::Dir(BTreeMap::new()) },
        );
        disk.load(ROOT, dir)?;
        Ok(disk)
    }

    fn load(&mut self, dir_ino: u64, shown: &Path) -> Result<(), LazyError> {
        let here = self.backing_path(dir_ino);
        let mut entries: Vec<_> = std::fs::read_dir(&here)
            .map_err(io(shown))?
            .collect::<Result<_, _>>()
            .map_err(io(shown))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let path = shown.join(&name);
            if self.inodes.len() >= INODES_MAX {
                return Err(LazyError::TooMany(path));
            }
            let meta = e.metadata().map_err(io(&path))?;
            use std::os::unix::fs::PermissionsExt;
            let perm = (meta.permissions().mode() & 0o7777) as u16;
            let kind = if meta.is_dir() {
                Kind::Dir(BTreeMap::new())
            } else if meta.is_file() {
                let data = std::fs::read(e.path()).map_err(io(&path))?;
                self.bytes += data.len() as u64;
                if self.bytes > self.bytes_max {
                    return Err(LazyError::TooBig { path, bytes: self.bytes, max: self.bytes_max });
                }
                Kind::File(FileData { data, dirty_from: None })
            } else {
                // Symlinks, sockets and the like: the node makes none; serving them half would
                // mislead more than leaving them out.
                continue;
            };
            let is_dir = matches!(kind, Kind::Dir(_));
            let ino = self.add(dir_ino, name, perm, kind);
            if is_dir {
                self.load(ino, &path)?;
            }
        }
        Ok(())
    }

    fn add(&mut self, parent: u64, name: OsString, perm: u16, kind: Kind) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        if let Some(Inode { kind: Kind::Dir(children), .. }) = self.inodes.get_mut(&parent) {
            children.insert(name.clone(), ino);
        }
        self.inodes.insert(ino, Inode { parent, name, perm, mtime: SystemTime::now(), kind });
        ino
    }

    /// The path underneath of an attached inode.
    fn backing_path(&self, ino: u64) -> PathBuf {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let Some(n) = self.inodes.get(&at) else { break };
            parts.push(n.name.clone());
            at = n.parent;
        }
        let mut p = self.backing.clone();
        for part in parts.iter().rev() {
            p.push(part);
        }
        p
    }

    /// The path relative to the mount, for reports.
    fn shown_path(&self, ino: u64) -> String {
        let full = self.backing_path(ino);
        full.strip_prefix(&self.backing).unwrap_or(&full).to_string_lossy().into_owned()
    }

    fn child(&self, parent: u64, name: &OsStr) -> Fs<u64> {
        match self.inodes.get(&parent).map(|n| &n.kind) {
            Some(Kind::Dir(c)) => c.get(name).copied().ok_or(libc::ENOENT),
            Some(Kind::File(_)) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Fs<u64> {
        if parent == ROOT && name == CONTROL_NAME {
            return Ok(CONTROL_INO);
        }
        self.child(parent, name)
    }

    fn attr(&self, ino: u64) -> Fs<FileAttr> {
        let (size, kind, perm, mtime) = if ino == CONTROL_INO {
            (self.report.len() as u64, FileType::RegularFile, 0o600, SystemTime::now())
        } else {
            let n = self.inodes.get(&ino).ok_or(libc::ENOENT)?;
            match &n.kind {
                Kind::Dir(_) => (0, FileType::Directory, n.perm, n.mtime),
                Kind::File(f) => (f.data.len() as u64, FileType::RegularFile, n.perm, n.mtime),
            }
        };
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn file_mut(&mut self, ino: u64) -> Fs<&mut FileData> {
        match self.inodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File(f)) => Ok(f),
            Some(Kind::Dir(_)) => Err(libc::EISDIR),
            None => Err(libc::ENOENT),
        }
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Fs<Vec<u8>> {
        let data: &[u8] = if ino == CONTROL_INO {
            &self.report
        } else {
            match self.inodes.get(&ino).map(|n| &n.kind) {
                Some(Kind::File(f)) => &f.data,
                Some(Kind::Dir(_)) => return Err(libc::EISDIR),
                None => return Err(libc::ENOENT),
            }
        };
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    /// Writes into memory only. `append` puts the bytes at the end whatever the offset.
    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8], append: bool) -> Fs<u32> {
        if ino == CONTROL_INO {
            return self.control(bytes);
        }
        let (bytes_now, max) = (self.bytes, self.bytes_max);
        let f = self.file_mut(ino)?;
        let at = if append { f.data.len() as u64 } else { offset };
        let end = at.checked_add(bytes.len() as u64).ok_or(libc::EFBIG)?;
        let grow = end.saturating_sub(f.data.len() as u64);
        if bytes_now + grow > max {
            return Err(libc::ENOSPC);
        }
        if grow > 0 {
            f.data.resize(end as usize, 0);
        }
        f.data[at as usize..end as usize].copy_from_slice(bytes);
        f.dirty_from = Some(f.dirty_from.map_or(at, |d| d.min(at)));
        self.bytes += grow;
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.mtime = SystemTime::now();
        }
        Ok(bytes.len() as u32)
    }

    pub fn set_size(&mut self, ino: u64, size: u64) -> Fs<()> {
        if ino == CONTROL_INO {
            return Ok(());
        }
        let (bytes_now, max) = (self.bytes, self.bytes_max);
        let f = self.file_mut(ino)?;
        let old = f.data.len() as u64;
        if size > old && bytes_now + (size - old) > max {
            return Err(libc::ENOSPC);
        }
        f.data.resize(size as usize, 0);
        let from = old.min(size);
        f.dirty_from = Some(f.dirty_from.map_or(from, |d| d.min(from)));
        self.bytes = bytes_now + size.saturating_sub(old) - old.saturating_sub(size);
        Ok(())
    }

    /// Makes one file's contents durable: what `fsync` promises.
    pub fn sync(&mut self, ino: u64) -> Fs<()> {
        if ino == CONTROL_INO {
            return Ok(());
        }
        let attached = self.inodes.get(&ino).is_some_and(|n| n.parent != 0);
        let path = self.backing_path(ino);
        let f = self.file_mut(ino)?;
        let Some(from) = f.dirty_from else { return Ok(()) };
        if attached {
            let eio = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
            let file = OpenOptions::new().write(true).open(&path).map_err(eio)?;
            file.set_len(f.data.len() as u64).map_err(eio)?;
            let from = (from as usize).min(f.data.len());
            file.write_all_at(&f.data[from..], from as u64).map_err(eio)?;
            file.sync_data().map_err(eio)?;
        }
        f.dirty_from = None;
        Ok(())
    }

    pub fn create(&mut self, parent: u64, name: &OsStr, perm: u16, dir: bool) -> Fs<u64> {
        if parent == ROOT && name == CONTROL_NAME {
            return Err(libc::EEXIST);
        }
        match self.child(parent, name) {
            Ok(_) => return Err(libc::EEXIST),
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        if self.inodes.len() >= INODES_MAX {
            return Err(libc::ENOSPC);
        }
        let path = self.backing_path(parent).join(name);
        let r = if dir { std::fs::create_dir(&path) } else { File::create(&path).map(drop) };
        r.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let kind = if dir { Kind::Dir(BTreeMap::new()) } else { Kind::File(FileData { data: Vec::new(), dirty_from: None }) };
        Ok(self.add(parent, name.to_os_string(), perm, kind))
    }

    /// Detaches an inode from the tree (its data stays readable through open handles until
    /// the kernel forgets it).
    fn detach(&mut self, parent: u64, name: &OsStr) {
        if let Some(Inode { kind: Kind::Dir(c), .. }) = self.inodes.get_mut(&parent)
            && let Some(ino) = c.remove(name)
            && let Some(n) = self.inodes.get_mut(&ino)
        {
            n.parent = 0;
        }
    }

    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Fs<()> {
        let ino = self.child(parent, name)?;
        let n = &self.inodes[&ino];
        match (&n.kind, dir) {
            (Kind::Dir(c), true) if !c.is_empty() => return Err(libc::ENOTEMPTY),
            (Kind::Dir(_), false) => return Err(libc::EISDIR),
            (Kind::File(_), true) => return Err(libc::ENOTDIR),
            _ => {}
        }
        let path = self.backing_path(ino);
        let r = if dir { std::fs::remove_dir(&path) } else { std::fs::remove_file(&path) };
        r.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        self.detach(parent, name);
        Ok(())
    }

    pub fn rename(&mut self, parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr) -> Fs<()> {
        let ino = self.child(parent, name)?;
        if !matches!(self.inodes.get(&new_parent).map(|n| &n.kind), Some(Kind::Dir(_))) {
            return Err(libc::ENOTDIR);
        }
        if new_parent == ROOT && new_name == CONTROL_NAME {
            return Err(libc::EPERM);
        }
        if let Ok(existing) = self.child(new_parent, new_name) {
            if let Some(Inode { kind: Kind::Dir(c), .. }) = self.inodes.get(&existing)
                && !c.is_empty()
            {
                return Err(libc::ENOTEMPTY);
            }
        }
        let from = self.backing_path(ino);
        let to = self.backing_path(new_parent).join(new_name);
        std::fs::rename(&from, &to).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        self.detach(new_parent, new_name);
        if let Some(Inode { kind: Kind::Dir(c), .. }) = self.inodes.get_mut(&parent) {
            c.remove(name);
        }
        if let Some(Inode { kind: Kind::Dir(c), .. }) = self.inodes.get_mut(&new_parent) {
            c.insert(new_name.to_os_string(), ino);
        }
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_os_string();
        }
        Ok(())
    }

    /// The kernel holds no more references: a detached inode can go.
    pub fn forget(&mut self, ino: u64) {
        if self.inodes.get(&ino).is_some_and(|n| n.parent == 0) {
            if let Some(Inode { kind: Kind::File(f), .. }) = self.inodes.remove(&ino) {
                self.bytes -= f.data.len() as u64;
            }
        }
    }

    pub fn list(&self, ino: u64) -> Fs<Vec<(u64, FileType, OsString)>> {
        let n = self.inodes.get(&ino).ok_or(libc::ENOENT)?;
        let Kind::Dir(c) = &n.kind else { return Err(libc::ENOTDIR) };
        let mut out = vec![(ino, FileType::Directory, ".".into()), (n.parent.max(ROOT), FileType::Directory, "..".into())];
        for (name, &child) in c {
            let kind = match self.inodes[&child].kind {
                Kind::Dir(_) => FileType::Directory,
                Kind::File(_) => FileType::RegularFile,
            };
            out.push((child, kind, name.clone()));
        }
        Ok(out)
    }

    /// Attached files with un-synced changes, in path order.
    fn dirty(&self) -> Vec<u64> {
        let mut v: Vec<(String, u64)> = self
            .inodes
            .iter()
            .filter(|(_, n)| n.parent != 0 && matches!(&n.kind, Kind::File(f) if f.dirty_from.is_some()))
            .map(|(&ino, _)| (self.shown_path(ino), ino))
            .collect();
        v.sort();
        v.into_iter().map(|(_, i)| i).collect()
    }

    /// Drops every un-synced change: each file becomes what is underneath. The report says,
    /// per file, how long it looked and how long it is now, and from which offset it had
    /// changed since its last sync.
    pub fn lose(&mut self) -> serde_json::Value {
        let mut files = Vec::new();
        let mut lost = 0u64;
        for ino in self.dirty() {
            let path = self.backing_path(ino);
            let shown = self.shown_path(ino);
            // What is underneath is what survived; an unreadable file is an empty one.
            let durable = std::fs::read(&path).unwrap_or_default();
            let Ok(f) = self.file_mut(ino) else { continue };
            let visible = f.data.len() as u64;
            let from = f.dirty_from.take().unwrap_or(0);
            let changed = visible.max(durable.len() as u64).saturating_sub(from);
            lost += changed;
            let durable_len = durable.len() as u64;
            f.data = durable;
            files.push(json!({
                "file": shown,
                "visible_bytes": visible,
                "durable_bytes": durable_len,
                "unsynced_from": from,
                "unsynced_bytes": changed,
            }));
            self.bytes = self.bytes - visible + durable_len;
        }
        json!({"action": "lose-unfsynced", "files": files, "lost_bytes": lost})
    }

    /// Syncs every file: a clean shutdown.
    pub fn flush(&mut self) -> serde_json::Value {
        let mut synced = 0;
        let mut errors = Vec::new();
        for ino in self.dirty() {
            match self.sync(ino) {
                Ok(()) => synced += 1,
                Err(e) => errors.push(json!({"file": self.shown_path(ino), "errno": e})),
            }
        }
        json!({"action": "flush", "files_synced": synced, "errors": errors})
    }

    fn control(&mut self, bytes: &[u8]) -> Fs<u32> {
        let report = match std::str::from_utf8(bytes).map(str::trim) {
            Ok("lose") => self.lose(),
            Ok("flush") => self.flush(),
            _ => return Err(libc::EINVAL),
        };
        self.report = format!("{report}\n").into_bytes();
        Ok(bytes.len() as u32)
    }
}

/// The FUSE adapter: one lock around [`Disk`]; requests are served one at a time anyway.
pub struct LazyFs(Mutex<Disk>);

/// Entries and attributes are never cached by the kernel: a `lose` changes sizes under it.
const TTL: Duration = Duration::ZERO;

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl LazyFs {
    pub fn new(disk: Disk) -> LazyFs {
        LazyFs(Mutex::new(disk))
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        // A panic while holding the lock is a bug already reported; keep serving.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, r: Fs<u64>, reply: ReplyEntry) {
        let d = self.disk();
        match r.and_then(|ino| d.attr(ino)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn attr_reply(&self, ino: u64, reply: ReplyAttr) {
        match self.disk().attr(ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(e)),
        }
    }
}

fn empty(r: Fs<()>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.disk().lookup(parent.0, name);
        self.entry(r, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        self.disk().forget(ino.0);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr_reply(ino.0, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        {
            let mut d = self.disk();
            if let Some(size) = size
                && let Err(e) = d.set_size(ino.0, size)
            {
                return reply.error(errno(e));
            }
            if let Some(mode) = mode
                && let Some(n) = d.inodes.get_mut(&ino.0)
            {
                n.perm = (mode & 0o7777) as u16;
            }
        }
        self.attr_reply(ino.0, reply);
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let r = self.disk().create(parent.0, name, (mode & !umask & 0o7777) as u16, true);
        self.entry(r, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.disk().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.disk().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        empty(self.disk().rename(parent.0, name, newparent.0, newname), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.disk().attr(ino.0) {
            // Direct I/O: no page cache in front of data that `lose` may change.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.disk().read(ino.0, offset, size) {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let append = flags.0 & libc::O_APPEND != 0;
        match self.disk().write(ino.0, offset, data, append) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        // close() promises nothing about durability.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        empty(self.disk().sync(ino.0), reply);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.disk().list(ino.0) {
            Ok(entries) => {
                for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Names are durable as soon as they change.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let d = self.disk();
        let (total, used) = (d.bytes_max / 4096, d.bytes / 4096);
        reply.statfs(total, total - used.min(total), total - used.min(total), INODES_MAX as u64, (INODES_MAX - d.inodes.len().min(INODES_MAX)) as u64, 4096, 255, 4096);
    }

    fn create(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, _flags: i32, reply: ReplyCreate) {
        let mut d = self.disk();
        match d.create(parent.0, name, (mode & !umask & 0o7777) as u16, false).and_then(|ino| d.attr(ino)) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// The command line of `lazyfs`, shared by the node image and the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub dir: PathBuf,
    pub bytes_max: u64,
}

impl Args {
    /// Parses `--dir DIR [--bytes-max N]`; the error is a usage message.
    pub fn parse(args: impl IntoIterator<Item = String>) -> std::result::Result<Args, String> {
        let mut dir = None;
        let mut bytes_max = BYTES_MAX_DEFAULT;
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (a.clone(), None),
            };
            let value = inline.or_else(|| it.next());
            match (flag.as_str(), value) {
                ("--dir", Some(v)) => dir = Some(PathBuf::from(v)),
                ("--bytes-max", Some(v)) => {
                    bytes_max = v.parse().ok().filter(|&n| n > 0).ok_or(format!("lazyfs: --bytes-max {v:?}: expected a positive number of bytes"))?
                }
                ("--dir" | "--bytes-max", None) => return Err(format!("lazyfs: {flag} needs a value")),
                (other, _) => return Err(format!("lazyfs: unexpected argument {other:?}")),
            }
        }
        let dir = dir.ok_or("lazyfs: --dir DIR is required")?;
        Ok(Args { dir, bytes_max })
    }
}

/// Runs `lazyfs` to its end: exit 0 once unmounted, 3 when it cannot serve.
pub fn main(args: &Args) -> std::process::ExitCode {
    match run(&args.dir, args.bytes_max) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lazyfs: {e}");
            std::process::ExitCode::from(3)
        }
    }
}

/// `lazyfs --dir DIR [--bytes-max N]`: serves DIR over itself until unmounted
/// (`umount DIR`, after `flush` through the control file for a clean stop).
pub fn run(dir: &Path, bytes_max: u64) -> Result<(), LazyError> {
    let disk = Disk::open(dir, bytes_max)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(FS_NAME.into()),
        fuser::MountOption::Subtype(FS_NAME.into()),
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
    ];
    let mut err = std::io::stderr();
    let _ = writeln!(err, "lazyfs: serving {} (at most {bytes_max} bytes in memory)", dir.display());
    fuser::mount(LazyFs::new(disk), dir, &config).map_err(io(dir))?;
    let _ = writeln!(err, "lazyfs: {} unmounted", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("faultline-lazyfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn written_data_is_visible_at_once_and_underneath_only_after_sync() {
        let d = tmp("sync");
        let mut disk = Disk::open(&d, 1 << 20).unwrap();
        let f = disk.create(ROOT, name("wal.log"), 0o644, false).unwrap();
        assert!(d.join("wal.log").exists(), "a created name is durable at once");
        disk.write(f, 0, b"hello", true).unwrap();
        disk.write(f, 0, b" world", true).unwrap();
        assert_eq!(disk.read(f, 0, 100).unwrap(), b"hello world");
        assert_eq!(std::fs::read(d.join("wal.log")).unwrap(), b"");
        disk.sync(f).unwrap();
        assert_eq!(std::fs::read(d.join("wal.log")).unwrap(), b"hello world");
        // An overwrite in the middle reaches underneath from its own offset.
        disk.write(f, 1, b"E", false).unwrap();
        disk.sync(f).unwrap();
        assert_eq!(std::fs::read(d.join("wal.log")).unwrap(), b"hEllo world");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn lose_drops_exactly_the_unsynced_changes_and_says_what_they_were() {
        let d = tmp("lose");
        std::fs::write(d.join("old.bin"), b"kept").unwrap();
        let mut disk = Disk::open(&d, 1 << 20).unwrap();
        let old = disk.lookup(ROOT, name("old.bin")).unwrap();
        assert_eq!(disk.read(old, 0, 10).unwrap(), b"kept", "what is underneath is served");
        let f = disk.create(ROOT, name("wal.log"), 0o644, false).unwrap();
        disk.write(f, 0, b"synced;", true).unwrap();
        disk.sync(f).unwrap();
        disk.write(f, 0, b"lost", true).unwrap();
        disk.set_size(old, 2).unwrap();
        let r = disk.lose();
        assert_eq!(disk.read(f, 0, 100).unwrap(), b"synced;");
        assert_eq!(disk.read(old, 0, 100).unwrap(), b"kept", "an un-synced truncate is lost too");
        assert_eq!(r["lost_bytes"], 4 + 2);
        let files = r["files"].as_array().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0]["file"], "old.bin");
        assert_eq!(files[1]["file"], "wal.log");
        assert_eq!((files[1]["visible_bytes"].as_u64(), files[1]["durable_bytes"].as_u64()), (Some(11), Some(7)));
        assert_eq!(files[1]["unsynced_from"], 7);
        // Nothing dirty: a second lose loses nothing.
        assert_eq!(disk.lose()["lost_bytes"], 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_synced_file_renamed_into_place_survives_lose_and_replaces_the_old_one() {
        let d = tmp("rename");
        let mut disk = Disk::open(&d, 1 << 20).unwrap();
        let old = disk.create(ROOT, name("snap"), 0o644, false).unwrap();
        disk.write(old, 0, b"v1", false).unwrap();
        disk.sync(old).unwrap();
        let tmp = disk.create(ROOT, name("snap.tmp"), 0o644, false).unwrap();
        disk.write(tmp, 0, b"v2", false).unwrap();
        disk.sync(tmp).unwrap();
        disk.rename(ROOT, name("snap.tmp"), ROOT, name("snap")).unwrap();
        disk.lose();
        let now = disk.lookup(ROOT, name("snap")).unwrap();
        assert_eq!(now, tmp);
        assert_eq!(disk.read(now, 0, 10).unwrap(), b"v2");
        assert_eq!(std::fs::read(d.join("snap")).unwrap(), b"v2");
        assert!(!d.join("snap.tmp").exists());
        let names: Vec<_> = disk.list(ROOT).unwrap().into_iter().map(|(_, _, n)| n).collect();
        assert_eq!(names, vec![OsString::from("."), "..".into(), "snap".into()], "the control file is not listed");
        // The replaced inode lingers for open handles until forgotten, then its bytes go.
        let before = disk.bytes;
        disk.forget(old);
        assert_eq!(disk.bytes, before - 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_control_file_runs_commands_and_reads_back_their_report() {
        let d = tmp("control");
        let mut disk = Disk::open(&d, 1 << 20).unwrap();
        let f = disk.create(ROOT, name("a"), 0o644, false).unwrap();
        disk.write(f, 0, b"xyz", false).unwrap();
        let c = disk.lookup(ROOT, name(CONTROL_NAME)).unwrap();
        assert_eq!(disk.write(c, 0, b"bogus", false), Err(libc::EINVAL));
        disk.write(c, 0, b"flush\n", false).unwrap();
        assert_eq!(std::fs::read(d.join("a")).unwrap(), b"xyz");
        let report: serde_json::Value = serde_json::from_slice(&disk.read(c, 0, 4096).unwrap()).unwrap();
        assert_eq!(report["files_synced"], 1);
        disk.write(c, 0, b"lose", false).unwrap();
        let report: serde_json::Value = serde_json::from_slice(&disk.read(c, 0, 4096).unwrap()).unwrap();
        assert_eq!(report["lost_bytes"], 0, "flushed data is not lost");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn memory_is_bounded_and_a_full_filesystem_says_enospc() {
        let d = tmp("full");
        let mut disk = Disk::open(&d, 10).unwrap();
        let f = disk.create(ROOT, name("a"), 0o644, false).unwrap();
        assert_eq!(disk.write(f, 0, &[0; 8], false), Ok(8));
        assert_eq!(disk.write(f, 8, &[0; 8], false), Err(libc::ENOSPC));
        assert_eq!(disk.set_size(f, 11), Err(libc::ENOSPC));
        disk.set_size(f, 2).unwrap();
        assert_eq!(disk.bytes, 2);
        std::fs::write(d.join("big"), [0u8; 64]).unwrap();
        assert!(matches!(Disk::open(&d, 10), Err(LazyError::TooBig { .. })));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
