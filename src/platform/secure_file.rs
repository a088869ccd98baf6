//! Opening files that decide who gets into which container: the
//! configuration, the pidfiles and the engines' state. Such a file is trusted only if it and
//! every directory above it is owned by root and writable by nobody else, and
//! no component is a symbolic link. Each component is opened relative to the
//! previous one (openat with O_NOFOLLOW), so a rename race cannot swap in a
//! path the checks did not see.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};

/// Why a file was not trusted.
#[derive(Debug)]
pub(crate) enum Untrusted {
    /// The file or one of its directories does not exist.
    Missing(PathBuf),
    /// It exists but fails an ownership, mode or type rule.
    Unsafe { path: PathBuf, why: String },
    /// A system call failed.
    Io { path: PathBuf, errno: Errno },
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Missing(p) => write!(f, "{} does not exist", p.display()),
            Untrusted::Unsafe { path, why } => write!(f, "{} {why}", path.display()),
            Untrusted::Io { path, errno } => write!(f, "{}: {}", path.display(), errno.desc()),
        }
    }
}

/// Contents and metadata of a trusted file.
#[derive(Debug)]
pub(crate) struct TrustedFile {
    pub(crate) contents: Vec<u8>,
    /// When it was last written (st_mtime), in ns since the epoch.
    pub(crate) written_ns: i128,
}

/// The ownership and mode rule for every component.
fn check_owner_and_mode(path: &Path, st: &FileStat) -> Result<(), Untrusted> {
    if st.st_uid != 0 {
        return Err(Untrusted::Unsafe { path: path.into(), why: format!("is owned by uid {}, not root", st.st_uid) });
    }
    if st.st_mode & 0o022 != 0 {
        return Err(Untrusted::Unsafe {
            path: path.into(),
            why: format!("is writable by group or others (mode {:04o})", st.st_mode & 0o7777),
        });
    }
    Ok(())
}

fn is_type(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == kind
}

/// Read `path` if it is trustworthy, at most `max_len` bytes.
pub(crate) fn read_root_owned(path: &Path, max_len: usize) -> Result<TrustedFile, Untrusted> {
    let mut names = components(path)?;
    let Some(file_name) = names.pop() else {
        return Err(Untrusted::Unsafe { path: path.into(), why: "names no file".into() });
    };

    with_verified_dir(&names, |walked, dir, _| read_in(walked, dir, file_name, max_len))
}

/// The names below `/` in the absolute `path`, which has no `.` or `..`.
fn components(path: &Path) -> Result<Vec<&OsStr>, Untrusted> {
    let unsafe_path = |why: &str| Untrusted::Unsafe { path: path.into(), why: why.into() };
    if !path.is_absolute() {
        return Err(unsafe_path("is not an absolute path"));
    }
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => names.push(n),
            _ => return Err(unsafe_path("contains '.' or '..'")),
        }
    }
    Ok(names)
}

