//! Whether a command exists inside a container and whether its owner may
//! execute it there, decided from the host: without entering the container
//! and without executing anything.
//!
//! Everything inside the container is hostile. The container's root is an fd
//! opened on the host (of /proc/PID/root), and every path is walked from it
//! one component at a time with `openat(O_PATH|O_NOFOLLOW)`; symbolic links
//! are read with `readlinkat` and resolved by hand, so an absolute target
//! starts again at the container's root and `..` never climbs above it (the
//! kernel's rule for a chrooted process). The "magic" links of a procfs
//! inside (/proc/1/root, /proc/self/exe) are read as plain text too, so they
//! cannot lead out either. `openat2(RESOLVE_IN_ROOT)` would do
//! this in one call but needs Linux 5.6, and EL8's 4.18 must work too.
//! Nothing is opened for reading except a regular file, after fstat said so,
//! with O_NONBLOCK|O_NOFOLLOW|O_NOCTTY, and checked to be the same inode;
//! at most [`BINPRM_BUF_SIZE`] bytes of it are read, as the kernel does.
//!
//! The answer imitates `execve` as cagepipe's launcher tries the candidates
//! (`command::exec_first`): the errors execve gives for a missing or an
//! unusable file (ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, EACCES) move on to the
//! next candidate; a file the kernel starts, or refuses with another error
//! (ENOEXEC), ends the search.
//!
//! Not modelled: ACLs, capabilities of the viewer, LSMs (AppArmor, SELinux),
//! binfmt_misc formats, and FUSE file systems, whose server can make any
//! lookup wait.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::platform::fs::{fstat, fstatvfs, openat, readlinkat, FileStat, FsFlags, Mode, OFlag, SFlag, S_ISVTX};
use crate::platform::Errno;

use crate::escape::escape;

/// The kernel's limit on symbolic links followed in one lookup
/// (MAXSYMLINKS, include/linux/namei.h); the 41st gives ELOOP.
pub(crate) const MAX_SYMLINKS: u32 = 40;

/// The longest path or link target the kernel accepts, its NUL included
/// (PATH_MAX); longer gives ENAMETOOLONG.
const PATH_MAX: usize = 4096;

/// The longest file name (NAME_MAX); longer gives ENAMETOOLONG.
const NAME_MAX: usize = 255;

/// How many directories deep a walk may go. The kernel has no such limit,
/// but each level holds an fd here, and a hostile tree must not exhaust
/// them; real commands live a few levels down.
const MAX_DEPTH: usize = 256;

/// Lookups one walk may make (path components, those of link targets
/// included). The kernel's own limits (40 links of up to 4 KiB each) allow
/// some 80,000, which a hostile container can chain to make every walk cost
/// tens of milliseconds; a real command is reached in a few dozen.
pub(crate) const WALK_STEPS: u64 = 1024;

/// Lookups all the walks made for one account may make together.
pub(crate) const ACCOUNT_STEPS: u64 = 100_000;

/// Bytes of link targets all the walks made for one account may read.
pub(crate) const ACCOUNT_LINK_BYTES: u64 = 4 << 20;

/// What walks may still cost: lookups and bytes of link targets read,
/// shared by every walk made for one account, so that no file or
/// container can make the look from the host cost more than a bound.
#[derive(Debug)]
pub(crate) struct Budget {
    steps: Cell<u64>,
    link_bytes: Cell<u64>,
    /// Walks cut short so far (by this budget or by [`WALK_STEPS`]).
    cuts: Cell<u64>,
}

impl Budget {
    pub(crate) fn new(steps: u64, link_bytes: u64) -> Budget {
        Budget { steps: Cell::new(steps), link_bytes: Cell::new(link_bytes), cuts: Cell::new(0) }
    }

    /// One account's worth.
    pub(crate) fn per_account() -> Budget {
        Budget::new(ACCOUNT_STEPS, ACCOUNT_LINK_BYTES)
    }

    /// Nothing left: every further walk would be cut at once.
    pub(crate) fn exhausted(&self) -> bool {
        self.steps.get() == 0 || self.link_bytes.get() == 0
    }

    /// How many walks were cut short so far.
    pub(crate) fn cuts(&self) -> u64 {
        self.cuts.get()
    }

    fn take(cell: &Cell<u64>, n: u64) -> bool {
        match cell.get().checked_sub(n) {
            Some(left) => {
                cell.set(left);
                true
            }
            None => {
                cell.set(0);
                false
            }
        }
    }

    fn cut(&self, why: String) -> WalkError {
        self.cuts.set(self.cuts.get() + 1);
        WalkError::Costly(why)
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::per_account()
    }
}

/// How much of a file the kernel reads to decide how to run it
/// (BINPRM_BUF_SIZE, 256 since Linux 5.1); its `#!` line must fit in the
/// first 255 bytes.
pub(crate) const BINPRM_BUF_SIZE: usize = 256;

/// Who looks: host-side ids. The kernel checks permissions on host ids even
/// inside a user namespace (inode owners are kuids, the process's ids are
/// mapped to kuids), and the fds here are the host's view, so fstat shows
/// host ids too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Viewer {
    pub(crate) uid: u32,
    /// Primary gid.
    pub(crate) gid: u32,
    /// Supplementary gids.
    pub(crate) groups: Vec<u32>,
    /// The account's name, only for the messages ("is not executable by
    /// alice"); when empty, the messages say "uid 1001".
    pub(crate) name: String,
}

impl Viewer {
    fn label(&self) -> String {
        if self.name.is_empty() {
            format!("uid {}", self.uid)
        } else {
            escape(self.name.as_bytes())
        }
    }
}

/// The answer of [`find_command`]. Paths are as seen inside the container,
/// as bytes (a name need not be UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Found and executable by the viewer. `path` is where it was found
    /// (inside view, after symlinks); `interpreter` the #! program of a
    /// script (after symlinks; for `#!/usr/bin/env NAME`, the NAME found on
    /// the search path), checked to exist and be executable too.
    Executable { path: Vec<u8>, interpreter: Option<Vec<u8>> },
    /// No candidate exists inside.
    NotFound,
    /// A candidate exists but the viewer could not execute it; `why` is a
    /// short phrase an admin can paste into a customer email, to follow the
    /// path: "is not executable by alice (mode 0644)". `path` is the file
    /// found (after symlinks), or the candidate as given when the walk
    /// stopped on the way (then `why` names the directory or link).
    NotExecutable { path: Vec<u8>, why: String },
    /// A script whose #! interpreter does not exist inside. `interpreter` is
    /// as written on the #! line (or the NAME of `#!/usr/bin/env NAME`); a
    /// relative one counts as missing, as the kernel would look for it in
    /// the delivery's working directory.
    InterpreterMissing { path: Vec<u8>, interpreter: Vec<u8> },
    /// A script whose #! interpreter exists but is not executable by the
    /// viewer. `interpreter` is as written on the #! line (for
    /// `#!/usr/bin/env NAME`: the first search-path candidate that exists),
    /// not after symlinks: `why` may be that it cannot be reached.
    InterpreterNotExecutable { path: Vec<u8>, interpreter: Vec<u8>, why: String },
    /// The look was given up: resolving `path` would cost more than the
    /// [`Budget`] allows; `why` says which limit.
    Unchecked { path: Vec<u8>, why: String },
}

impl fmt::Display for Lookup {
    /// One sentence for a report; control characters and non-UTF-8 bytes
    /// are escaped (an interpreter "/bin/sh\r" shows as "/bin/sh\x0d").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Executable { path, interpreter: None } => write!(f, "{} is executable", escape(path)),
            Lookup::Executable { path, interpreter: Some(i) } => {
                write!(f, "{} is executable, with interpreter {}", escape(path), escape(i))
            }
            Lookup::NotFound => write!(f, "the command does not exist in the container"),
            Lookup::NotExecutable { path, why } => write!(f, "{} {why}", escape(path)),
            Lookup::InterpreterMissing { path, interpreter } if !interpreter.starts_with(b"/") => write!(
                f,
                "{}: its interpreter {} is not an absolute path, or does not exist in the container",
                escape(path),
                escape(interpreter)
            ),
            Lookup::InterpreterMissing { path, interpreter } => {
                write!(f, "{}: its interpreter {} does not exist in the container", escape(path), escape(interpreter))
            }
            Lookup::InterpreterNotExecutable { path, interpreter, why } => {
                write!(f, "{}: its interpreter {} {why}", escape(path), escape(interpreter))
            }
            Lookup::Unchecked { path, why } => write!(f, "{} {why}", escape(path)),
        }
    }
}

