//! Finding the user's running container and pinning it: every /proc read
//! that decides anything happens here, on the host's /proc, before anything
//! is entered; and it is tied to one process so that the process verified is
//! the process entered.
#![forbid(unsafe_code)]

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, stat, Mode};
use nix::time::{clock_gettime, ClockId};

use crate::config::account::Account;
use crate::deliver::cgroup::{self, CgroupPlan};
use crate::config::{Config, Missing};
use crate::error::{Error, Result};
use crate::deliver::namespace::{ForeignNs, ENTER_ORDER};
use crate::deliver::privileges::{self, Credentials, CAP_SYS_PTRACE};
use crate::parse::procfs::{self, IdMapRange, PidfileError};
use crate::platform::secure_file::{self, Untrusted};
use crate::platform::sys;

/// A pidfile written later than this after its process started is still
/// believed: file timestamps come from a coarse clock that may lag by a tick.
const START_SLACK_NS: i128 = 50_000_000;

/// The container's user namespace id maps, read from the host.
#[derive(Debug, Clone)]
pub(crate) struct IdMaps {
    pub(crate) uid_map: Vec<IdMapRange>,
    pub(crate) gid_map: Vec<IdMapRange>,
    pub(crate) setgroups_allowed: bool,
}

/// A running container, pinned.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) pid: i32,
    /// Where the reference came from, for messages: "pidfile /run/...".
    pub(crate) source: String,
    /// Seconds since the epoch when the process started.
    pub(crate) started_epoch: i64,
    pub(crate) pidfd: Option<OwnedFd>,
    /// Kept open so that the process cannot be swapped under us.
    pub(crate) proc_dir: OwnedFd,
    /// The container's root directory (/proc/PID/root), for chroot.
    pub(crate) root: OwnedFd,
    pub(crate) foreign: Vec<ForeignNs>,
    pub(crate) cgroups: CgroupPlan,
    pub(crate) id_maps: Option<IdMaps>,
    /// Kernel features not used, and why.
    pub(crate) fallbacks: Vec<String>,
}

/// Find and pin the container of `account`.
pub(crate) fn resolve(config: &Config, account: &Account) -> Result<Target> {
    let not_running = |reason: String| Error::NotRunning {
        user: account.name.clone(),
        reason,
        refuse: config.missing == Missing::Refuse,
    };
    let path = config.backend.pidfile_path(&account.name, account.uid);
    let pidfile_err = |problem: String| Error::Pidfile { path: path.clone(), problem };
    let file = match secure_file::read_root_owned(&path, 64) {
        Ok(f) => f,
        Err(Untrusted::Missing(_)) => return Err(not_running(format!("no pidfile {}", path.display()))),
        Err(Untrusted::Unsafe { path: p, why }) => {
            return Err(pidfile_err(format!(
                "cannot be trusted: {} {why}; pidfiles and their directories must be owned by root and not writable by others",
                p.display()
            )))
        }
        Err(Untrusted::Io { path: p, errno }) => return Err(pidfile_err(format!("{}: {}", p.display(), errno.desc()))),
    };
    let pid = procfs::parse_pidfile(&file.contents).map_err(|e| match e {
        PidfileError::Empty => pidfile_err("is empty (is the container still starting?)".into()),
        other => pidfile_err(other.to_string()),
    })?;
    let written_ns = i128::from(file.stat.st_mtime) * 1_000_000_000 + i128::from(file.stat.st_mtime_nsec);
    let source = format!("pidfile {}", path.display());
    pin(pid, written_ns, source, config, &not_running)
}

fn read_at(dir: &OwnedFd, name: &str, max: usize) -> std::result::Result<Vec<u8>, Errno> {
    let fd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(max as u64)
        .read_to_end(&mut buf)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(buf)
}

