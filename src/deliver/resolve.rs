//! Finding the user's running container and pinning it: every /proc read
//! that decides anything happens here, on the host's /proc, before anything
//! is entered; and it is tied to one process so that the process verified is
//! the process entered.
#![forbid(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::config::account::Account;
use crate::config::{Backend, Config, Missing};
use crate::deliver::cgroup::{self, CgroupPlan};
use crate::deliver::engine;
use crate::deliver::namespace::{ForeignNs, Ours, ENTER_ORDER};
use crate::deliver::privileges::{self, Credentials, CAP_SYS_PTRACE};
use crate::error::{Error, Result};
use crate::parse::procfs::{self, IdMapRange, PidfileError};
use crate::platform::kernel::{Kernel, ProcEntry};
use crate::platform::secure_file::Untrusted;
use crate::platform::Errno;

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
    /// What was read and each rule's verdict, in order, for `check`.
    pub(crate) evidence: Vec<String>,
}

/// Find and pin the container of `account`: each configured engine in
/// turn; the first that has a container for the account decides, and a
/// container found but failing a check is an error, never a reason to try
/// the next engine.
pub(crate) fn resolve(k: &mut impl Kernel, config: &Config, account: &Account) -> Result<Target> {
    let not_running = |reason: String| Error::NotRunning {
        user: account.name.clone(),
        reason,
        refuse: config.missing == Missing::Refuse,
    };
    let mut absent = Vec::new();
    for backend in &config.backends {
        let found = match backend {
            Backend::Pidfile { template } => {
                let path = PathBuf::from(template.expand(&account.name, account.uid));
                match read_pidfile(k, &path)? {
                    None => {
                        absent.push(format!("no pidfile {}", path.display()));
                        continue;
                    }
                    Some((pid, written_ns)) => engine::Found {
                        pid,
                        written_ns: Some(written_ns),
                        start_ticks: None,
                        source: format!("pidfile {}", path.display()),
                        evidence: Vec::new(),
                        cgroup: None,
                    },
                }
            }
            other => match engine::find(k, other, account, &not_running)? {
                engine::Lookup::Found(found) => found,
                engine::Lookup::Absent(why) => {
                    absent.push(why);
                    continue;
                }
            },
        };
        let mut target = pin(k, found.pid, found.written_ns, found.start_ticks, found.source, config, &not_running)?;
        // A cgroup's member, pinned: the cgroup read after the pidfd was
        // open must still be the one it was listed in.
        if let Some(dir) = &found.cgroup {
            if !target.cgroups.join.iter().chain(&target.cgroups.already_in).any(|d| d.dir.starts_with(dir)) {
                return Err(not_running(format!(
                    "process {} left {} while it was being opened",
                    target.pid,
                    dir.display()
                )));
            }
            target.evidence.push(format!(
                "cgroup re-read after pinning: process {} is still in {}",
                target.pid,
                dir.display()
            ));
        }
        let mut evidence = found.evidence;
        evidence.append(&mut target.evidence);
        target.evidence = evidence;
        return Ok(target);
    }
    Err(not_running(absent.join("; ")))
}