/// Read `file_name` below the verified directory `dir` (which is `walked`).
fn read_in(walked: &Path, dir: BorrowedFd<'_>, file_name: &OsStr, max_len: usize) -> Result<TrustedFile, Untrusted> {
    let mut walked = walked.to_path_buf();
    walked.push(file_name);
    let fd = match openat(
        dir,
        file_name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(Untrusted::Missing(walked)),
        Err(Errno::ELOOP) => return Err(Untrusted::Unsafe { path: walked, why: "is a symbolic link".into() }),
        Err(errno) => return Err(Untrusted::Io { path: walked, errno }),
    };
    let stat = fstat(&fd).map_err(|errno| Untrusted::Io { path: walked.clone(), errno })?;
    if !is_type(&stat, SFlag::S_IFREG) {
        return Err(Untrusted::Unsafe { path: walked, why: "is not a regular file".into() });
    }
    check_owner_and_mode(&walked, &stat)?;

    // Sized from fstat, one byte more: a read that returns less than it
    // asked for reached the end, so the whole file takes one read. Files
    // the kernel renders (a cgroup's cgroup.procs) say size 0: a page.
    let file = std::fs::File::from(fd);
    let size = match stat.st_size.max(0) as usize {
        0 => RENDERED_GUESS,
        size => size,
    };
    let asked = size.min(max_len) + 1;
    let contents = crate::platform::fs::read_rendered_from(file, asked, max_len + 1).map_err(|e| Untrusted::Io {
        path: walked.clone(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    if contents.len() > max_len {
        return Err(Untrusted::Unsafe { path: walked, why: format!("is larger than {max_len} bytes") });
    }
    let written_ns = i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec);
    Ok(TrustedFile { contents, written_ns })
}

/// How much of a file that says size 0 is asked for at first.
const RENDERED_GUESS: usize = 4095;

/// A trustworthy directory kept open, with its entries, so that many files
/// below it (Docker's `<id>/config.v2.json`, one per container) are opened
/// relative to it: the walk from `/` is done and checked once, not once a
/// file.
#[derive(Debug)]
pub(crate) struct TrustedDir {
    /// The path it was opened by, for messages.
    pub(crate) path: PathBuf,
    /// Its entries (and whether each is a directory), sorted, at most
    /// the number asked for; `.` and `..` left out.
    pub(crate) entries: Vec<(String, bool)>,
    /// The open directory; only the platform layer opens files below it.
    pub(super) fd: OwnedFd,
}

/// Open the directory `path` if it and every directory above it is
/// trustworthy, and list it (at most `max` entries).
pub(crate) fn open_root_owned_dir(path: &Path, max: usize) -> Result<TrustedDir, Untrusted> {
    with_verified_dir(&components(path)?, |walked, dir, _| {
        // The checked directory opened again for reading (the walk's is
        // O_PATH): listed through it, and kept as the directory below
        // which files are opened.
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd =
            openat(dir, ".", flags, Mode::empty()).map_err(|errno| Untrusted::Io { path: walked.into(), errno })?;
        let entries = list_in(walked, fd.as_fd(), max)?;
        Ok(TrustedDir { path: walked.to_path_buf(), entries, fd })
    })
}

/// What the directory `path` is, if it and every directory above it is
/// trustworthy (the walk of [`open_root_owned_dir`], nothing listed): the
/// magic number of its file system (`fstatfs`) and its inode number.
pub(crate) fn probe_root_owned_dir(path: &Path) -> Result<(u64, u64), Untrusted> {
    with_verified_dir(&components(path)?, |walked, dir, checked| {
        let io = |errno| Untrusted::Io { path: walked.into(), errno };
        let fs = nix::sys::statfs::fstatfs(dir).map_err(io)?;
        let st = match checked {
            Some(st) => *st,
            None => fstat(dir).map_err(io)?,
        };
        // The magic's type is the C library's: signed in glibc, unsigned in musl.
        #[allow(clippy::unnecessary_cast)]
        let magic = fs.filesystem_type().0 as u64;
        Ok((magic, st.st_ino))
    })
}

/// Read `rel` below the open trusted `dir`, at most `max_len` bytes: each
/// directory of `rel` opened relative to the one before (O_NOFOLLOW,
/// O_DIRECTORY) and the file too (O_NOFOLLOW), each checked by the rules
/// [`read_root_owned`] applies to every component, with the same messages.
/// `rel` is plain names only: nothing can climb out of `dir`.
pub(crate) fn read_root_owned_in(dir: &TrustedDir, rel: &Path, max_len: usize) -> Result<TrustedFile, Untrusted> {
    let unsafe_path = |why: &str| Untrusted::Unsafe { path: dir.path.join(rel), why: why.into() };
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            _ => return Err(unsafe_path("is not a plain path below its directory")),
        }
    }
    let Some(file_name) = names.pop() else {
        return Err(unsafe_path("names no file"));
    };
    let mut walked = dir.path.clone();
    let mut below: Option<OwnedFd> = None;
    for name in names {
        walked.push(name);
        let parent = below.as_ref().map_or(dir.fd.as_fd(), |fd| fd.as_fd());
        below = Some(open_checked_dir(parent, name, &walked)?.0);
    }
    read_in(&walked, below.as_ref().map_or(dir.fd.as_fd(), |fd| fd.as_fd()), file_name, max_len)
}