fn now_ns(clock: ClockId) -> Result<i128> {
    let t = clock_gettime(clock).map_err(|e| Error::io("reading the clock", e.into()))?;
    Ok(i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
}

/// Open the process behind `pid` and everything needed from its /proc
/// entry, then re-check that it is still the same, live process.
fn pin(
    pid: i32,
    written_ns: i128,
    source: String,
    config: &Config,
    not_running: &dyn Fn(String) -> Error,
) -> Result<Target> {
    let target_err = |problem: String| Error::Target { pid, problem };
    let mut fallbacks = Vec::new();

    // A pidfd first: while it reports the process alive, the number cannot
    // have been reused, so /proc/PID opened after it is the same process.
    let pidfd = if config.features.pidfd {
        match sys::pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(not_running(format!("process {pid} from {source} does not exist")))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                fallbacks.push("pidfd_open: not in this kernel; /proc/PID/ns files instead".to_string());
                None
            }
            Err(e) => return Err(target_err(format!("pidfd_open: {e}"))),
        }
    } else {
        fallbacks.push("pidfd: disabled in the configuration; /proc/PID/ns files instead".to_string());
        None
    };
    let proc_dir = match nix::fcntl::open(
        Path::new("/proc").join(pid.to_string()).as_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(not_running(format!("process {pid} from {source} does not exist"))),
        Err(e) => return Err(target_err(format!("opening /proc/{pid}: {}", e.desc()))),
    };
    let first = read_stat(&proc_dir, pid, not_running)?;

    // The pidfile must have been written after the process started;
    // otherwise the number now belongs to some later process.
    let boot_offset = now_ns(ClockId::CLOCK_REALTIME)? - now_ns(ClockId::CLOCK_BOOTTIME)?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as i128;
    let started_ns = boot_offset + i128::from(first.start_ticks) * 1_000_000_000 / hz;
    if started_ns > written_ns + START_SLACK_NS {
        return Err(not_running(format!(
            "{source} is stale: process {pid} started {:.3} s after the pidfile was written",
            (started_ns - written_ns) as f64 / 1e9
        )));
    }

    // Another user's /proc/PID/ns/* and /proc/PID/root need CAP_SYS_PTRACE
    // (ptrace read access); nothing else here needs a capability.
    let (foreign, root) = privileges::with_caps(&[CAP_SYS_PTRACE], || {
        // Namespaces: compare with ours, keep the differing ones open.
        let self_ns = Path::new("/proc/self/ns");
        let mut foreign = Vec::new();
        for kind in ENTER_ORDER {
            let ours = match nix::sys::stat::stat(&self_ns.join(kind.name)) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue, // the kernel has no such namespace
                Err(e) => return Err(Error::io(format!("reading our {} namespace", kind.name), e.into())),
            };
            let file = openat(
                &proc_dir,
                format!("ns/{}", kind.name).as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| {
                gone_or(e, pid, not_running, |e| target_err(format!("opening ns/{}: {}", kind.name, e.desc())))
            })?;
            let theirs = fstat(&file).map_err(|e| target_err(format!("ns/{}: {}", kind.name, e.desc())))?;
            if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino) {
                foreign.push(ForeignNs { kind, inode: theirs.st_ino, file });
            }
        }
        let root = openat(&proc_dir, "root", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| gone_or(e, pid, not_running, |e| target_err(format!("opening root: {}", e.desc()))))?;

        // Not a container: it shares our mount namespace, or the host's (that
        // of pid 1, for a cagepipe started in a private one, e.g. by a
        // service manager). Where pid 1's namespaces cannot be read (some
        // sandboxes hide them even from root), a target whose root directory
        // is ours is not one either: the command would see our files. Any
        // doubt counts as the host.
        let dev_ino = |st: nix::sys::stat::FileStat| (st.st_dev, st.st_ino);
        let shares_host = match (foreign.iter().find(|ns| ns.kind.name == "mnt"), stat("/proc/1/ns/mnt")) {
            (None, _) => true,
            (Some(mnt), Ok(host)) => fstat(&mnt.file).map(dev_ino) == Ok(dev_ino(host)),
            (Some(_), Err(_)) => match (fstat(&root), stat("/")) {
                (Ok(theirs), Ok(ours)) => dev_ino(theirs) == dev_ino(ours),
                _ => true,
            },
        };
        if shares_host {
            return Err(not_running(format!(
                "process {pid} from {source} shares the host's mount namespace or root directory, or cagepipe's own, so it is not a container (or cagepipe already runs inside it)"
            )));
        }
        Ok((foreign, root))
    })?;

    let cgroup_text = read_at(&proc_dir, "cgroup", 64 * 1024)
        .map_err(|e| gone_or(e, pid, not_running, |e| target_err(format!("reading cgroup: {}", e.desc()))))?;
    let entries = procfs::parse_cgroup(&cgroup_text).map_err(|e| target_err(e.to_string()))?;
    let mountinfo = std::fs::read("/proc/self/mountinfo").map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
    let mounts =
        procfs::parse_mountinfo(&mountinfo).map_err(|e| Error::io("/proc/self/mountinfo", std::io::Error::other(e)))?;
    let cgroups = cgroup::plan(&entries, &mounts);

    let id_maps = if let Some(userns) = foreign.iter().find(|ns| ns.kind.name == "user") {
        // A user namespace that someone other than root created is that
        // user's own sandbox, not a container a root-run manager started:
        // its owner could have put the host's pid and network namespaces or
        // a mount of the host's / in it, so entering it confines nothing.
        // Nor can the pidfile vouch for it: when such a process takes over
        // the number of a container that died just after its pidfile was
        // written, the start times are too coarse to tell.
        let owner = sys::ns_owner_uid(userns.file.as_fd()).map_err(|e| target_err(format!("ns/user: owner: {e}")))?;
        if owner != 0 {
            return Err(not_running(format!(
                "process {pid} from {source} is in a user namespace that uid {owner} created, not root, so it is not a container"
            )));
        }
        let read_map = |name: &str| -> Result<Vec<IdMapRange>> {
            let text = read_at(&proc_dir, name, 16 * 1024)
                .map_err(|e| gone_or(e, pid, not_running, |e| target_err(format!("reading {name}: {}", e.desc()))))?;
            procfs::parse_id_map(&text).map_err(|e| target_err(e.to_string()))
        };
        let setgroups = read_at(&proc_dir, "setgroups", 64).unwrap_or_default();
        Some(IdMaps {
            uid_map: read_map("uid_map")?,
            gid_map: read_map("gid_map")?,
            setgroups_allowed: setgroups.trim_ascii() != b"deny",
        })
    } else {
        None
    };

    // Re-check on the handles we will use: same process, still alive.
    let again = read_stat(&proc_dir, pid, not_running)?;
    if again.start_ticks != first.start_ticks {
        return Err(not_running(format!("process {pid} changed while it was being opened")));
    }
    if let Some(fd) = &pidfd {
        if let Err(e) = sys::pidfd_probe(fd.as_fd()) {
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(not_running(format!("process {pid} exited while it was being opened")));
            }
        }
    }
    let started_epoch = ((boot_offset + i128::from(first.start_ticks) * 1_000_000_000 / hz) / 1_000_000_000) as i64;
    Ok(Target { pid, source, started_epoch, pidfd, proc_dir, root, foreign, cgroups, id_maps, fallbacks })
}