/// A root-owned pidfile: the pid and when it was written; `None`: there is
/// no such file.
fn read_pidfile(k: &mut impl Kernel, path: &Path) -> Result<Option<(i32, i128)>> {
    let pidfile_err = |problem: String| Error::Pidfile { path: path.to_path_buf(), problem };
    let file = match k.read_trusted(path, 64) {
        Ok(f) => f,
        Err(Untrusted::Missing(_)) => return Ok(None),
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
    Ok(Some((pid, file.written_ns)))
}

/// Open the process behind `pid` and everything needed from its /proc
/// entry, then re-check that it is still the same, live process.
fn pin(
    k: &mut impl Kernel,
    pid: i32,
    written_ns: Option<i128>,
    engine_start: Option<u64>,
    source: String,
    config: &Config,
    not_running: &dyn Fn(String) -> Error,
) -> Result<Target> {
    let target_err = |problem: String| Error::Target { pid, problem };
    let mut fallbacks = Vec::new();

    // A pidfd first: while it reports the process alive, the number cannot
    // have been reused, so /proc/PID opened after it is the same process.
    let pidfd = if config.features.pidfd {
        match k.pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(Errno::ESRCH as i32) => {
                return Err(not_running(format!("process {pid} from {source} does not exist")))
            }
            Err(e) if e.raw_os_error() == Some(Errno::ENOSYS as i32) => {
                fallbacks.push("pidfd_open: not in this kernel; /proc/PID/ns files instead".to_string());
                None
            }
            Err(e) => return Err(target_err(format!("pidfd_open: {e}"))),
        }
    } else {
        fallbacks.push("pidfd: disabled in the configuration; /proc/PID/ns files instead".to_string());
        None
    };
    let proc_dir = match k.open_proc(pid) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(not_running(format!("process {pid} from {source} does not exist"))),
        Err(e) => return Err(target_err(format!("opening /proc/{pid}: {}", e.desc()))),
    };
    let first = read_stat(k, &proc_dir, pid, not_running)?;

    // The reference must be from this boot (/run may be on disk), and
    // name this very process: the engine's recorded start time must be its
    // own exactly; else the reference must have been written after the
    // process started, or the number now belongs to some later process.
    // A start time in ticks is cut down to its tick, a file's timestamp to
    // the coarse clock's: a process that started before the write can look
    // later by at most the timestamp's lag (`slack_ns`), never by more.
    // What remains: a wall clock stepped back by D after the write (not a
    // slew) widens the window by D; see SECURITY.md.
    let clock = k.boot_clock().map_err(|e| Error::io("reading the clock", e))?;
    let boot_offset = clock.offset_ns;
    let started_ns = boot_offset + i128::from(first.start_ticks) * 1_000_000_000 / clock.ticks_per_s;
    let mut evidence = Vec::new();
    if let Some(written_ns) = written_ns.filter(|w| *w < boot_offset) {
        return Err(not_running(format!(
            "{source} is stale: it was last written {:.0} s before this boot",
            (boot_offset - written_ns) as f64 / 1e9
        )));
    }
    match (engine_start, written_ns) {
        (Some(recorded), _) if recorded != first.start_ticks => {
            return Err(not_running(format!(
                "{source}: process {pid} started at tick {}, the state says {recorded}: the container has exited",
                first.start_ticks
            )))
        }
        (Some(recorded), _) => evidence.push(format!("start time: tick {recorded}, as recorded: same process")),
        (None, Some(written_ns)) if started_ns > written_ns + clock.slack_ns => {
            return Err(not_running(format!(
                "{source} is stale: process {pid} started {:.3} s after the pidfile was written",
                (started_ns - written_ns) as f64 / 1e9
            )));
        }
        (None, Some(_)) => evidence.push(format!("start time: process {pid} started before the reference was written")),
        (None, None) => unreachable!("every engine gives a start time or a write time"),
    }

    // Another user's /proc/PID/ns/* and /proc/PID/root need CAP_SYS_PTRACE
    // (ptrace read access); nothing else here needs a capability.
    let (foreign, root) = privileges::with_caps(k, &[CAP_SYS_PTRACE], |k| {
        // Namespaces: keep open the ones to enter; compare with ours where
        // that decides something (`Ours`).
        let mut foreign = Vec::new();
        for kind in ENTER_ORDER {
            let ours = match kind.ours {
                Ours::NotCompared => None,
                Ours::Compared | Ours::ComparedFirst => match k.identity(&Path::new("/proc/self/ns").join(kind.name)) {
                    Ok(id) => Some(id),
                    Err(Errno::ENOENT) => continue, // the kernel has no such namespace
                    Err(e) => return Err(Error::io(format!("reading our {} namespace", kind.name), e.into())),
                },
            };
            if kind.ours == Ours::ComparedFirst {
                let entry = format!("ns/{}", kind.name);
                let theirs = k.proc_identity(proc_dir.as_fd(), &entry).map_err(|e| {
                    gone_or(e, pid, not_running, |e| target_err(format!("reading {entry}: {}", e.desc())))
                })?;
                if Some(theirs) == ours {
                    continue;
                }
            }
            let (file, theirs) = k.open_proc_entry(proc_dir.as_fd(), ProcEntry::Namespace(kind.name)).map_err(|e| {
                gone_or(e, pid, not_running, |e| target_err(format!("opening ns/{}: {}", kind.name, e.desc())))
            })?;
            if Some(theirs) != ours {
                foreign.push(ForeignNs { kind, dev: theirs.0, inode: theirs.1, file });
            }
        }
        let (root, root_id) = k
            .open_proc_entry(proc_dir.as_fd(), ProcEntry::Root)
            .map_err(|e| gone_or(e, pid, not_running, |e| target_err(format!("opening root: {}", e.desc()))))?;

        // Not a container: it shares our mount namespace, or the host's (that
        // of pid 1, for a cagepipe started in a private one, e.g. by a
        // service manager). Where pid 1's namespaces cannot be read (some
        // sandboxes hide them even from root), a target whose root directory
        // is ours is not one either: the command would see our files. Any
        // doubt counts as the host.
        let id_of = |name: &str| foreign.iter().find(|ns| ns.kind.name == name).map(|ns| (ns.dev, ns.inode));
        let (mnt, pid_ns) = (id_of("mnt"), id_of("pid"));
        let host_mnt = k.identity(Path::new("/proc/1/ns/mnt")).ok();
        let shares_host = match (mnt, host_mnt) {
            (None, _) => true,
            (Some(theirs), Some(host)) => theirs == host,
            (Some(_), None) => false, // decided by its root below
        };
        if shares_host {
            return Err(not_running(format!(
                "process {pid} from {source} shares the host's mount namespace or root directory, or cagepipe's own, so it is not a container (or cagepipe already runs inside it)"
            )));
        }
        // A mount namespace of its own is not enough: any host daemon with
        // a private /tmp (systemd's PrivateTmp=) has one. A container also
        // has a pid namespace or a root directory of its own; where pid 1
        // cannot be read, only a root of its own tells.
        // (Each identity is asked only when the answer can still change
        // the verdict.)
        let own_pid_ns =
            host_mnt.is_some() && pid_ns.is_some() && pid_ns != k.identity(Path::new("/proc/1/ns/pid")).ok();
        let mut own_root = || {
            let host_roots = [k.identity(Path::new("/proc/1/root")).ok(), k.identity(Path::new("/")).ok()];
            !host_roots.contains(&Some(root_id)) && host_roots[1].is_some()
        };
        if !own_pid_ns && !own_root() {
            return Err(not_running(format!(
                "process {pid} from {source} has a mount namespace of its own but shares the host's pid namespace and root directory: a host daemon (with a private /tmp, say), not a container"
            )));
        }
        Ok((foreign, root))
    })?;

    let cgroup_text = k
        .read_proc(proc_dir.as_fd(), "cgroup", 64 * 1024)
        .map_err(|e| gone_or(e, pid, not_running, |e| target_err(format!("reading cgroup: {}", e.desc()))))?;
    let entries = procfs::parse_cgroup(&cgroup_text).map_err(|e| target_err(e.to_string()))?;
    let mounts = cgroup::mounts(k, &entries)?;
    evidence.push(mounts.found);
    let mut cgroups = cgroup::plan(&entries, &mounts.table);
    let own = k.own_cgroups().map_err(|e| Error::io("reading /proc/self/cgroup", e))?;
    let own = procfs::parse_cgroup(&own).map_err(|e| Error::io("/proc/self/cgroup", std::io::Error::other(e)))?;
    cgroups.skip_own(&entries, &own);

    let id_maps = if let Some(userns) = foreign.iter().find(|ns| ns.kind.name == "user") {
        // A user namespace that someone other than root created is that
        // user's own sandbox, not a container a root-run manager started:
        // its owner could have put the host's pid and network namespaces or
        // a mount of the host's / in it, so entering it confines nothing.
        // Nor can the pidfile vouch for it: when such a process takes over
        // the number of a container that died just after its pidfile was
        // written, the start times are too coarse to tell.
        let owner = k.ns_owner_uid(userns.file.as_fd()).map_err(|e| target_err(format!("ns/user: owner: {e}")))?;
        if owner != 0 {
            return Err(not_running(format!(
                "process {pid} from {source} is in a user namespace that uid {owner} created, not root, so it is not a container (rootless containers are owned by the user and are not entered)"
            )));
        }
        let mut read_map = |name: &str| -> Result<Vec<IdMapRange>> {
            let text = k
                .read_proc(proc_dir.as_fd(), name, 16 * 1024)
                .map_err(|e| gone_or(e, pid, not_running, |e| target_err(format!("reading {name}: {}", e.desc()))))?;
            procfs::parse_id_map(&text).map_err(|e| target_err(e.to_string()))
        };
        let uid_map = read_map("uid_map")?;
        let gid_map = read_map("gid_map")?;
        let setgroups = k.read_proc(proc_dir.as_fd(), "setgroups", 64).unwrap_or_default();
        Some(IdMaps { uid_map, gid_map, setgroups_allowed: setgroups.trim_ascii() != b"deny" })
    } else {
        None
    };

    // Re-check on the handles we will use: same process, still alive. With
    // a pidfd, one poll of it is the whole proof: a process that has not
    // exited holds its number, so it held it since the pidfd was opened,
    // and /proc/PID opened after that, and all read through it, is its
    // own; its start time read again could not differ, and a zombie polls
    // as exited. Without one, the start time and state read again through
    // the /proc directory are.
    match &pidfd {
        Some(fd) => {
            if k.pidfd_alive(fd.as_fd()).is_err() {
                return Err(not_running(format!("process {pid} exited while it was being opened")));
            }
        }
        None => {
            let again = read_stat(k, &proc_dir, pid, not_running)?;
            if again.start_ticks != first.start_ticks {
                return Err(not_running(format!("process {pid} changed while it was being opened")));
            }
        }
    }
    let started_epoch = (started_ns / 1_000_000_000) as i64;
    Ok(Target { pid, source, started_epoch, pidfd, proc_dir, root, foreign, cgroups, id_maps, fallbacks, evidence })
}