/// Find the command as cagepipe would execute it inside the container whose
/// root directory is `root`: try `candidates` (absolute inside paths, PATH
/// already expanded; a relative one is taken from the container's root) in
/// order, and check a script's interpreter, looking up the program of
/// `#!/usr/bin/env NAME` along `search_path` (colon-separated, the PATH the
/// command gets).
///
/// The first candidate that the kernel would start decides (executable, or
/// started but bound to fail, e.g. an unreadable script); candidates that
/// execve would refuse with ENOENT or EACCES are skipped, like execvp does.
/// When none is executable: the first problem found, or [`Lookup::NotFound`]
/// when nothing exists.
pub(crate) fn find_command(root: BorrowedFd<'_>, candidates: &[Vec<u8>], viewer: &Viewer, search_path: &str) -> Lookup {
    find_command_within(root, candidates, viewer, search_path, &Budget::per_account())
}

/// [`find_command`], its walks paid from `budget`.
pub(crate) fn find_command_within(
    root: BorrowedFd<'_>,
    candidates: &[Vec<u8>],
    viewer: &Viewer,
    search_path: &str,
    budget: &Budget,
) -> Lookup {
    let walker = Walker { root, viewer, protected_symlinks: host_protects_symlinks(), budget };
    walker.find(candidates, search_path)
}

/// Where `path` leads inside the root after every symbolic link, walked as
/// `viewer` (every directory on the way searchable); None when nothing is
/// there or the viewer cannot reach it. For the `[sandbox]` paths, which
/// Landlock resolves the same way when the command starts. Paid from
/// `budget`; Err(why) when the walk was given up (see [`Budget`]).
pub(crate) fn where_inside_within(
    root: BorrowedFd<'_>,
    path: &[u8],
    viewer: &Viewer,
    budget: &Budget,
) -> Result<Option<Vec<u8>>, String> {
    let walker = Walker { root, viewer, protected_symlinks: host_protects_symlinks(), budget };
    match walker.walk(path) {
        Ok(found) => Ok(Some(found.path)),
        Err(WalkError::Costly(why)) => Err(why),
        Err(_) => Ok(None),
    }
}

/// What one candidate amounts to.
enum Verdict {
    /// execve would start it (or fail with an error execvp does not pass
    /// over): the search ends here.
    Decides(Lookup),
    /// execve would fail with EACCES (or ELOOP): remembered, and the next
    /// candidate is tried.
    Refused(Lookup),
    /// execve would fail with ENOENT or ENOTDIR.
    Absent,
}

/// Why a walk did not reach a file.
#[derive(Debug)]
enum WalkError {
    /// ENOENT, ENOTDIR, ENAMETOOLONG: nothing there.
    Missing,
    /// EACCES: a directory on the way (inside path) lacks search permission.
    NotSearchable(Vec<u8>),
    /// EACCES: fs.protected_symlinks forbids following this link (inside path).
    ProtectedSymlink(Vec<u8>),
    /// ELOOP: more than [`MAX_SYMLINKS`] links.
    TooManyLinks,
    /// More than [`MAX_DEPTH`] directories deep.
    TooDeep,
    /// Any other failure of a system call, at this inside path.
    Io(Vec<u8>, Errno),
    /// Given up: it would cost more than the [`Budget`] allows; why.
    Costly(String),
}

/// A file reached by a walk.
struct Found {
    /// An O_PATH fd of the file itself (not of a link to it).
    fd: OwnedFd,
    stat: FileStat,
    /// Inside path, after symlinks.
    path: Vec<u8>,
    /// The directory it was found in, and its name there, to open it for
    /// reading; None when the walk ended on a directory ("/", "x/..").
    parent: Option<(OwnedFd, Vec<u8>)>,
}

/// How a file starts, as the kernel's binfmt handlers see it.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    /// An ELF program (binfmt_elf).
    Program,
    /// A `#!` script (binfmt_script): the interpreter and its one optional
    /// argument (the rest of the line, spaces inside kept).
    Script { interpreter: Vec<u8>, argument: Option<Vec<u8>> },
    /// `#!` followed by nothing the kernel accepts (ENOEXEC); the reason.
    BadScript(&'static str),
    /// Neither: ENOEXEC (binfmt_misc is not considered).
    Unknown,
}

