//! The kernel as the delivery pipeline sees it: the operations it performs,
//! in one narrow trait, so that a unit test can run the whole pipeline
//! against a recording double (`platform::recording`) and assert the exact
//! sequence. [`Linux`] is the real implementation.
//!
//! Each method is one kernel operation (or a fixed pair, like `fchdir` +
//! `chroot(".")`); no method decides anything.

use std::convert::Infallible;
use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, stat, Mode};

use super::secure_file::{self, TrustedDir, TrustedFile, Untrusted};
use super::sys::{self, CapSets, ExecWords};

/// A file's identity: (device, inode).
pub(crate) type FileId = (u64, u64);

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited(i32),
    Signaled(i32),
}

/// Which file to open below a /proc/PID directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcEntry<'a> {
    /// `ns/<kind>`, to enter or compare.
    Namespace(&'a str),
    /// `root`, the process's root directory (an `O_PATH` directory).
    Root,
}

/// The clocks behind start times and file timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BootClock {
    /// Wall-clock time at boot, ns: CLOCK_REALTIME − CLOCK_BOOTTIME now.
    pub(crate) offset_ns: i128,
    /// Clock ticks per second (start times in /proc are in ticks).
    pub(crate) ticks_per_s: i128,
    /// How far a file's timestamp may lag the moment it was written: the
    /// resolution of the coarse clock the kernel stamps files with, plus the
    /// time between the two clock reads behind `offset_ns`.
    pub(crate) slack_ns: i128,
}

/// What [`Kernel::probe_dir`] found a directory to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirProbe {
    /// Its file system's magic number (`statfs`'s `f_type`).
    pub(crate) magic: u64,
    pub(crate) inode: u64,
}

/// `f_type` of cgroup v2 (`CGROUP2_SUPER_MAGIC`, linux/magic.h).
pub(crate) const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// The initial cgroup namespace's inode (`PROC_CGROUP_INIT_INO`,
/// include/linux/proc_ns.h); others are numbered from 0xF0000000 up.
pub(crate) const INIT_CGROUP_NS_INODE: u64 = 0xEFFF_FFFB;

/// What the credential read-back after the drop sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) uids: [u32; 3],
    pub(crate) gids: [u32; 3],
    pub(crate) groups: Vec<u32>,
    pub(crate) caps: CapSets,
    pub(crate) ambient: u64,
    pub(crate) bounding: u64,
    pub(crate) no_new_privs: bool,
    pub(crate) dumpable: bool,
}