/// The names in the verified directory `dir` (which is `walked`), opened
/// for reading: `getdents64` straight into a buffer, read from the start
/// (the C library's directory stream would add an `fstat`, two `fcntl`
/// and an `lseek` to each listing).
fn list_in(walked: &Path, dir: BorrowedFd<'_>, max: usize) -> Result<Vec<(String, bool)>, Untrusted> {
    let io = |errno| Untrusted::Io { path: walked.to_path_buf(), errno };
    let mut buf = vec![0u8; 32 * 1024];
    let mut names = Vec::new();
    loop {
        let n = super::sys::getdents(dir, &mut buf)
            .map_err(|e| io(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
        if n == 0 {
            break;
        }
        for (name, d_type) in dirents(&buf[..n]).map_err(|()| io(Errno::EIO))? {
            if name == b"." || name == b".." {
                continue;
            }
            if names.len() == max {
                return Err(Untrusted::Unsafe { path: walked.into(), why: format!("has more than {max} entries") });
            }
            // Engines name their entries in ASCII; anything else is no entry of theirs.
            if let Ok(name) = std::str::from_utf8(name) {
                names.push((name.to_string(), d_type == libc::DT_DIR));
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The records of one `getdents64` buffer: each name (up to its NUL) and
/// its type. `Err` if a record does not fit the buffer.
fn dirents(buf: &[u8]) -> Result<Vec<(&[u8], u8)>, ()> {
    // struct linux_dirent64: u64 d_ino, i64 d_off, u16 d_reclen, u8 d_type,
    // then the NUL-terminated name, padded to the record's length.
    const NAME: usize = 19;
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let len = buf.get(at + 16..at + 18).map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize).ok_or(())?;
        let record = buf.get(at..at + len).filter(|_| len > NAME).ok_or(())?;
        let name = &record[NAME..];
        out.push((&name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())], record[18]));
        at += len;
    }
    Ok(out)
}

/// The top of the tree already opened and checked by this process ("/",
/// "/etc", "/run"), kept open: the configuration, the user database and
/// the pidfile share them, and each check is an open and an fstat. Only
/// root can change a root-owned directory that nobody else may write, and
/// nobody changes these; every deeper directory (where an administrator
/// may well fix a mode while a survey runs) is checked on every open.
static VERIFIED: Mutex<Vec<(PathBuf, OwnedFd)>> = Mutex::new(Vec::new());
const VERIFIED_MAX: usize = 8;
/// How deep the kept directories go: `/` and its children.
const VERIFIED_DEPTH: usize = 1;

/// Forget the kept directories: the process's root changes (they belong
/// to the old one).
pub(crate) fn forget_verified() {
    let kept = std::mem::take(&mut *VERIFIED.lock().unwrap_or_else(|e| e.into_inner()));
    // Opened one after the other at the first lookups, so usually one
    // close_range closes them all.
    super::sys::close_together(kept.into_iter().map(|(_, fd)| fd).collect());
}

/// Open and check every directory from `/` down through `names`, starting
/// below the deepest one already verified, and run `f` on the last (with
/// its `fstat` when this walk made it, not the kept directory's).
fn with_verified_dir<T>(
    names: &[&OsStr],
    f: impl FnOnce(&Path, BorrowedFd<'_>, Option<&FileStat>) -> Result<T, Untrusted>,
) -> Result<T, Untrusted> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut verified = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = |depth: usize| names[..depth].iter().fold(PathBuf::from("/"), |p, n| p.join(n));
    let (mut depth, mut cached) = (0..=names.len())
        .rev()
        .find_map(|d| {
            let p = prefix(d);
            verified.iter().position(|(v, _)| *v == p).map(|i| (d, Some(i)))
        })
        .unwrap_or((0, None));
    let mut walked = prefix(depth);
    let mut owned: Option<OwnedFd> = None;
    // The directories passed on the way down, closed together at the end
    // (one close_range where their numbers follow each other, as they do
    // when opened one after the other).
    let mut passed: Vec<OwnedFd> = Vec::new();
    let mut last_stat = None;
    if cached.is_none() {
        let fd = nix::fcntl::open("/", dir_flags, Mode::empty())
            .map_err(|errno| Untrusted::Io { path: walked.clone(), errno })?;
        last_stat = Some(check_dir(&walked, fd.as_fd())?);
        owned = Some(fd);
    }
    while depth < names.len() {
        let name = names[depth];
        let parent = match (&owned, cached) {
            (Some(fd), _) => fd.as_fd(),
            (None, Some(i)) => verified[i].1.as_fd(),
            (None, None) => unreachable!("either opened or cached"),
        };
        let mut below = walked.clone();
        below.push(name);
        let (fd, st) = open_checked_dir(parent, name, &below)?;
        last_stat = Some(st);
        if let Some(done) = owned.replace(fd) {
            if depth <= VERIFIED_DEPTH && verified.len() < VERIFIED_MAX {
                verified.push((walked.clone(), done));
            } else {
                passed.push(done);
            }
        }
        cached = None;
        walked = below;
        depth += 1;
    }
    if let Some(fd) = owned {
        if depth <= VERIFIED_DEPTH && verified.len() < VERIFIED_MAX {
            verified.push((walked.clone(), fd));
        } else {
            let out = f(&walked, fd.as_fd(), last_stat.as_ref());
            passed.push(fd);
            super::sys::close_together(passed);
            return out;
        }
        cached = Some(verified.len() - 1);
    }
    let i = cached.expect("the last directory is cached");
    f(&walked, verified[i].1.as_fd(), last_stat.as_ref())
}

/// Open the directory `name` below `parent` (which `path` names with it),
/// not following a symbolic link, and check it; with its `fstat`.
fn open_checked_dir(parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<(OwnedFd, FileStat), Untrusted> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(Untrusted::Missing(path.into())),
        Err(Errno::ENOTDIR) | Err(Errno::ELOOP) => {
            return Err(Untrusted::Unsafe { path: path.into(), why: "is a symbolic link or not a directory".into() })
        }
        Err(errno) => return Err(Untrusted::Io { path: path.into(), errno }),
    };
    let st = check_dir(path, fd.as_fd())?;
    Ok((fd, st))
}

fn check_dir(path: &Path, fd: BorrowedFd<'_>) -> Result<FileStat, Untrusted> {
    let st = fstat(fd).map_err(|errno| Untrusted::Io { path: path.into(), errno })?;
    if !is_type(&st, SFlag::S_IFDIR) {
        return Err(Untrusted::Unsafe { path: path.into(), why: "is not a directory".into() });
    }
    check_owner_and_mode(path, &st)?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's tree of files, removed when the test ends, also when it
    /// fails half-way (with modes it set that no other run expects).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(base: &Path) -> Scratch {
            let _ = std::fs::remove_dir_all(base);
            Scratch(base.to_path_buf())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    use std::os::unix::fs::PermissionsExt;

    /// One `linux_dirent64` record, padded to 8 bytes as the kernel does.
    fn dirent(name: &[u8], d_type: u8) -> Vec<u8> {
        let len = (19 + name.len() + 1).div_ceil(8) * 8;
        let mut r = vec![0u8; len];
        r[..8].copy_from_slice(&7u64.to_ne_bytes());
        r[16..18].copy_from_slice(&(len as u16).to_ne_bytes());
        r[18] = d_type;
        r[19..19 + name.len()].copy_from_slice(name);
        r
    }

    #[test]
    fn getdents_records_are_read_to_their_nul_and_a_broken_one_is_an_error() {
        let mut buf = dirent(b".", libc::DT_DIR);
        buf.extend(dirent(b"0123456789abcdef", libc::DT_DIR));
        buf.extend(dirent(b"config.v2.json", libc::DT_REG));
        let got = dirents(&buf).unwrap();
        assert_eq!(
            got,
            [
                (&b"."[..], libc::DT_DIR),
                (&b"0123456789abcdef"[..], libc::DT_DIR),
                (&b"config.v2.json"[..], libc::DT_REG)
            ]
        );
        // A record longer than what is left, one shorter than its header,
        // and a header cut off: never read past the buffer.
        let whole = dirent(b"name", libc::DT_DIR);
        assert!(dirents(&whole[..whole.len() - 1]).is_err());
        let mut short = whole.clone();
        short[16..18].copy_from_slice(&10u16.to_ne_bytes());
        assert!(dirents(&short).is_err());
        assert!(dirents(&whole[..17]).is_err());
        assert!(dirents(&[]).unwrap().is_empty());
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn relative_and_dotdot_paths_are_refused() {
        assert!(matches!(read_root_owned(Path::new("etc/passwd"), 10), Err(Untrusted::Unsafe { .. })));
        assert!(matches!(read_root_owned(Path::new("/etc/../etc/passwd"), 10), Err(Untrusted::Unsafe { .. })));
    }

    #[test]
    fn a_root_owned_file_is_read_and_a_missing_one_reported() {
        let got = read_root_owned(Path::new("/etc/passwd"), 1 << 20).expect("/etc/passwd is root-owned 0644");
        assert!(got.contents.starts_with(b"root:"));
        match read_root_owned(Path::new("/etc/cagepipe-no-such-dir/x.toml"), 10) {
            Err(Untrusted::Missing(p)) => assert_eq!(p, Path::new("/etc/cagepipe-no-such-dir")),
            other => panic!("expected Missing, got {other:?}"),
        }
        assert!(matches!(read_root_owned(Path::new("/etc/passwd"), 3), Err(Untrusted::Unsafe { .. })));
    }

    /// The file system and inode, as `statfs` and `stat` see them; the
    /// root of a cgroup2 hierarchy mounted here is inode 1 (kernfs).
    #[test]
    fn a_probed_directory_shows_its_file_system_and_inode() {
        use std::os::unix::fs::MetadataExt;
        let (magic, inode) = probe_root_owned_dir(Path::new("/proc/sys")).unwrap();
        assert_eq!((magic, inode), (0x9fa0, std::fs::metadata("/proc/sys").unwrap().ino()), "procfs");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for line in mountinfo.lines().filter(|l| l.contains(" - cgroup2 ")) {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields[3] == "/" && !fields[4].contains('\\') {
                let got = probe_root_owned_dir(Path::new(fields[4]));
                assert!(matches!(got, Ok((0x6367_7270, 1))), "{line}: {got:?}");
            }
        }
        assert!(matches!(probe_root_owned_dir(Path::new("/nonexistent-cagepipe")), Err(Untrusted::Missing(_))));
        for not_a_dir in ["/etc/passwd", "/proc/self"] {
            assert!(matches!(probe_root_owned_dir(Path::new(not_a_dir)), Err(Untrusted::Unsafe { .. })), "{not_a_dir}");
        }
    }

    #[test]
    fn writable_symlinked_or_foreign_components_are_refused() {
        if !is_root() {
            eprintln!(
                "SKIP writable_symlinked_or_foreign_components_are_refused: needs root to create root-owned files"
            );
            return;
        }
        let base = std::env::temp_dir().join(format!("cagepipe-secure-{}", std::process::id()));
        let _scratch = Scratch::new(&base);
        std::fs::create_dir_all(base.join("d")).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(base.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = base.join("d/f");
        std::fs::write(&file, b"ok").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The temp dir itself (/tmp, mode 1777) is writable by others.
        match read_root_owned(&file, 10) {
            Err(Untrusted::Unsafe { path, .. }) if std::env::temp_dir().starts_with(&path) => {}
            Ok(_) if std::env::temp_dir().metadata().unwrap().permissions().mode() & 0o022 == 0 => {}
            other => panic!("expected the world-writable temp dir to be refused, got {other:?}"),
        }
        // Below a trusted root: build a tree in /run (root-owned 0755).
        let base = Path::new("/run").join(format!("cagepipe-secure-{}", std::process::id()));
        let _scratch = Scratch::new(&base);
        std::fs::create_dir_all(base.join("d")).unwrap();
        for d in [&base, &base.join("d")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let file = base.join("d/f");
        std::fs::write(&file, b"ok").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_root_owned(&file, 10).unwrap().contents, b"ok");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(matches!(read_root_owned(&file, 10), Err(Untrusted::Unsafe { .. })));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

        std::fs::set_permissions(base.join("d"), std::fs::Permissions::from_mode(0o757)).unwrap();
        assert!(
            matches!(read_root_owned(&file, 10), Err(Untrusted::Unsafe { ref path, .. }) if path == &base.join("d"))
        );
        std::fs::set_permissions(base.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();

        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(1)), None).unwrap();
        assert!(matches!(read_root_owned(&file, 10), Err(Untrusted::Unsafe { .. })));
        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

        std::os::unix::fs::symlink(&file, base.join("d/link")).unwrap();
        assert!(matches!(read_root_owned(&base.join("d/link"), 10), Err(Untrusted::Unsafe { .. })));
        std::os::unix::fs::symlink(base.join("d"), base.join("dirlink")).unwrap();
        assert!(matches!(read_root_owned(&base.join("dirlink/f"), 10), Err(Untrusted::Unsafe { .. })));
    }

    /// Docker's layout, `containers/<id>/config.v2.json`, read relative to
    /// the open `containers`: every rule of the walk from `/` holds for
    /// the components below it, and each refusal reads as it did then.
    #[test]
    fn files_below_an_open_directory_are_checked_like_every_component() {
        if !is_root() {
            let why = "needs root to create root-owned files";
            assert!(std::env::var_os("CAGEPIPE_STRICT").is_none_or(|v| v != "1"), "strict mode: {why}");
            eprintln!("SKIP files_below_an_open_directory_are_checked_like_every_component: {why}");
            return;
        }
        let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        let base = Path::new("/run").join(format!("cagepipe-secure-in-{}", std::process::id()));
        let _scratch = Scratch::new(&base);
        let containers = base.join("containers");
        std::fs::create_dir_all(containers.join("a")).unwrap();
        mode(&base, 0o755);
        mode(&containers, 0o710);
        mode(&containers.join("a"), 0o710);
        let file = containers.join("a/config.v2.json");
        std::fs::write(&file, br#"{"Name":"/alice"}"#).unwrap();
        mode(&file, 0o600);
        std::os::unix::fs::symlink(containers.join("a"), containers.join("b")).unwrap();
        std::os::unix::fs::symlink(&file, containers.join("a/link")).unwrap();

        let dir = open_root_owned_dir(&containers, 10).unwrap();
        assert_eq!(dir.entries, [("a".to_string(), true), ("b".to_string(), false)]);
        let read = |rel: &str| read_root_owned_in(&dir, Path::new(rel), 100);
        assert_eq!(read("a/config.v2.json").unwrap().contents, br#"{"Name":"/alice"}"#);
        // Refused as the walk from `/` refuses the same path, word for word.
        let refused = |rel: &str, path: &Path, why: &str| {
            let got = read(rel).unwrap_err();
            assert!(
                matches!(&got, Untrusted::Unsafe { path: p, why: w } if p == path && w.contains(why)),
                "{rel}: {got:?}"
            );
            assert_eq!(got.to_string(), read_root_owned(&containers.join(rel), 100).unwrap_err().to_string());
        };
        mode(&containers.join("a"), 0o770);
        refused("a/config.v2.json", &containers.join("a"), "is writable by group or others (mode 0770)");
        mode(&containers.join("a"), 0o710);
        mode(&file, 0o620);
        refused("a/config.v2.json", &file, "is writable by group or others (mode 0620)");
        mode(&file, 0o600);
        refused("b/config.v2.json", &containers.join("b"), "is a symbolic link or not a directory");
        refused("a/link", &containers.join("a/link"), "is a symbolic link");
        let owner = |p: &Path, uid: u32| nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
        owner(&containers.join("a"), 1);
        refused("a/config.v2.json", &containers.join("a"), "is owned by uid 1, not root");
        owner(&containers.join("a"), 0);
        owner(&file, 1);
        refused("a/config.v2.json", &file, "is owned by uid 1, not root");
        owner(&file, 0);
        assert!(matches!(read_root_owned_in(&dir, Path::new("a/config.v2.json"), 3), Err(Untrusted::Unsafe { .. })));
        match read("c/config.v2.json") {
            Err(Untrusted::Missing(p)) => assert_eq!(p, containers.join("c")),
            other => panic!("expected Missing, got {other:?}"),
        }
        // Nothing names a file outside the open directory.
        for rel in ["../containers/a/config.v2.json", "a/../a/config.v2.json", "/etc/passwd", "./a/config.v2.json", ""]
        {
            assert!(matches!(read(rel), Err(Untrusted::Unsafe { .. })), "{rel:?}");
        }
        assert_eq!(read("a/config.v2.json").unwrap().contents, br#"{"Name":"/alice"}"#);
    }
}