/// Whether the host enforces fs.protected_symlinks (a global sysctl, so it
/// applies inside containers too). Unreadable counts as on, the setting of
/// systemd and of Debian.
fn host_protects_symlinks() -> bool {
    std::fs::read("/proc/sys/fs/protected_symlinks").map(|v| v.trim_ascii() != b"0").unwrap_or(true)
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Permission bits wanted, as in the mode's low three bits.
const MAY_READ: u32 = 0o4;
const MAY_EXEC: u32 = 0o1;

/// The classic Unix rule (generic_permission without ACLs): the owner's bits
/// if the viewer owns the file, else the group's if the file's group is one
/// of the viewer's, else the others' bits, and only that one class counts.
/// ACLs are ignored: on a file that has one, the group bits are the ACL's
/// mask, so this can be wrong either way for named users and groups.
fn allows(viewer: &Viewer, st: &FileStat, want: u32) -> bool {
    let mode = st.st_mode;
    let bits = if st.st_uid == viewer.uid {
        mode >> 6
    } else if st.st_gid == viewer.gid || viewer.groups.contains(&st.st_gid) {
        mode >> 3
    } else {
        mode
    };
    bits & want == want
}

fn inside_path(names: &[Vec<u8>]) -> Vec<u8> {
    if names.is_empty() {
        return b"/".to_vec();
    }
    let mut path = Vec::new();
    for name in names {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    path
}

/// The final component of a path ("env" of "/usr/bin/env").
fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

fn path_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

struct Walker<'a> {
    root: BorrowedFd<'a>,
    viewer: &'a Viewer,
    /// fs.protected_symlinks is on (fs/namei.c, may_follow_link).
    protected_symlinks: bool,
    budget: &'a Budget,
}

impl Walker<'_> {
    fn find(&self, candidates: &[Vec<u8>], search_path: &str) -> Lookup {
        let mut first_refusal = None;
        for candidate in candidates {
            match self.candidate(candidate, search_path) {
                Verdict::Decides(lookup) => return lookup,
                Verdict::Refused(lookup) => {
                    first_refusal.get_or_insert(lookup);
                }
                Verdict::Absent => {}
            }
        }
        first_refusal.unwrap_or(Lookup::NotFound)
    }

    /// Resolve `path` inside the root, following every symbolic link (the
    /// final one too, as execve does), checking search permission on every
    /// directory looked up in.
    fn walk(&self, path: &[u8]) -> Result<Found, WalkError> {
        // An empty path is ENOENT; a too long one ENAMETOOLONG; one with a
        // NUL cannot be passed to execve at all.
        if path.is_empty() || path.len() >= PATH_MAX || path.contains(&0) {
            return Err(WalkError::Missing);
        }
        let io = |at: &[Vec<u8>], e: Errno| WalkError::Io(inside_path(at), e);
        let root = self
            .root
            .try_clone_to_owned()
            .map_err(|e| io(&[], Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32))))?;
        let root_stat = fstat(&root).map_err(|e| io(&[], e))?;
        // The directories from the root down to the current one, and their
        // names: ".." pops one, and at the root stays there, so nothing
        // above the root is ever looked up.
        let mut dirs: Vec<(OwnedFd, FileStat)> = vec![(root, root_stat)];
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut pending: VecDeque<Vec<u8>> = components(path).collect();
        // "x/" must be a directory (the kernel's LOOKUP_DIRECTORY).
        let mut must_be_dir = path.ends_with(b"/");
        let mut links = 0;
        let mut steps = 0;
        if pending.is_empty() {
            // "/" itself: nothing is looked up, so nothing needs searching.
            let (fd, stat) = dirs.pop().expect("the root is there");
            return Ok(Found { fd, stat, path: b"/".to_vec(), parent: None });
        }
        while let Some(name) = pending.pop_front() {
            steps += 1;
            if steps > WALK_STEPS {
                return Err(self.budget.cut(format!(
                    "could not be checked: resolving it takes more than {WALK_STEPS} lookups (symbolic links full of \
                     \"..\"?), more than the survey spends on one path"
                )));
            }
            if !Budget::take(&self.budget.steps, 1) {
                return Err(self.budget.cut(format!(
                    "could not be checked: the account's paths have taken all of the {ACCOUNT_STEPS} lookups the \
                     survey spends on one account"
                )));
            }
            let (dir, dir_stat) = dirs.last().expect("the root is never popped");
            // may_lookup: every component, "." and ".." included, needs
            // search permission on the directory it is looked up in.
            if !allows(self.viewer, dir_stat, MAY_EXEC) {
                return Err(WalkError::NotSearchable(inside_path(&names)));
            }
            let is_last = pending.is_empty();
            if name == b"." {
                continue;
            }
            if name == b".." {
                if dirs.len() > 1 {
                    dirs.pop();
                    names.pop();
                }
                continue;
            }
            if name.len() > NAME_MAX {
                return Err(WalkError::Missing);
            }
            let fd = match openat(dir, name.as_slice(), path_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG) => return Err(WalkError::Missing),
                Err(e) => {
                    names.push(name);
                    return Err(io(&names, e));
                }
            };
            let stat = fstat(&fd).map_err(|e| io(&names, e))?;
            match kind(&stat) {
                SFlag::S_IFLNK => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(WalkError::TooManyLinks);
                    }
                    // may_follow_link: in a sticky, world-writable directory
                    // (/tmp) a link is followed only by its owner, or when
                    // the directory's owner owns the link too.
                    if self.protected_symlinks
                        && dir_stat.st_mode & S_ISVTX != 0
                        && dir_stat.st_mode & 0o002 != 0
                        && stat.st_uid != self.viewer.uid
                        && stat.st_uid != dir_stat.st_uid
                    {
                        names.push(name);
                        return Err(WalkError::ProtectedSymlink(inside_path(&names)));
                    }
                    // The empty path reads the link the O_PATH fd is of,
                    // the very inode just checked, not whatever the name
                    // points to by now.
                    let target = readlinkat(&fd, "").map_err(|e| {
                        let mut at = names.clone();
                        at.push(name.clone());
                        io(&at, e)
                    })?;
                    let target = std::os::unix::ffi::OsStringExt::into_vec(target);
                    if !Budget::take(&self.budget.link_bytes, target.len() as u64) {
                        return Err(self.budget.cut(format!(
                            "could not be checked: the account's symbolic links have taken all of the {} MiB of link \
                             text the survey reads for one account",
                            ACCOUNT_LINK_BYTES >> 20
                        )));
                    }
                    if target.is_empty() {
                        return Err(WalkError::Missing);
                    }
                    if target.len() >= PATH_MAX {
                        return Err(WalkError::Missing);
                    }
                    if target.starts_with(b"/") {
                        // An absolute target starts again at the root: the
                        // container's, not the host's.
                        dirs.truncate(1);
                        names.clear();
                    }
                    if is_last && target.ends_with(b"/") {
                        must_be_dir = true;
                    }
                    for component in components(&target).rev() {
                        pending.push_front(component);
                    }
                    if pending.is_empty() {
                        // A link to "/" (or "//"): the root itself.
                        break;
                    }
                }
                SFlag::S_IFDIR if !is_last => {
                    if dirs.len() > MAX_DEPTH {
                        return Err(WalkError::TooDeep);
                    }
                    dirs.push((fd, stat));
                    names.push(name);
                }
                _ if !is_last => return Err(WalkError::Missing), // ENOTDIR
                file_kind => {
                    if must_be_dir && file_kind != SFlag::S_IFDIR {
                        return Err(WalkError::Missing); // ENOTDIR
                    }
                    let parent = dirs.pop().expect("the root is there").0;
                    names.push(name.clone());
                    return Ok(Found { fd, stat, path: inside_path(&names), parent: Some((parent, name)) });
                }
            }
        }
        // The walk ended on a directory already held: "/usr/..", "/." or a
        // link to a directory's "..".
        let (fd, stat) = dirs.pop().expect("the root is there");
        Ok(Found { fd, stat, path: inside_path(&names), parent: None })
    }

    /// Why `found` cannot be executed by the viewer, if it cannot: the checks
    /// of do_open_execat (a regular file, MAY_EXEC, no noexec mount).
    fn exec_refusal(&self, found: &Found) -> Option<String> {
        let who = self.viewer.label();
        let why = match kind(&found.stat) {
            SFlag::S_IFREG => {
                if !allows(self.viewer, &found.stat, MAY_EXEC) {
                    return Some(format!(
                        "is not executable by {who} (mode {:04o}, owner uid {}, group gid {})",
                        found.stat.st_mode & 0o7777,
                        found.stat.st_uid,
                        found.stat.st_gid
                    ));
                }
                // The mount flag, not the file system's: a bind mount can be
                // noexec where its source is not (path_noexec).
                return match fstatvfs(&found.fd) {
                    Ok(vfs) if vfs.flags().contains(FsFlags::ST_NOEXEC) => {
                        Some("is on a filesystem mounted noexec".to_string())
                    }
                    Ok(_) => None,
                    Err(e) => Some(format!("cannot be checked (fstatvfs: {})", e.desc())),
                };
            }
            SFlag::S_IFDIR => "is a directory",
            SFlag::S_IFIFO => "is a named pipe (FIFO), not a program",
            SFlag::S_IFCHR | SFlag::S_IFBLK => "is a device, not a program",
            SFlag::S_IFSOCK => "is a socket, not a program",
            _ => "is not a regular file",
        };
        Some(why.to_string())
    }

    /// The first [`BINPRM_BUF_SIZE`] bytes of a regular file found by a walk.
    fn read_head(&self, found: &Found) -> Result<Vec<u8>, String> {
        let Some((parent, name)) = &found.parent else {
            return Err("is not a regular file".into());
        };
        // A regular file cannot block an open, but a name can be swapped
        // for a FIFO or device after the fstat: O_NONBLOCK and O_NOCTTY make
        // such an open harmless, and the dev/ino check refuses it.
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = openat(parent, name.as_slice(), flags, Mode::empty())
            .map_err(|e| format!("cannot be read to tell a program from a script ({})", e.desc()))?;
        let st = fstat(&fd).map_err(|e| format!("cannot be checked (fstat: {})", e.desc()))?;
        if (st.st_dev, st.st_ino) != (found.stat.st_dev, found.stat.st_ino) || kind(&st) != SFlag::S_IFREG {
            return Err("changed while it was being checked".into());
        }
        let mut head = Vec::with_capacity(BINPRM_BUF_SIZE);
        std::fs::File::from(fd)
            .take(BINPRM_BUF_SIZE as u64)
            .read_to_end(&mut head)
            .map_err(|e| format!("cannot be read to tell a program from a script ({e})"))?;
        Ok(head)
    }

    /// Walk to `path` and check that the viewer may execute it, without
    /// looking inside: for interpreters. Ok(inside path after symlinks);
    /// Err(None) when it does not exist; Err(Some(why)) when it exists but
    /// is not executable or cannot be reached.
    fn executable_at(&self, path: &[u8]) -> Result<Vec<u8>, Option<String>> {
        let found = match self.walk(path) {
            Ok(found) => found,
            Err(WalkError::Missing) => return Err(None),
            Err(e) => return Err(Some(self.walk_refusal(e))),
        };
        match self.exec_refusal(&found) {
            Some(why) => Err(Some(why)),
            None => Ok(found.path),
        }
    }

    fn walk_refusal(&self, e: WalkError) -> String {
        let who = self.viewer.label();
        match e {
            WalkError::Missing => "does not exist".into(),
            WalkError::NotSearchable(dir) => {
                format!("cannot be reached: directory {} is not searchable by {who}", escape(&dir))
            }
            WalkError::ProtectedSymlink(link) => format!(
                "cannot be reached: the symbolic link {} is in a sticky world-writable directory and owned by \
                 neither {who} nor the directory's owner (fs.protected_symlinks)",
                escape(&link)
            ),
            WalkError::TooManyLinks => {
                format!("cannot be reached: more than {MAX_SYMLINKS} symbolic links (a loop?)")
            }
            WalkError::TooDeep => format!("cannot be reached: more than {MAX_DEPTH} directories deep"),
            WalkError::Io(at, errno) => format!("cannot be checked: {}: {}", escape(&at), errno.desc()),
            WalkError::Costly(why) => why,
        }
    }

    fn candidate(&self, candidate: &[u8], search_path: &str) -> Verdict {
        let found = match self.walk(candidate) {
            Ok(found) => found,
            Err(WalkError::Missing) => return Verdict::Absent,
            Err(WalkError::Costly(why)) => {
                return Verdict::Decides(Lookup::Unchecked { path: candidate.to_vec(), why })
            }
            Err(e) => {
                return Verdict::Refused(Lookup::NotExecutable { path: candidate.to_vec(), why: self.walk_refusal(e) })
            }
        };
        if let Some(why) = self.exec_refusal(&found) {
            return Verdict::Refused(Lookup::NotExecutable { path: found.path, why });
        }
        let head = match self.read_head(&found) {
            Ok(head) => head,
            Err(why) => return Verdict::Refused(Lookup::NotExecutable { path: found.path, why }),
        };
        let header = parse_header(&head);
        // The head was read as root, for the kernel reads it whatever the
        // mode; but a script runs only if its interpreter can read it, and
        // what its #! line says is not the account's to learn when the
        // account cannot read the file: only "a program or not" is used.
        if header != Header::Program && !allows(self.viewer, &found.stat, MAY_READ) {
            let why = self.unreadable_script(&found);
            return Verdict::Decides(Lookup::NotExecutable { path: found.path, why });
        }
        let (interpreter, argument) = match header {
            Header::Program => return Verdict::Decides(Lookup::Executable { path: found.path, interpreter: None }),
            Header::Unknown => {
                return Verdict::Decides(Lookup::NotExecutable {
                    path: found.path,
                    why: "is neither a compiled program (ELF) nor a script starting with #!, so the kernel cannot \
                          run it"
                        .into(),
                })
            }
            Header::BadScript(why) => {
                return Verdict::Decides(Lookup::NotExecutable { path: found.path, why: why.into() })
            }
            Header::Script { interpreter, argument } => (interpreter, argument),
        };
        if interpreter.is_empty() {
            // "#!" and then the end of a short file: the kernel looks for ""
            // and fails with ENOENT.
            return Verdict::Refused(Lookup::NotExecutable {
                path: found.path,
                why: "has a #! line that names no interpreter".into(),
            });
        }
        // binfmt_script opens the interpreter as execve opens a program:
        // missing is ENOENT, unusable EACCES, and execvp moves on. The kernel
        // would look for a relative one in the working directory, which is
        // not known here.
        if !interpreter.starts_with(b"/") {
            return Verdict::Refused(Lookup::InterpreterMissing { path: found.path, interpreter });
        }
        let interpreter_found = match self.executable_at(&interpreter) {
            Ok(at) => at,
            Err(None) => return Verdict::Refused(Lookup::InterpreterMissing { path: found.path, interpreter }),
            Err(Some(why)) => {
                return Verdict::Refused(Lookup::InterpreterNotExecutable { path: found.path, interpreter, why })
            }
        };
        // From here on execve succeeds: the interpreter runs, and what
        // fails, fails inside it, so the search ends here.
        // The interpreter opens the script by name, as the viewer.
        let program = match argument {
            Some(argument) if base_name(&interpreter) == b"env" => env_program(&argument),
            _ => None,
        };
        let Some(program) = program else {
            return Verdict::Decides(Lookup::Executable { path: found.path, interpreter: Some(interpreter_found) });
        };
        Verdict::Decides(match self.env_lookup(&program, search_path) {
            Ok(at) => Lookup::Executable { path: found.path, interpreter: Some(at) },
            Err(None) => Lookup::InterpreterMissing { path: found.path, interpreter: program },
            Err(Some((at, why))) => Lookup::InterpreterNotExecutable { path: found.path, interpreter: at, why },
        })
    }

    /// Why a file that is not a compiled program cannot run: the account
    /// cannot read it, and a script's interpreter must.
    fn unreadable_script(&self, found: &Found) -> String {
        format!(
            "is not readable by {}, and only a compiled program runs without being read (mode {:04o}, owner uid {}, \
             group gid {})",
            self.viewer.label(),
            found.stat.st_mode & 0o7777,
            found.stat.st_uid,
            found.stat.st_gid
        )
    }

    /// What `env NAME` would run: NAME itself when it has a '/' (relative
    /// ones cannot be judged and count as missing), else the first
    /// executable along `search_path` (execvp: EACCES moves on too).
    /// Err(None): missing; Err(Some((path, why))): not executable.
    fn env_lookup(&self, program: &[u8], search_path: &str) -> Result<Vec<u8>, Option<(Vec<u8>, String)>> {
        let candidates: Vec<Vec<u8>> = if program.contains(&b'/') {
            if !program.starts_with(b"/") {
                return Err(None);
            }
            vec![program.to_vec()]
        } else {
            // An empty PATH entry would mean the working directory.
            search_path
                .split(':')
                .filter(|dir| !dir.is_empty())
                .map(|dir| [dir.as_bytes(), b"/", program].concat())
                .collect()
        };
        let mut first_refusal = None;
        for candidate in candidates {
            match self.executable_at(&candidate) {
                Ok(at) => return Ok(at),
                Err(None) => {}
                Err(Some(why)) => {
                    first_refusal.get_or_insert((candidate, why));
                }
            }
        }
        Err(first_refusal)
    }
}