/// ESRCH/ENOENT under /proc/PID mean the process went away.
fn gone_or(e: Errno, pid: i32, not_running: &dyn Fn(String) -> Error, other: impl FnOnce(Errno) -> Error) -> Error {
    match e {
        Errno::ESRCH | Errno::ENOENT => not_running(format!("process {pid} exited")),
        e => other(e),
    }
}

fn read_stat(
    k: &mut impl Kernel,
    proc_dir: &OwnedFd,
    pid: i32,
    not_running: &dyn Fn(String) -> Error,
) -> Result<procfs::Stat> {
    let text = k.read_proc(proc_dir.as_fd(), "stat", 4096).map_err(|e| {
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
pub(crate) fn is_ending(k: &mut impl Kernel, proc_dir: &OwnedFd) -> bool {
    match k.read_proc(proc_dir.as_fd(), "stat", 4096) {
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

/// Where each configured engine looks for the account's container, in
/// order (for `check`).
pub(crate) fn looked_in(config: &Config, account: &Account) -> Vec<String> {
    config
        .backends
        .iter()
        .map(|b| match b {
            Backend::Pidfile { template } => format!("pidfile {}", template.expand(&account.name, account.uid)),
            Backend::Oci { roots, id } => {
                format!("oci id {} in {}", id.expand(&account.name, account.uid), engine::shown(roots))
            }
            Backend::Docker { name, root } => {
                format!("docker container {} in {}/containers", name.expand(&account.name, account.uid), root.display())
            }
            Backend::Podman { name, root, .. } => {
                format!("podman container {} in {}", name.expand(&account.name, account.uid), root.display())
            }
            Backend::Lxc { name } => format!("lxc cgroup lxc.payload.{}", name.expand(&account.name, account.uid)),
            Backend::Machined { name } => {
                format!("machined /run/systemd/machines/{}", name.expand(&account.name, account.uid))
            }
            Backend::Cgroup { cgroup } => format!("cgroup {}", cgroup.expand(&account.name, account.uid)),
        })
        .collect()
}