/// ESRCH/ENOENT under /proc/PID mean the process went away.
fn gone_or(e: Errno, pid: i32, not_running: &dyn Fn(String) -> Error, other: impl FnOnce(Errno) -> Error) -> Error {
    match e {
        Errno::ESRCH | Errno::ENOENT => not_running(format!("process {pid} exited")),
        e => other(e),
    }
}

fn read_stat(proc_dir: &OwnedFd, pid: i32, not_running: &dyn Fn(String) -> Error) -> Result<procfs::Stat> {
    let text = read_at(proc_dir, "stat", 4096).map_err(|e| {
        gone_or(e, pid, not_running, |e| Error::Target { pid, problem: format!("reading stat: {}", e.desc()) })
    })?;
    let stat = procfs::parse_stat(&text).map_err(|e| Error::Target { pid, problem: e.to_string() })?;
    if stat.pid != pid {
        return Err(Error::Target { pid, problem: format!("/proc/{pid}/stat describes process {}", stat.pid) });
    }
    match stat.state {
        b'Z' | b'X' | b'x' => Err(not_running(format!("process {pid} is a zombie"))),
        _ => Ok(stat),
    }
}

/// PF_EXITING among the flags of /proc/PID/stat (include/linux/sched.h).
const PF_EXITING: u32 = 0x4;

/// Whether the pinned process is exiting, a zombie, or gone; for a
/// container's init: the container is stopping. Read through the /proc/PID
/// directory opened on the host, which works from inside the container too.
pub(crate) fn is_ending(proc_dir: &OwnedFd) -> bool {
    match read_at(proc_dir, "stat", 4096) {
        Err(e) => matches!(e, Errno::ESRCH | Errno::ENOENT),
        Ok(text) => procfs::parse_stat(&text)
            .is_ok_and(|st| st.flags & PF_EXITING != 0 || matches!(st.state, b'Z' | b'X' | b'x')),
    }
}

/// The command's identity where it runs: the account's ids, translated
/// through the container's user namespace maps when it has one.
pub(crate) fn credentials(account: &Account, target: &Target) -> Result<Credentials> {
    let Some(maps) = &target.id_maps else {
        return Ok(Credentials { uid: account.uid, gid: account.gid, groups: account.groups.clone() });
    };
    let unmapped = |what: &str, id: u32| Error::Target {
        pid: target.pid,
        problem: format!("{what} {id} of user {} is not mapped in the container's user namespace", account.name),
    };
    let uid = procfs::map_outside_to_inside(&maps.uid_map, account.uid).ok_or_else(|| unmapped("uid", account.uid))?;
    let gid = procfs::map_outside_to_inside(&maps.gid_map, account.gid).ok_or_else(|| unmapped("gid", account.gid))?;
    let mut groups = Vec::new();
    for g in &account.groups {
        groups.push(procfs::map_outside_to_inside(&maps.gid_map, *g).ok_or_else(|| unmapped("group", *g))?);
    }
    groups.sort_unstable();
    groups.dedup();
    if !maps.setgroups_allowed {
        return Err(Error::Target {
            pid: target.pid,
            problem: "the container's user namespace denies setgroups, so the user's groups cannot be set".into(),
        });
    }
    Ok(Credentials { uid, gid, groups })
}

/// The pidfile path of an account (for messages and `check`).
pub(crate) fn pidfile_of(config: &Config, account: &Account) -> PathBuf {
    config.backend.pidfile_path(&account.name, account.uid)
}