/// The components of a path, empty ones (from "//" and a trailing "/")
/// left out.
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty()).map(<[u8]>::to_vec)
}

fn is_space_or_tab(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// How the kernel sees the start of a file: binfmt_elf's magic, then
/// binfmt_script's parse of the #! line (fs/binfmt_script.c, Linux 5.1+),
/// byte for byte: only space and tab separate; the interpreter ends at a
/// space, tab, NUL or the end of the line, so "#!/bin/sh\r\n" names
/// "/bin/sh\r" (which does not exist: the classic error of a script saved
/// with Windows line ends); the rest of the line, trailing spaces and tabs
/// cut, is one argument; the line must fit in 255 bytes unless the
/// interpreter's name ends before. (Kernels before 5.1 read 128 bytes and
/// cut a long line silently.)
fn parse_header(head: &[u8]) -> Header {
    if head.starts_with(b"\x7fELF") {
        return Header::Program;
    }
    if !head.starts_with(b"#!") {
        return Header::Unknown;
    }
    // The kernel's buffer: NUL-padded when the file is shorter, and its
    // last byte never part of the line.
    let mut buf = [0u8; BINPRM_BUF_SIZE];
    let n = head.len().min(BINPRM_BUF_SIZE);
    buf[..n].copy_from_slice(&head[..n]);
    let buf_end = BINPRM_BUF_SIZE - 1;
    let first_non_space = |from: usize, to: usize| (from..=to).find(|&i| !is_space_or_tab(buf[i]));
    let first_terminator = |from: usize, to: usize| (from..=to).find(|&i| is_space_or_tab(buf[i]) || buf[i] == 0);

    let mut line_end = match buf.iter().position(|&b| b == b'\n') {
        Some(i) => i,
        None => {
            let Some(name) = first_non_space(2, buf_end) else {
                return Header::BadScript("has a #! line of spaces only");
            };
            // Without a newline the interpreter's name must end inside the
            // buffer, or it might have been cut.
            if first_terminator(name, buf_end).is_none() {
                return Header::BadScript("has a #! line longer than the 255 bytes the kernel reads");
            }
            buf_end
        }
    };
    while line_end > 2 && is_space_or_tab(buf[line_end - 1]) {
        line_end -= 1;
    }
    let name_start = match first_non_space(2, line_end) {
        Some(i) if i < line_end => i,
        _ => return Header::BadScript("has a #! line that names no interpreter"),
    };
    let separator = first_terminator(name_start, line_end);
    let argument_start = match separator {
        Some(sep) if buf[sep] != 0 => first_non_space(sep, line_end),
        _ => None,
    };
    // Both are C strings from here: each ends at the first NUL.
    let c_string = |from: usize, to: usize| {
        let bytes = &buf[from..to];
        bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())].to_vec()
    };
    let name_end = match argument_start {
        Some(_) => separator.expect("an argument follows a separator"),
        None => line_end,
    };
    Header::Script {
        interpreter: c_string(name_start, name_end),
        argument: argument_start.map(|start| c_string(start, line_end)),
    }
}