/// The operations of a delivery, in the order they usually happen.
pub(crate) trait Kernel {
    // ---- finding and pinning the container, on the host ----
    /// A root-owned file not writable by others, opened securely (pidfiles).
    fn read_trusted(&mut self, path: &Path, max: usize) -> Result<TrustedFile, Untrusted>;
    /// The same directory kept open with its entries, for reading many
    /// files below it with [`Kernel::read_trusted_in`].
    fn open_trusted_dir(&mut self, dir: &Path, max: usize) -> Result<TrustedDir, Untrusted>;
    /// A file below an open trusted directory (`rel`: plain names), each
    /// component opened relative to the one before and checked as
    /// `read_trusted` checks every component.
    fn read_trusted_in(&mut self, dir: &TrustedDir, rel: &Path, max: usize) -> Result<TrustedFile, Untrusted>;
    /// `pidfd_open(2)`.
    fn pidfd_open(&mut self, pid: i32) -> io::Result<OwnedFd>;
    /// Ok while the process has not exited: its pidfd polls readable once
    /// it has (a zombie too) and once it was reaped; ESRCH then.
    fn pidfd_alive(&mut self, pidfd: BorrowedFd<'_>) -> io::Result<()>;
    /// Open `/proc/PID` as a directory.
    fn open_proc(&mut self, pid: i32) -> Result<OwnedFd, Errno>;
    /// Read a file below an open /proc/PID directory, at most `max` bytes.
    fn read_proc(&mut self, dir: BorrowedFd<'_>, name: &str, max: usize) -> Result<Vec<u8>, Errno>;
    /// Open a namespace file or the root below /proc/PID, and its identity.
    fn open_proc_entry(&mut self, dir: BorrowedFd<'_>, entry: ProcEntry<'_>) -> Result<(OwnedFd, FileId), Errno>;
    /// The identity of a path of our own (`/proc/self/ns/mnt`, `/`).
    fn identity(&mut self, path: &Path) -> Result<FileId, Errno>;
    /// The identity of what `name` below an open /proc/PID directory
    /// leads to (`stat`, following the link), without opening it.
    fn proc_identity(&mut self, dir: BorrowedFd<'_>, name: &str) -> Result<FileId, Errno>;
    /// The uid that created a user namespace (`NS_GET_OWNER_UID`).
    fn ns_owner_uid(&mut self, ns: BorrowedFd<'_>) -> io::Result<u32>;
    /// Our mount table, `/proc/self/mountinfo`.
    fn mountinfo(&mut self) -> io::Result<Vec<u8>>;
    /// A host directory, opened as trusted directories are (from `/`, every
    /// component root-owned, not writable by others, no symbolic link), and
    /// what it is: its file system and inode number.
    fn probe_dir(&mut self, dir: &Path) -> Result<DirProbe, Untrusted>;
    /// Our own cgroups, `/proc/self/cgroup` (through the host's /proc).
    fn own_cgroups(&mut self) -> io::Result<Vec<u8>>;
    /// How to compare a process's start time with a file's timestamp.
    fn boot_clock(&mut self) -> io::Result<BootClock>;

    // ---- capabilities, raised only around the call that needs them ----
    fn capget(&mut self) -> io::Result<CapSets>;
    fn capset(&mut self, sets: CapSets) -> io::Result<()>;

    // ---- entering, on the host side of the fork ----
    /// Open a cgroup for joining: a v1 `tasks` file for writing, or a v2
    /// directory (`O_PATH`).
    fn open_cgroup(&mut self, dir: &Path, v2: bool) -> io::Result<OwnedFd>;
    /// `setns(2)` on a namespace file or a pidfd.
    fn setns(&mut self, fd: BorrowedFd<'_>, flags: i32) -> io::Result<()>;
    /// `fchdir(root)` then `chroot(".")`.
    fn chroot(&mut self, root: BorrowedFd<'_>) -> io::Result<()>;
    /// A close-on-exec stream socket pair: (the parent's end, the child's).
    fn channel(&mut self) -> io::Result<(OwnedFd, OwnedFd)>;
    /// Start the command's process and run `child` in it (it ends in exec
    /// or exit); returns its pid. Born in the v2 directory `into_cgroup`
    /// (`clone3(CLONE_INTO_CGROUP)`); with `share_memory`, on our memory
    /// until its exec, while we sleep (`clone3(CLONE_VM|CLONE_VFORK)`; a
    /// plain fork where the kernel has no clone3 and no cgroup is asked
    /// for). See `sys::spawn`.
    fn spawn(
        &mut self,
        into_cgroup: Option<BorrowedFd<'_>>,
        share_memory: bool,
        child: &mut dyn FnMut(&mut Self) -> Infallible,
    ) -> io::Result<i32>;

    // ---- the child, before exec ----
    /// Write "0" to a v1 `tasks` file, or to `cgroup.procs` below a v2
    /// directory: move the calling process there.
    fn join_cgroup(&mut self, fd: BorrowedFd<'_>, v2: bool) -> io::Result<()>;
    /// Whether we have a controlling terminal (`/dev/tty` opens); when
    /// that cannot be told, as if we had.
    fn has_controlling_terminal(&mut self) -> bool;
    /// `setsid()`: a session, and so no controlling terminal, of our own.
    fn new_session(&mut self) -> io::Result<()>;
    /// Every signal to SIG_DFL, the mask emptied.
    fn reset_signals(&mut self) -> io::Result<()>;
    fn setgroups(&mut self, groups: &[u32]) -> io::Result<()>;
    fn setresgid(&mut self, gid: u32) -> io::Result<()>;
    fn setresuid(&mut self, uid: u32) -> io::Result<()>;
    fn clear_ambient(&mut self) -> io::Result<()>;
    /// Drop every capability from the bounding set.
    fn drop_bounding(&mut self) -> io::Result<()>;
    fn set_non_dumpable(&mut self) -> io::Result<()>;
    fn set_no_new_privs(&mut self) -> io::Result<()>;
    /// Read back everything the drop set (in the command's process before
    /// exec: the descriptor it reads through is left to the descriptor walk).
    fn observe(&mut self) -> io::Result<Observed>;
    /// `PR_SET_PDEATHSIG` SIGKILL.
    fn set_parent_death_signal(&mut self) -> io::Result<()>;
    /// Whether the parent still holds its end of the channel (`ours`, the
    /// child's end).
    fn parent_alive(&mut self, ours: BorrowedFd<'_>) -> bool;
    fn chdir(&mut self, dir: &CStr) -> io::Result<()>;
    /// Apply the Landlock ruleset; the note for the audit line.
    fn restrict_self(&mut self, plan: &crate::deliver::sandbox::Plan) -> crate::error::Result<String>;
    /// `close_range(first, last)`.
    fn close_range(&mut self, first: u32, last: u32) -> io::Result<()>;
    /// `close(fd)`, for the walk on kernels without close_range.
    fn close(&mut self, fd: RawFd);
    /// `execve`; returns only on failure.
    fn execve(&mut self, path: &CStr, argv: &ExecWords, env: &ExecWords) -> io::Error;
    /// Write to the channel to the parent (best effort).
    fn write(&mut self, fd: BorrowedFd<'_>, bytes: &[u8]);
    /// `_exit(code)`.
    fn exit(&mut self, code: i32) -> !;

    // ---- the parent, supervising ----
    /// Read a pipe to its end, at most `max` bytes.
    fn read_to_end(&mut self, fd: OwnedFd, max: usize) -> Vec<u8>;
    /// `waitpid` until the child ends.
    fn wait(&mut self, pid: i32) -> io::Result<Ending>;
    /// Sleep a little (waiting for a stopping container to show it).
    fn pause(&mut self, ms: u64);
}

/// The running kernel.
#[derive(Default)]
pub(crate) struct Linux {
    /// Our capability sets as the last capget or successful capset left
    /// them: only this process changes them (it has one thread), except by
    /// entering a user namespace or changing ids, which forget them.
    caps: Option<CapSets>,
    /// Our mount table as first read: the cgroup backends and the pin
    /// both need it, and only entering a mount namespace or a root (which
    /// forget it) changes what it says for us.
    mountinfo: Option<Vec<u8>>,
    /// Directories probed, as the mount table: the cgroup backends and the
    /// pin both probe cgroup2's root.
    probed: Vec<(std::path::PathBuf, DirProbe)>,
    /// Our /proc/self/cgroup as first read: the cgroup backends (to tell
    /// whether any v1 hierarchy exists) and the pin both need it; entering
    /// a cgroup namespace, a fork and a cgroup join forget it.
    own_cgroups: Option<Vec<u8>>,
}

impl Linux {
    /// The running kernel, knowing our capability sets as start-up read
    /// them from /proc/self/status (the kernel's own report, before any
    /// capset): the first raise needs no capget.
    pub(crate) fn knowing_caps(caps: CapSets) -> Linux {
        Linux { caps: Some(caps), ..Linux::default() }
    }
}

/// Far more than any host's mount table.
const MOUNTINFO_MAX: usize = 64 << 20;

/// What clone3 answers on a kernel that lacks it or one of its flags, or
/// under a system-call filter that refuses it (seccomp profiles answer
/// ENOSYS or EPERM; a cgroup clone3 cannot enter answers EACCES, ENOENT or
/// EBUSY, and the write that replaces it names the cgroup).
pub(crate) fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EPERM))
}

fn errno_of(e: io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn dev_ino(st: nix::sys::stat::FileStat) -> FileId {
    (st.st_dev, st.st_ino)
}

impl Kernel for Linux {
    fn read_trusted(&mut self, path: &Path, max: usize) -> Result<TrustedFile, Untrusted> {
        secure_file::read_root_owned(path, max)
    }
    fn open_trusted_dir(&mut self, dir: &Path, max: usize) -> Result<TrustedDir, Untrusted> {
        secure_file::open_root_owned_dir(dir, max)
    }
    fn read_trusted_in(&mut self, dir: &TrustedDir, rel: &Path, max: usize) -> Result<TrustedFile, Untrusted> {
        secure_file::read_root_owned_in(dir, rel, max)
    }
    fn pidfd_open(&mut self, pid: i32) -> io::Result<OwnedFd> {
        sys::pidfd_open(pid)
    }
    fn pidfd_alive(&mut self, pidfd: BorrowedFd<'_>) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO)? {
            0 => Ok(()),
            _ => Err(io::Error::from_raw_os_error(libc::ESRCH)),
        }
    }
    fn open_proc(&mut self, pid: i32) -> Result<OwnedFd, Errno> {
        nix::fcntl::open(
            Path::new("/proc").join(pid.to_string()).as_path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    }
    fn read_proc(&mut self, dir: BorrowedFd<'_>, name: &str, max: usize) -> Result<Vec<u8>, Errno> {
        let fd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        let file = std::fs::File::from(fd);
        // The files of one record (stat, cgroup) come whole in one read;
        // the id maps are a record per line.
        let read =
            if name.ends_with("_map") { super::fs::read_small(file, max) } else { super::fs::read_rendered(file, max) };
        read.map_err(errno_of)
    }
    fn open_proc_entry(&mut self, dir: BorrowedFd<'_>, entry: ProcEntry<'_>) -> Result<(OwnedFd, FileId), Errno> {
        let fd = match entry {
            ProcEntry::Namespace(kind) => {
                openat(dir, format!("ns/{kind}").as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?
            }
            ProcEntry::Root => {
                openat(dir, "root", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?
            }
        };
        let id = dev_ino(fstat(&fd)?);
        Ok((fd, id))
    }
    fn identity(&mut self, path: &Path) -> Result<FileId, Errno> {
        stat(path).map(dev_ino)
    }
    fn proc_identity(&mut self, dir: BorrowedFd<'_>, name: &str) -> Result<FileId, Errno> {
        nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::empty()).map(dev_ino)
    }
    fn ns_owner_uid(&mut self, ns: BorrowedFd<'_>) -> io::Result<u32> {
        sys::ns_owner_uid(ns)
    }
    fn mountinfo(&mut self) -> io::Result<Vec<u8>> {
        if let Some(table) = &self.mountinfo {
            return Ok(table.clone());
        }
        let table = super::fs::read_small(std::fs::File::open("/proc/self/mountinfo")?, MOUNTINFO_MAX)?;
        self.mountinfo = Some(table.clone());
        Ok(table)
    }
    fn probe_dir(&mut self, dir: &Path) -> Result<DirProbe, Untrusted> {
        if let Some((_, probe)) = self.probed.iter().find(|(d, _)| d == dir) {
            return Ok(*probe);
        }
        let (magic, inode) = secure_file::probe_root_owned_dir(dir)?;
        self.probed.push((dir.to_path_buf(), DirProbe { magic, inode }));
        Ok(DirProbe { magic, inode })
    }
    fn own_cgroups(&mut self) -> io::Result<Vec<u8>> {
        if let Some(text) = &self.own_cgroups {
            return Ok(text.clone());
        }
        let text = super::process::read_own("cgroup", 64 * 1024)?;
        self.own_cgroups = Some(text.clone());
        Ok(text)
    }
    fn boot_clock(&mut self) -> io::Result<BootClock> {
        use nix::time::{clock_getres, clock_gettime, ClockId};
        let ns = |t: nix::sys::time::TimeSpec| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec());
        let before = ns(clock_gettime(ClockId::CLOCK_REALTIME)?);
        let boot = ns(clock_gettime(ClockId::CLOCK_BOOTTIME)?);
        let after = ns(clock_gettime(ClockId::CLOCK_REALTIME)?);
        let granularity = ns(clock_getres(ClockId::CLOCK_REALTIME_COARSE)?);
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1);
        Ok(BootClock {
            offset_ns: before - boot,
            ticks_per_s: i128::from(hz),
            slack_ns: granularity + (after - before),
        })
    }
    fn capget(&mut self) -> io::Result<CapSets> {
        if let Some(caps) = self.caps {
            return Ok(caps);
        }
        let caps = sys::capget()?;
        self.caps = Some(caps);
        Ok(caps)
    }
    fn capset(&mut self, sets: CapSets) -> io::Result<()> {
        let set = sys::capset(sets);
        self.caps = set.as_ref().ok().map(|()| sets);
        set
    }
    fn open_cgroup(&mut self, dir: &Path, v2: bool) -> io::Result<OwnedFd> {
        let opened = if v2 {
            nix::fcntl::open(
                dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
        } else {
            nix::fcntl::open(&dir.join("tasks"), OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty())
        };
        opened.map_err(io::Error::from)
    }
    fn setns(&mut self, fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
        // Entering a user namespace (alone or through a pidfd) replaces
        // the capability sets.
        if flags & libc::CLONE_NEWUSER != 0 {
            self.caps = None;
        }
        if flags == 0 || flags & libc::CLONE_NEWNS != 0 {
            self.mountinfo = None;
            self.probed.clear();
        }
        if flags == 0 || flags & libc::CLONE_NEWCGROUP != 0 {
            self.own_cgroups = None;
        }
        sys::setns(fd, flags)
    }
    fn chroot(&mut self, root: BorrowedFd<'_>) -> io::Result<()> {
        // What secure_file verified lies below the old root: a trusted
        // path must never be resolved there once inside.
        secure_file::forget_verified();
        self.mountinfo = None;
        self.probed.clear();
        nix::unistd::fchdir(root)?;
        nix::unistd::chroot(".").map_err(io::Error::from)
    }
    fn channel(&mut self) -> io::Result<(OwnedFd, OwnedFd)> {
        sys::stream_pair()
    }
    fn spawn(
        &mut self,
        into_cgroup: Option<BorrowedFd<'_>>,
        share_memory: bool,
        child: &mut dyn FnMut(&mut Self) -> Infallible,
    ) -> io::Result<i32> {
        self.own_cgroups = None;
        let mut run = || child(self);
        match sys::spawn(into_cgroup, share_memory, &mut run) {
            // No clone3 (or refused): fork, unless the caller asked for the
            // cgroup (it then joins by writing instead, and says so).
            Err(e) if into_cgroup.is_none() && share_memory && unsupported(&e) => sys::spawn(None, false, &mut run),
            other => other,
        }
    }
    fn join_cgroup(&mut self, fd: BorrowedFd<'_>, v2: bool) -> io::Result<()> {
        self.own_cgroups = None;
        if v2 {
            let flags = OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
            let procs = openat(fd, "cgroup.procs", flags, Mode::empty())?;
            nix::unistd::write(&procs, b"0").map(drop).map_err(io::Error::from)
        } else {
            nix::unistd::write(fd, b"0").map(drop).map_err(io::Error::from)
        }
    }
    fn has_controlling_terminal(&mut self) -> bool {
        // The host's /dev/tty (this runs before any namespace is entered):
        // it opens our controlling terminal, or fails with ENXIO without one.
        let flags = OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        !matches!(nix::fcntl::open("/dev/tty", flags, Mode::empty()), Err(Errno::ENXIO))
    }
    fn new_session(&mut self) -> io::Result<()> {
        nix::unistd::setsid().map(drop).map_err(io::Error::from)
    }
    fn reset_signals(&mut self) -> io::Result<()> {
        sys::reset_all_signals()
    }
    fn setgroups(&mut self, groups: &[u32]) -> io::Result<()> {
        self.caps = None;
        let gids: Vec<nix::unistd::Gid> = groups.iter().copied().map(nix::unistd::Gid::from_raw).collect();
        nix::unistd::setgroups(&gids).map_err(io::Error::from)
    }
    fn setresgid(&mut self, gid: u32) -> io::Result<()> {
        self.caps = None;
        let g = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(io::Error::from)
    }
    fn setresuid(&mut self, uid: u32) -> io::Result<()> {
        self.caps = None;
        let u = nix::unistd::Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(io::Error::from)
    }
    fn clear_ambient(&mut self) -> io::Result<()> {
        sys::cap_ambient_clear_all()
    }
    fn drop_bounding(&mut self) -> io::Result<()> {
        sys::capbset_drop_all()
    }
    fn set_non_dumpable(&mut self) -> io::Result<()> {
        nix::sys::prctl::set_dumpable(false).map_err(io::Error::from)
    }
    fn set_no_new_privs(&mut self) -> io::Result<()> {
        nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)
    }
    fn observe(&mut self) -> io::Result<Observed> {
        // One read of our own status through the host's /proc, opened at
        // start-up: inside the container, its /proc is the container's to
        // fake. The ids are shown as our (the container's) user namespace
        // sees them, as getresuid would return them.
        // Only the command's process asks, before its descriptor walk.
        let status = super::process::read_own_before_exec("status", 64 * 1024)?;
        let s = crate::parse::procfs::parse_status(&status).map_err(io::Error::other)?;
        let [ur, ue, us, _] = s.uid;
        let [gr, ge, gs, _] = s.gid;
        Ok(Observed {
            uids: [ur, ue, us],
            gids: [gr, ge, gs],
            groups: s.groups,
            caps: CapSets { effective: s.cap_eff, permitted: s.cap_prm, inheritable: s.cap_inh },
            // Kernels before 4.3 and 4.10 do not show these lines: ask.
            ambient: s.cap_amb.unwrap_or_else(sys::cap_ambient_read),
            bounding: s.cap_bnd,
            no_new_privs: match s.no_new_privs {
                Some(set) => set,
                None => nix::sys::prctl::get_no_new_privs()?,
            },
            dumpable: nix::sys::prctl::get_dumpable()?,
        })
    }
    fn set_parent_death_signal(&mut self) -> io::Result<()> {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)
    }
    fn parent_alive(&mut self, ours: BorrowedFd<'_>) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        // Readable (EOF) once the parent's end is closed: the parent never
        // writes, and it alone holds that end.
        let mut fds = [PollFd::new(ours, PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
    }
    fn chdir(&mut self, dir: &CStr) -> io::Result<()> {
        nix::unistd::chdir(dir).map_err(io::Error::from)
    }
    fn restrict_self(&mut self, plan: &crate::deliver::sandbox::Plan) -> crate::error::Result<String> {
        crate::deliver::sandbox::apply(plan)
    }
    fn close_range(&mut self, first: u32, last: u32) -> io::Result<()> {
        sys::close_range(first, last)
    }
    fn close(&mut self, fd: RawFd) {
        sys::close_fd_number(fd)
    }
    fn execve(&mut self, path: &CStr, argv: &ExecWords, env: &ExecWords) -> io::Error {
        sys::execve(path, argv, env)
    }
    fn write(&mut self, fd: BorrowedFd<'_>, bytes: &[u8]) {
        let _ = nix::unistd::write(fd, bytes);
    }
    fn exit(&mut self, code: i32) -> ! {
        sys::exit_now(code)
    }
    fn read_to_end(&mut self, fd: OwnedFd, max: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = std::fs::File::from(fd).take(max as u64).read_to_end(&mut buf);
        buf
    }
    fn wait(&mut self, pid: i32) -> io::Result<Ending> {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(nix::unistd::Pid::from_raw(pid), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(Ending::Exited(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Ending::Signaled(sig as i32)),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    fn pause(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// For the channel's raw number (kept open across the descriptor walk).
pub(crate) fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}