/// The program `#!/usr/bin/env ARGUMENT` runs. The kernel passes the rest
/// of the line as one argument, so "php -q" is looked for as a program
/// named "php -q", which is what env does (and fails) on Linux; with
/// "-S" env splits it itself: its first word that is neither an option nor
/// a NAME=VALUE. None when env would run no program, or with other options
/// (not judged: the check stops at env itself).
fn env_program(argument: &[u8]) -> Option<Vec<u8>> {
    if let Some(rest) = argument.strip_prefix(b"-S") {
        return rest
            .split(|&b| is_space_or_tab(b))
            .find(|word| !word.is_empty() && !word.starts_with(b"-") && !word.contains(&b'='))
            .map(<[u8]>::to_vec);
    }
    if argument.starts_with(b"-") || argument.contains(&b'=') {
        return None;
    }
    Some(argument.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An ELF header is all the lookup reads of a program; nothing is run.
    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
    const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

    fn alice() -> Viewer {
        Viewer { uid: 1001, gid: 1001, groups: vec![1001, 2000], name: "alice".into() }
    }

    fn is_root() -> bool {
        crate::platform::process::is_root()
    }

    /// False, after a SKIP line, when not root.
    fn root_or_skip(test: &str, why: &str) -> bool {
        if !is_root() {
            eprintln!("SKIP {test}: needs root to {why}");
        }
        is_root()
    }

    static TREES: AtomicUsize = AtomicUsize::new(0);

    /// A throw-away container root under the temp dir, removed (and its
    /// mounts detached) when dropped.
    struct Tree {
        base: PathBuf,
        root: PathBuf,
        mounts: Vec<PathBuf>,
    }

    impl Tree {
        fn new() -> Tree {
            let n = TREES.fetch_add(1, Ordering::SeqCst);
            let base = std::env::temp_dir().join(format!("cagepipe-inroot-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            let root = base.join("root");
            std::fs::create_dir_all(&root).unwrap();
            for d in [&base, &root] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            Tree { base, root, mounts: Vec::new() }
        }

        fn at(&self, inside: &str) -> PathBuf {
            self.root.join(inside.trim_start_matches('/'))
        }

        fn dir(&self, inside: &str, mode: u32) -> PathBuf {
            let path = self.at(inside);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }

        fn file(&self, inside: &str, contents: &[u8], mode: u32) -> PathBuf {
            let path = self.at(inside);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }

        fn link(&self, inside: &str, target: &str) -> PathBuf {
            let path = self.at(inside);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, &path).unwrap();
            path
        }

        fn open(&self) -> OwnedFd {
            nix::fcntl::open(&self.root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
        }

        fn find_as(&self, viewer: &Viewer, candidates: &[&str]) -> Lookup {
            let candidates: Vec<Vec<u8>> = candidates.iter().map(|c| c.as_bytes().to_vec()).collect();
            find_command(self.open().as_fd(), &candidates, viewer, PATH)
        }

        fn find(&self, candidates: &[&str]) -> Lookup {
            self.find_as(&alice(), candidates)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            for m in self.mounts.iter().rev() {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    fn executable(path: &str, interpreter: Option<&str>) -> Lookup {
        Lookup::Executable { path: path.into(), interpreter: interpreter.map(Into::into) }
    }

    /// The `why` of a NotExecutable at `path`, or a panic.
    fn why_not(lookup: Lookup, path: &str) -> String {
        match lookup {
            Lookup::NotExecutable { path: p, why } if p == path.as_bytes() => why,
            other => panic!("expected {path} to be not executable, got {other:?}"),
        }
    }

    #[test]
    fn a_program_is_found_directly_and_along_the_path() {
        let t = Tree::new();
        t.file("/usr/bin/prog", ELF, 0o755);
        assert_eq!(t.find(&["/usr/bin/prog"]), executable("/usr/bin/prog", None));
        let candidates: Vec<Vec<u8>> =
            crate::deliver::command::candidates(b"prog", PATH).into_iter().map(|c| c.into_bytes()).collect();
        assert_eq!(candidates[0], b"/usr/local/bin/prog");
        let found = find_command(t.open().as_fd(), &candidates, &alice(), PATH);
        assert_eq!(found, executable("/usr/bin/prog", None), "the first candidate is missing, the second used");
    }

    #[test]
    fn a_later_candidate_wins_over_an_earlier_unexecutable_one() {
        let t = Tree::new();
        t.file("/usr/local/bin/prog", ELF, 0o644);
        assert!(why_not(t.find(&["/usr/local/bin/prog"]), "/usr/local/bin/prog")
            .starts_with("is not executable by alice (mode 0644"));
        t.file("/usr/bin/prog", ELF, 0o755);
        assert_eq!(t.find(&["/usr/local/bin/prog", "/usr/bin/prog"]), executable("/usr/bin/prog", None));
        // Neither executable: the first problem.
        std::fs::set_permissions(t.at("/usr/bin/prog"), std::fs::Permissions::from_mode(0o600)).unwrap();
        why_not(t.find(&["/usr/local/bin/prog", "/usr/bin/prog"]), "/usr/local/bin/prog");
    }

    #[test]
    fn missing_files_and_directories_are_told_apart() {
        let t = Tree::new();
        t.file("/usr/bin/prog", ELF, 0o755);
        assert_eq!(t.find(&["/usr/bin/nothing", "/nowhere/prog"]), Lookup::NotFound);
        assert_eq!(t.find(&[]), Lookup::NotFound);
        assert_eq!(t.find(&[""]), Lookup::NotFound);
        // A file used as a directory is ENOTDIR, as good as missing.
        assert_eq!(t.find(&["/usr/bin/prog/x", "/usr/bin/prog/"]), Lookup::NotFound);
        assert_eq!(why_not(t.find(&["/usr/bin"]), "/usr/bin"), "is a directory");
        assert_eq!(why_not(t.find(&["/"]), "/"), "is a directory");
        assert_eq!(why_not(t.find(&["/usr/bin/.."]), "/usr"), "is a directory");
        let long = format!("/{}", "a".repeat(300));
        assert_eq!(t.find(&[&long]), Lookup::NotFound);
        let huge = "/x".repeat(3000);
        assert_eq!(t.find(&[&huge]), Lookup::NotFound);
        assert_eq!(t.find(&["/usr/bin/prog\0/etc"]), Lookup::NotFound);
        // A hostile tree deeper than a walk holds fds for.
        let deep = "/d".repeat(MAX_DEPTH + 10);
        t.file(&format!("{deep}/prog"), ELF, 0o755);
        let deep_prog = format!("{deep}/prog");
        let why = why_not(t.find(&[&deep_prog]), &deep_prog);
        assert_eq!(why, format!("cannot be reached: more than {MAX_DEPTH} directories deep"));
        let shallow_enough = format!("{}/prog", "/d".repeat(MAX_DEPTH));
        t.file(&shallow_enough, ELF, 0o755);
        assert_eq!(t.find(&[&shallow_enough]), executable(&shallow_enough, None));
    }

    #[test]
    fn owner_group_and_other_bits_decide_alone() {
        if !root_or_skip("owner_group_and_other_bits_decide_alone", "chown files") {
            return;
        }
        let t = Tree::new();
        let prog = t.file("/usr/bin/prog", ELF, 0o700);
        std::os::unix::fs::chown(&prog, Some(4242), Some(4242)).unwrap();
        let why = why_not(t.find(&["/usr/bin/prog"]), "/usr/bin/prog");
        assert_eq!(why, "is not executable by alice (mode 0700, owner uid 4242, group gid 4242)");
        std::os::unix::fs::chown(&prog, Some(1001), None).unwrap();
        assert_eq!(t.find(&["/usr/bin/prog"]), executable("/usr/bin/prog", None));
        // The owner's bits count for the owner even when others may.
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o011)).unwrap();
        why_not(t.find(&["/usr/bin/prog"]), "/usr/bin/prog");

        std::os::unix::fs::chown(&prog, Some(4242), Some(2000)).unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o710)).unwrap();
        assert_eq!(t.find(&["/usr/bin/prog"]), executable("/usr/bin/prog", None), "supplementary group 2000");
        std::os::unix::fs::chown(&prog, None, Some(3000)).unwrap();
        why_not(t.find(&["/usr/bin/prog"]), "/usr/bin/prog");
        std::os::unix::fs::chown(&prog, None, Some(1001)).unwrap();
        assert_eq!(t.find(&["/usr/bin/prog"]), executable("/usr/bin/prog", None), "primary group");
        let nameless = Viewer { name: String::new(), ..alice() };
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o701)).unwrap();
        assert!(why_not(t.find_as(&nameless, &["/usr/bin/prog"]), "/usr/bin/prog").contains("by uid 1001 "));
    }

    #[test]
    fn every_directory_on_the_way_must_be_searchable() {
        if !root_or_skip("every_directory_on_the_way_must_be_searchable", "chown directories") {
            return;
        }
        let t = Tree::new();
        t.file("/home/bob/bin/prog", ELF, 0o755);
        let home = t.dir("/home/bob", 0o700);
        std::os::unix::fs::chown(&home, Some(4242), Some(4242)).unwrap();
        let why = why_not(t.find(&["/home/bob/bin/prog"]), "/home/bob/bin/prog");
        assert_eq!(why, "cannot be reached: directory /home/bob is not searchable by alice");
        // "..", too, is looked up in the directory it leaves.
        assert!(matches!(t.find(&["/home/bob/../bob/bin/prog"]), Lookup::NotExecutable { .. }));
        std::os::unix::fs::chown(&home, Some(1001), None).unwrap();
        assert_eq!(t.find(&["/home/bob/bin/prog"]), executable("/home/bob/bin/prog", None));
        // Readable but not searchable is not enough.
        std::os::unix::fs::chown(&home, Some(4242), None).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o744)).unwrap();
        why_not(t.find(&["/home/bob/bin/prog"]), "/home/bob/bin/prog");
        // And the root itself.
        std::fs::set_permissions(&t.root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let why = why_not(t.find(&["/bin/x"]), "/bin/x");
        assert_eq!(why, "cannot be reached: directory / is not searchable by alice");
    }

    /// A host-only executable the container must never see.
    struct Decoy {
        dir: PathBuf,
    }

    impl Decoy {
        fn new() -> Decoy {
            let n = TREES.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("cagepipe-inroot-decoy-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("real"), ELF).unwrap();
            std::fs::set_permissions(dir.join("real"), std::fs::Permissions::from_mode(0o755)).unwrap();
            Decoy { dir }
        }
        fn real(&self) -> String {
            self.dir.join("real").to_str().unwrap().to_string()
        }
    }

    impl Drop for Decoy {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn absolute_links_start_at_the_container_root() {
        let t = Tree::new();
        let decoy = Decoy::new();
        assert!(Path::new(&decoy.real()).is_file(), "the decoy exists on the host");
        t.link("/usr/bin/escape", &decoy.real());
        assert_eq!(t.find(&["/usr/bin/escape"]), Lookup::NotFound, "the host's file is not the container's");
        t.file(&decoy.real(), ELF, 0o755);
        let inside = decoy.real();
        assert_eq!(t.find(&["/usr/bin/escape"]), executable(&inside, None), "the container's own file at that path");

        t.file("/bin/real", ELF, 0o755);
        t.link("/usr/bin/cmd", "/bin/real");
        assert_eq!(t.find(&["/usr/bin/cmd"]), executable("/bin/real", None));
        // Links to directories, absolute and relative, in the middle.
        t.link("/opt/tools", "/bin");
        t.link("/opt/here", "../bin/");
        assert_eq!(t.find(&["/opt/tools/real", "/x"]), executable("/bin/real", None));
        assert_eq!(t.find(&["/opt/here/real"]), executable("/bin/real", None));
        t.link("/opt/top", "/");
        assert_eq!(t.find(&["/opt/top/bin/real"]), executable("/bin/real", None));
        // Relative candidates are taken from the root.
        assert_eq!(t.find(&["bin/real"]), executable("/bin/real", None));
    }

    #[test]
    fn dot_dot_never_climbs_above_the_root() {
        let t = Tree::new();
        let decoy = Decoy::new();
        let up = "../".repeat(20);
        t.link("/usr/bin/up", &format!("{up}{}", decoy.real().trim_start_matches('/')));
        assert_eq!(t.find(&["/usr/bin/up"]), Lookup::NotFound);
        let via_candidate = format!("/{up}{}", decoy.real().trim_start_matches('/'));
        assert_eq!(t.find(&[&via_candidate]), Lookup::NotFound);
        t.file("/etc/x", ELF, 0o755);
        t.link("/usr/bin/etc", "../../../../etc/x");
        assert_eq!(t.find(&["/usr/bin/etc"]), executable("/etc/x", None));
        assert_eq!(t.find(&["/../../../../etc/x"]), executable("/etc/x", None));
        assert_eq!(t.find(&["/usr/./bin/../../etc/./x"]), executable("/etc/x", None));
        // ".." after a link to a directory goes to the link target's parent.
        t.dir("/srv/deep/er", 0o755);
        t.link("/usr/deep", "/srv/deep/er");
        assert_eq!(t.find(&["/usr/deep/../../../etc/x"]), executable("/etc/x", None));
    }

    #[test]
    fn link_loops_end_at_forty_links() {
        let t = Tree::new();
        t.link("/bin/a", "b");
        t.link("/bin/b", "/bin/a");
        t.link("/bin/self", "self");
        for loop_name in ["/bin/a", "/bin/self"] {
            let why = why_not(t.find(&[loop_name]), loop_name);
            assert_eq!(why, "cannot be reached: more than 40 symbolic links (a loop?)");
        }
        t.file("/bin/real", ELF, 0o755);
        t.link("/bin/l40", "real");
        for i in (0..40).rev() {
            t.link(&format!("/bin/l{i}"), &format!("l{}", i + 1));
        }
        assert_eq!(t.find(&["/bin/l1"]), executable("/bin/real", None), "40 links are allowed");
        why_not(t.find(&["/bin/l0"]), "/bin/l0");
        // A loop is refused, not decisive: a later candidate runs.
        assert_eq!(t.find(&["/bin/a", "/bin/real"]), executable("/bin/real", None));
        t.link("/bin/dangling", "/nowhere");
        assert_eq!(t.find(&["/bin/dangling"]), Lookup::NotFound);
    }

    /// The chain of the issue: 40 links, each ~4 KiB of "a/../", so that
    /// one walk costs some 80,000 lookups within the kernel's own limits.
    fn costly_chain(t: &Tree) {
        t.dir("/x/a", 0o755);
        t.file("/x/real", ELF, 0o755);
        let padding = "a/../".repeat(800);
        t.link("/x/l40", &format!("{padding}real"));
        for i in (0..40).rev() {
            t.link(&format!("/x/l{i}"), &format!("{padding}l{}", i + 1));
        }
    }

    #[test]
    fn one_walk_costs_at_most_its_share_of_lookups() {
        let t = Tree::new();
        costly_chain(&t);
        let started = std::time::Instant::now();
        let found = t.find(&["/x/l1"]);
        assert!(matches!(&found, Lookup::Unchecked { why, .. } if why.contains("more than 1024 lookups")), "{found:?}");
        assert!(started.elapsed() < std::time::Duration::from_millis(50), "{:?}", started.elapsed());
        // A short chain stays judged.
        t.link("/x/short", "a/../real");
        assert_eq!(t.find(&["/x/short"]), executable("/x/real", None));
    }

    #[test]
    fn an_accounts_walks_share_one_budget() {
        let t = Tree::new();
        costly_chain(&t);
        let budget = Budget::new(3000, ACCOUNT_LINK_BYTES);
        let root = t.open();
        let candidates = [b"/x/l39".to_vec()];
        let mut checked = 0;
        while !budget.exhausted() {
            let found = find_command_within(root.as_fd(), &candidates, &alice(), PATH, &budget);
            if !matches!(found, Lookup::Unchecked { .. }) {
                checked += 1;
            }
            assert!(checked < 10, "the budget never ran out");
        }
        let found = find_command_within(root.as_fd(), &[b"/x/real".to_vec()], &alice(), PATH, &budget);
        assert!(
            matches!(&found, Lookup::Unchecked { why, .. } if why.contains("all of the 100000 lookups")),
            "{found:?}"
        );
        assert!(budget.cuts() > 0);
        // Bytes of link text count too.
        let slashes = "/".repeat(4000);
        t.link("/y/s3", "/x/real");
        for i in (0..3).rev() {
            t.link(&format!("/y/s{i}"), &format!("{slashes}y/s{}", i + 1));
        }
        let budget = Budget::new(ACCOUNT_STEPS, 10_000);
        let found = find_command_within(root.as_fd(), &[b"/y/s0".to_vec()], &alice(), PATH, &budget);
        assert!(matches!(&found, Lookup::Unchecked { why, .. } if why.contains("MiB of link text")), "{found:?}");
    }

    #[test]
    fn a_fifo_does_not_block_and_is_not_executable() {
        let t = Tree::new();
        t.dir("/usr/bin", 0o755);
        nix::unistd::mkfifo(&t.at("/usr/bin/fifo"), Mode::from_bits_truncate(0o777)).unwrap();
        t.link("/usr/bin/to-fifo", "fifo");
        let root = t.open();
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let candidates = vec![b"/usr/bin/to-fifo".to_vec()];
            let _ = send.send(find_command(root.as_fd(), &candidates, &alice(), PATH));
        });
        let lookup = receive.recv_timeout(std::time::Duration::from_secs(10)).expect("the lookup returns");
        assert_eq!(why_not(lookup, "/usr/bin/fifo"), "is a named pipe (FIFO), not a program");
        // Nor does a device (opening one could have effects).
        if root_or_skip("a_fifo_does_not_block_and_is_not_executable (device part)", "create a device node") {
            let null = nix::sys::stat::makedev(1, 3);
            nix::sys::stat::mknod(&t.at("/usr/bin/dev"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o777), null)
                .unwrap();
            assert_eq!(why_not(t.find(&["/usr/bin/dev"]), "/usr/bin/dev"), "is a device, not a program");
        }
    }

    #[test]
    fn a_script_needs_its_interpreter() {
        let t = Tree::new();
        t.file("/home/alice/bin/ticket.php", b"#!/usr/bin/php\n<?php echo 1;\n", 0o755);
        let missing = Lookup::InterpreterMissing {
            path: "/home/alice/bin/ticket.php".into(),
            interpreter: "/usr/bin/php".into(),
        };
        assert_eq!(t.find(&["/home/alice/bin/ticket.php"]), missing);
        t.file("/usr/bin/php8.2", ELF, 0o644);
        t.link("/usr/bin/php", "/etc/alternatives/php");
        t.link("/etc/alternatives/php", "/usr/bin/php8.2");
        match t.find(&["/home/alice/bin/ticket.php"]) {
            Lookup::InterpreterNotExecutable { path, interpreter, why } => {
                assert_eq!(
                    (path.as_slice(), interpreter.as_slice()),
                    (&b"/home/alice/bin/ticket.php"[..], &b"/usr/bin/php"[..])
                );
                assert!(why.starts_with("is not executable by alice (mode 0644"), "{why}");
            }
            other => panic!("expected InterpreterNotExecutable, got {other:?}"),
        }
        std::fs::set_permissions(t.at("/usr/bin/php8.2"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            t.find(&["/home/alice/bin/ticket.php"]),
            executable("/home/alice/bin/ticket.php", Some("/usr/bin/php8.2"))
        );

        // execve fails on a missing interpreter (ENOENT): a later candidate runs.
        t.file("/bin/broken", b"#!/no/such/interpreter -x\n", 0o755);
        t.file("/bin/good", ELF, 0o755);
        assert_eq!(t.find(&["/bin/broken", "/bin/good"]), executable("/bin/good", None));
        assert_eq!(
            t.find(&["/bin/broken"]),
            Lookup::InterpreterMissing { path: "/bin/broken".into(), interpreter: "/no/such/interpreter".into() }
        );
        t.file("/bin/relative", b"#!php\n", 0o755);
        let relative = t.find(&["/bin/relative"]);
        assert_eq!(relative, Lookup::InterpreterMissing { path: "/bin/relative".into(), interpreter: "php".into() });
        assert!(relative.to_string().contains("not an absolute path"), "{relative}");
    }

    #[test]
    fn env_scripts_need_the_program_on_the_search_path() {
        let t = Tree::new();
        t.file("/srv/hook", b"#!/usr/bin/env php\n<?php\n", 0o755);
        let env_missing = Lookup::InterpreterMissing { path: "/srv/hook".into(), interpreter: "/usr/bin/env".into() };
        assert_eq!(t.find(&["/srv/hook"]), env_missing);
        t.file("/usr/bin/env", ELF, 0o755);
        let php_missing = Lookup::InterpreterMissing { path: "/srv/hook".into(), interpreter: "php".into() };
        assert_eq!(t.find(&["/srv/hook"]), php_missing);
        // A php outside the search path does not count.
        t.file("/opt/php/bin/php", ELF, 0o755);
        assert_eq!(t.find(&["/srv/hook"]), php_missing);
        t.file("/usr/local/bin/php", ELF, 0o600);
        assert!(
            matches!(t.find(&["/srv/hook"]), Lookup::InterpreterNotExecutable { ref interpreter, .. } if interpreter == b"/usr/local/bin/php")
        );
        t.file("/bin/php", ELF, 0o755);
        assert_eq!(t.find(&["/srv/hook"]), executable("/srv/hook", Some("/bin/php")), "execvp moves on after EACCES");
        // env has already run: its failure ends the search.
        t.file("/srv/other", b"#!/usr/bin/env ruby\n", 0o755);
        let ruby_missing = Lookup::InterpreterMissing { path: "/srv/other".into(), interpreter: "ruby".into() };
        assert_eq!(t.find(&["/srv/other", "/srv/hook"]), ruby_missing);
        // Linux passes "php -q" as one argument; env -S splits it.
        t.file("/srv/spaced", b"#!/usr/bin/env php -q\n", 0o755);
        let spaced = Lookup::InterpreterMissing { path: "/srv/spaced".into(), interpreter: "php -q".into() };
        assert_eq!(t.find(&["/srv/spaced"]), spaced);
        t.file("/srv/split", b"#!/usr/bin/env -S A=1 php -q\n", 0o755);
        assert_eq!(t.find(&["/srv/split"]), executable("/srv/split", Some("/bin/php")));
    }

    #[test]
    fn a_script_must_be_readable_and_start_right() {
        let t = Tree::new();
        t.file("/bin/sh", ELF, 0o755);
        t.file("/srv/secret", b"#!/bin/sh\necho hi\n", 0o711);
        let why = why_not(t.find(&["/srv/secret"]), "/srv/secret");
        assert!(why.starts_with("is not readable by alice, and only a compiled program runs"), "{why}");
        assert!(why.contains("(mode 0711"), "{why}");
        // Its #! line is not the account's to read: a missing interpreter
        // there is not named (root reads the head only to tell a program).
        t.file("/srv/hidden", b"#!/opt/secret-tool --flag\n", 0o711);
        let why = why_not(t.find(&["/srv/hidden"]), "/srv/hidden");
        assert!(!why.contains("secret-tool"), "{why}");
        assert!(why.starts_with("is not readable by alice"), "{why}");
        // The kernel starts it, the shell fails: the search ends there.
        t.file("/srv/open", b"#!/bin/sh\n", 0o755);
        why_not(t.find(&["/srv/secret", "/srv/open"]), "/srv/secret");
        // A program needs no read permission.
        t.file("/srv/program", ELF, 0o711);
        assert_eq!(t.find(&["/srv/program"]), executable("/srv/program", None));

        // Windows line ends: the kernel looks for "/bin/sh\r".
        t.file("/srv/crlf", b"#!/bin/sh\r\necho hi\r\n", 0o755);
        let crlf = t.find(&["/srv/crlf"]);
        assert_eq!(crlf, Lookup::InterpreterMissing { path: "/srv/crlf".into(), interpreter: b"/bin/sh\r".to_vec() });
        assert!(crlf.to_string().contains("/bin/sh\\x0d"), "{crlf}");

        t.file("/srv/page.php", b"<?php echo 1;\n", 0o755);
        assert!(why_not(t.find(&["/srv/page.php"]), "/srv/page.php").starts_with("is neither a compiled program"));
        t.file("/srv/empty", b"", 0o755);
        why_not(t.find(&["/srv/empty", "/srv/open"]), "/srv/empty");
        t.file("/srv/bang", b"#!\n", 0o755);
        assert_eq!(why_not(t.find(&["/srv/bang"]), "/srv/bang"), "has a #! line that names no interpreter");
        // ENOEXEC ends the search; the ENOENT of a bare "#!" does not.
        why_not(t.find(&["/srv/bang", "/srv/open"]), "/srv/bang");
        t.file("/srv/bare", b"#!", 0o755);
        assert_eq!(t.find(&["/srv/bare", "/bin/sh"]), executable("/bin/sh", None));
        assert_eq!(why_not(t.find(&["/srv/bare"]), "/srv/bare"), "has a #! line that names no interpreter");
    }

    #[test]
    fn the_shebang_line_is_read_as_the_kernel_reads_it() {
        let script = |interpreter: &str, argument: Option<&str>| Header::Script {
            interpreter: interpreter.into(),
            argument: argument.map(Into::into),
        };
        assert_eq!(parse_header(b"#!/bin/sh\n"), script("/bin/sh", None));
        assert_eq!(parse_header(b"#!/bin/sh"), script("/bin/sh", None));
        assert_eq!(parse_header(b"#! \t/bin/sh  -e -u \t\nrest"), script("/bin/sh", Some("-e -u")));
        assert_eq!(parse_header(b"#!/bin/sh\r\n"), script("/bin/sh\r", None));
        assert_eq!(parse_header(b"#!/bin/sh\0junk\n"), script("/bin/sh", None));
        assert_eq!(parse_header(b"#!/usr/bin/env php -q\n"), script("/usr/bin/env", Some("php -q")));
        assert_eq!(parse_header(b"#!   \n"), Header::BadScript("has a #! line that names no interpreter"));
        assert_eq!(parse_header(b"#!\n"), Header::BadScript("has a #! line that names no interpreter"));
        // Without a newline the NUL padding ends the name before it starts:
        // the kernel then looks for "" (ENOENT).
        assert_eq!(parse_header(b"#!"), script("", None));
        assert_eq!(parse_header(ELF), Header::Program);
        assert_eq!(parse_header(b""), Header::Unknown);
        assert_eq!(parse_header(b"#"), Header::Unknown);
        // No newline in the first 256 bytes: a name running to the end may
        // have been cut.
        let long = [b"#!/".as_slice(), &[b'a'; 300]].concat();
        assert!(matches!(parse_header(&long), Header::BadScript(_)));
        let long_argument = [b"#!/bin/sh ".as_slice(), &[b'a'; 300]].concat();
        let Header::Script { interpreter, argument } = parse_header(&long_argument) else { panic!() };
        assert_eq!(interpreter, b"/bin/sh");
        assert_eq!(argument.unwrap().len(), 255 - 10, "the argument is cut at the 255th byte");
        assert_eq!(env_program(b"php"), Some(b"php".to_vec()));
        assert_eq!(env_program(b"-S php -q"), Some(b"php".to_vec()));
        assert_eq!(env_program(b"-i"), None);
        assert_eq!(env_program(b"A=1"), None);
    }

    #[test]
    fn a_noexec_mount_is_reported() {
        if !root_or_skip("a_noexec_mount_is_reported", "mount a tmpfs") {
            return;
        }
        let mut t = Tree::new();
        let mnt = t.dir("/mnt", 0o755);
        use nix::mount::MsFlags;
        let flags = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if let Err(e) = nix::mount::mount(Some("tmpfs"), &mnt, Some("tmpfs"), flags, Some("size=64k,mode=0755")) {
            eprintln!("SKIP a_noexec_mount_is_reported: mounting a tmpfs failed: {}", e.desc());
            return;
        }
        t.mounts.push(mnt);
        t.file("/mnt/prog", ELF, 0o755);
        let why = why_not(t.find(&["/mnt/prog"]), "/mnt/prog");
        assert_eq!(why, "is on a filesystem mounted noexec");
        t.file("/bin/prog", ELF, 0o755);
        assert_eq!(t.find(&["/mnt/prog", "/bin/prog"]), executable("/bin/prog", None));
        t.file("/mnt/php", ELF, 0o755);
        t.file("/bin/script", b"#!/mnt/php\n", 0o755);
        assert!(matches!(
            t.find(&["/bin/script"]),
            Lookup::InterpreterNotExecutable { ref why, .. } if why == "is on a filesystem mounted noexec"
        ));
        // Only the file's own mount counts, not those of the directories.
        t.link("/mnt/link", "/bin/prog");
        assert_eq!(t.find(&["/mnt/link"]), executable("/bin/prog", None));
    }

    #[test]
    fn protected_symlinks_are_not_followed_for_others() {
        if !root_or_skip("protected_symlinks_are_not_followed_for_others", "chown a symbolic link") {
            return;
        }
        let t = Tree::new();
        t.file("/bin/prog", ELF, 0o755);
        t.dir("/tmp", 0o1777);
        let link = t.link("/tmp/prog", "/bin/prog");
        std::os::unix::fs::lchown(&link, Some(4242), Some(4242)).unwrap();
        let root = t.open();
        let viewer = alice();
        let budget = Budget::per_account();
        let walker = Walker { root: root.as_fd(), viewer: &viewer, protected_symlinks: true, budget: &budget };
        let why = why_not(walker.find(&[b"/tmp/prog".to_vec()], PATH), "/tmp/prog");
        assert!(why.contains("(fs.protected_symlinks)"), "{why}");
        std::os::unix::fs::lchown(&link, Some(1001), None).unwrap();
        assert_eq!(walker.find(&[b"/tmp/prog".to_vec()], PATH), executable("/bin/prog", None));
        let unprotected = Walker { protected_symlinks: false, ..walker };
        std::os::unix::fs::lchown(&link, Some(4242), None).unwrap();
        assert_eq!(unprotected.find(&[b"/tmp/prog".to_vec()], PATH), executable("/bin/prog", None));
    }
}
