//! Cgroup backends (LXC/LXD/Incus, systemd units, any manager): the
//! container is whoever runs in a root-owned cgroup, and its init has to be
//! picked among the members. Membership alone proves little: a process
//! inside may `unshare` namespaces of its own and stay in the same cgroup.
//! So the init is the member whose innermost pid is 1 in the shallowest pid
//! namespace; without one (a container without its own pid namespace), the
//! oldest member, and only if every member shares one mount namespace.
#![forbid(unsafe_code)]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::{bad_state, open_state_dir, read_state_in, Found, Lookup};
use crate::deliver::cgroup;
use crate::deliver::privileges::{self, CAP_DAC_OVERRIDE, CAP_SYS_PTRACE};
use crate::error::{Error, Result};
use crate::parse::{engine_state, procfs};
use crate::platform::kernel::{FileId, Kernel, ProcEntry};

/// A cgroup with more members than this is not a container's.
const MAX_MEMBERS_BYTES: usize = 1 << 20;
/// How many processes and how deep below the cgroup are looked at.
const MAX_MEMBERS: usize = 4096;
const MAX_DEPTH: usize = 4;
/// How many entries of one cgroup directory are looked at.
const MAX_ENTRIES: usize = 4096;

/// What one member's /proc entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) pid: i32,
    /// Its pid in each pid namespace, outermost first (`NSpid`).
    pub(crate) ns_pids: Vec<i32>,
    pub(crate) start_ticks: u64,
    /// Its mount namespace, if it could be read.
    pub(crate) mnt: Option<FileId>,
}

/// Which member is the container's init, or why none can be.
pub(crate) fn pick_init(members: &[Member]) -> std::result::Result<&Member, String> {
    let inits = members.iter().filter(|m| m.may_be_init());
    if let Some(depth) = inits.clone().map(|m| m.ns_pids.len()).min() {
        let shallowest: Vec<&Member> = inits.filter(|m| m.ns_pids.len() == depth).collect();
        return match shallowest.as_slice() {
            [one] => Ok(one),
            many => Err(format!(
                "{} members are pid 1 of a pid namespace at the same depth ({}); cannot tell which is the container",
                many.len(),
                many.iter().map(|m| m.pid.to_string()).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    let first = members.first().ok_or("the cgroup has no processes")?;
    if members.iter().any(|m| m.mnt.is_none() || m.mnt != first.mnt) {
        return Err(
            "its members disagree on their mount namespace and none is pid 1 of its own pid namespace, so which is the container cannot be told"
                .into(),
        );
    }
    Ok(members.iter().min_by_key(|m| (m.start_ticks, m.pid)).expect("not empty"))
}

pub(crate) fn find(
    k: &mut impl Kernel,
    engine: &'static str,
    rel: &str,
    source: &str,
    not_running: &dyn Fn(String) -> Error,
) -> Result<Lookup> {
    // Our own cgroups name every hierarchy there is (the pin reads them
    // too): with none of v1, the mount table need not be read.
    let own = k.own_cgroups().map_err(|e| Error::io("reading /proc/self/cgroup", e))?;
    let own = procfs::parse_cgroup(&own).map_err(|e| Error::io("/proc/self/cgroup", std::io::Error::other(e)))?;
    let mounts = cgroup::mounts(k, &own)?;
    // cgroup2 first, then the v1 hierarchies; only mounts of a hierarchy's
    // root, so the path means the same in each.
    let mut dirs: Vec<PathBuf> = Vec::new();
    for fs in ["cgroup2", "cgroup"] {
        for m in mounts.table.iter().filter(|m| m.fs_type == fs && m.root == Path::new("/")) {
            dirs.push(m.mount_point.join(rel));
        }
    }
    let mut listed = None;
    for dir in &dirs {
        if let Some(found) = listed_cgroup(k, engine, dir)? {
            listed = Some(found);
            break;
        }
    }
    let Some(Listed { path: dir, children, procs }) = listed else {
        let what = if engine == "lxc" { "container" } else { "cgroup" };
        return Ok(Lookup::Absent(format!(
            "{engine} has no {what} {:?} (no cgroup {rel} in any mounted hierarchy)",
            source.split_once(' ').map_or(source, |(_, n)| n)
        )));
    };
    // The members of the cgroup and of every cgroup below it: on cgroup2
    // managers keep processes in leaves (liblxc's `.lxc` for attached
    // processes, a systemd inside in `init.scope`).
    let mut pids = Vec::new();
    let mut pending = vec![(Listed { path: dir.clone(), children, procs }, 0)];
    while let Some((Listed { path: at, children, procs }, depth)) = pending.pop() {
        for word in procs.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
            let pid = std::str::from_utf8(word).ok().and_then(|w| w.parse::<i32>().ok()).filter(|p| *p > 0);
            pids.push(
                pid.ok_or_else(|| {
                    bad_state(engine, &at.join("cgroup.procs"), "holds a word that is not a pid".into())
                })?,
            );
        }
        if depth == MAX_DEPTH || pids.len() > MAX_MEMBERS {
            continue;
        }
        for name in children {
            if let Some(below) = listed_cgroup(k, engine, &at.join(name))? {
                pending.push((below, depth + 1));
            }
        }
    }
    if pids.len() > MAX_MEMBERS {
        return Err(bad_state(
            engine,
            &dir,
            format!("has more than {MAX_MEMBERS} processes; not a container's cgroup"),
        ));
    }
    if pids.is_empty() {
        return Err(not_running(format!(
            "{source}: the cgroup {} has no processes (the container is stopped)",
            dir.display()
        )));
    }
    let members = privileges::with_caps(k, &[CAP_SYS_PTRACE], |k| Ok(read_members(k, &pids)))?;
    let init = pick_init(&members).map_err(|why| Error::Engine { engine, path: Some(dir.clone()), problem: why })?;
    let how = if init.ns_pids.last() == Some(&1) {
        format!("pid 1 of its own pid namespace (NSpid {:?})", init.ns_pids)
    } else {
        "the oldest member; all members share one mount namespace".into()
    };
    Ok(Lookup::Found(Found {
        pid: init.pid,
        written_ns: None,
        start_ticks: Some(init.start_ticks),
        source: source.to_string(),
        evidence: vec![format!("cgroup {}: {} members; init {}: {how}", dir.display(), members.len(), init.pid)],
        cgroup: Some(dir),
    }))
}

/// A cgroup directory as read: its members and the cgroups below it.
struct Listed {
    path: PathBuf,
    children: Vec<String>,
    procs: Vec<u8>,
}

/// A cgroup's `cgroup.procs` and its child cgroups; `None`: no such
/// cgroup. The directory is walked and checked from `/` once, and kept
/// open while its `cgroup.procs` is read below it.
/// Both in one raise of `cap_dac_override` (the two reads nest in it).
fn listed_cgroup(k: &mut impl Kernel, engine: &'static str, dir: &Path) -> Result<Option<Listed>> {
    privileges::with_caps(k, &[CAP_DAC_OVERRIDE], |k| {
        let Some(open) = open_state_dir(k, engine, dir, MAX_ENTRIES)? else { return Ok(None) };
        let procs = read_state_in(k, engine, &open, Path::new("cgroup.procs"), MAX_MEMBERS_BYTES)?;
        let children = open.entries.into_iter().filter(|(_, is_dir)| *is_dir).map(|(name, _)| name).collect();
        Ok(procs.map(|f| Listed { path: open.path, children, procs: f.contents }))
    })
}

/// Each member still there; one that exits meanwhile is left out. Its
/// `NSpid` always; its start time only if it may be the init (pid 1 of a
/// pid namespace below ours), read through the same /proc directory so
/// that it is that process's; start times and mount namespaces of all
/// only when no member is such an init (the fallback needs them).
fn read_members(k: &mut impl Kernel, pids: &[i32]) -> Vec<Member> {
    let mut members = Vec::new();
    for &pid in pids {
        let Ok(dir) = k.open_proc(pid) else { continue };
        let Ok(status) = k.read_proc(dir.as_fd(), "status", 16 * 1024) else { continue };
        let ns_pids = match engine_state::parse_nspid(&status) {
            pids if pids.first() == Some(&pid) => pids,
            _ => vec![pid],
        };
        let mut member = Member { pid, ns_pids, start_ticks: 0, mnt: None };
        if member.may_be_init() {
            let Some(start) = start_ticks(k, dir.as_fd()) else { continue };
            member.start_ticks = start;
        }
        members.push(member);
    }
    if !members.iter().any(Member::may_be_init) {
        members.retain_mut(|m| {
            let Ok(dir) = k.open_proc(m.pid) else { return false };
            let Some(start) = start_ticks(k, dir.as_fd()) else { return false };
            m.start_ticks = start;
            m.mnt = k.open_proc_entry(dir.as_fd(), ProcEntry::Namespace("mnt")).ok().map(|(_, id)| id);
            true
        });
    }
    members
}

impl Member {
    /// Pid 1 of a pid namespace below ours.
    fn may_be_init(&self) -> bool {
        self.ns_pids.len() > 1 && self.ns_pids.last() == Some(&1)
    }
}

fn start_ticks(k: &mut impl Kernel, dir: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    k.read_proc(dir, "stat", 4096).ok().and_then(|t| procfs::parse_stat(&t).ok()).map(|s| s.start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pid: i32, ns_pids: &[i32], start: u64, mnt: u64) -> Member {
        Member { pid, ns_pids: ns_pids.to_vec(), start_ticks: start, mnt: Some((3, mnt)) }
    }

    /// Only a member that may be the init has its start time read; all
    /// have it, and their mount namespace, when none may be.
    #[test]
    fn members_are_read_only_as_far_as_the_choice_needs() {
        use crate::platform::recording::{FakeProcess, Recording};
        let mut k = Recording::new();
        let init = FakeProcess::container(4711);
        let outside = FakeProcess { ns_pids: vec![4700], ..FakeProcess::container(4700) };
        let unshared = FakeProcess { ns_pids: vec![4720, 9], ..FakeProcess::container(4720) };
        k.process = Some(init);
        k.others = vec![outside, unshared];
        let members = read_members(&mut k, &[4700, 4711, 4720, 4799]);
        assert_eq!(members.iter().map(|m| m.pid).collect::<Vec<_>>(), [4700, 4711, 4720], "4799 has exited");
        assert_eq!(pick_init(&members).unwrap().pid, 4711);
        assert_eq!(members[1].start_ticks, 500);
        assert_eq!(
            k.calls_of(&["read_proc"]),
            ["read_proc 4700/status", "read_proc 4711/status", "read_proc 4711/stat", "read_proc 4720/status"]
        );
        assert!(k.calls_of(&["open_proc_entry"]).is_empty());

        // No member is pid 1 of a pid namespace: start times and mount
        // namespaces of all, for the fallback.
        let mut k = Recording::new();
        k.process = Some(FakeProcess { ns_pids: vec![4711], ..FakeProcess::container(4711) });
        k.others = vec![FakeProcess { ns_pids: vec![4700], start_ticks: 400, ..FakeProcess::container(4700) }];
        let members = read_members(&mut k, &[4700, 4711]);
        assert_eq!(members.len(), 2);
        assert_eq!(pick_init(&members).unwrap().pid, 4700, "the oldest");
        assert_eq!(k.calls_of(&["open_proc_entry"]), ["open_proc_entry 4700/ns/mnt", "open_proc_entry 4711/ns/mnt"]);
        assert_eq!(k.calls_of(&["read_proc"]).iter().filter(|c| c.ends_with("/stat")).count(), 2);
    }

    #[test]
    fn the_init_is_pid_1_of_the_shallowest_pid_namespace() {
        // The container's init, a shell, and a process that unshared a pid
        // namespace of its own (its child is pid 1 one level deeper) and a
        // mount namespace.
        let members = [m(500, &[500, 7], 90, 2), m(400, &[400, 1], 100, 1), m(600, &[600, 8, 1], 50, 3)];
        assert_eq!(pick_init(&members).unwrap().pid, 400);
    }

    #[test]
    fn two_inits_at_one_depth_are_refused() {
        let members = [m(400, &[400, 1], 100, 1), m(401, &[401, 1], 100, 1)];
        assert!(pick_init(&members).unwrap_err().contains("400, 401"));
    }

    #[test]
    fn without_a_pid_namespace_the_oldest_member_if_all_share_the_mount_namespace() {
        let members = [m(500, &[500], 90, 1), m(400, &[400], 100, 1), m(450, &[450], 90, 1)];
        assert_eq!(pick_init(&members).unwrap().pid, 450);
        // One member unshared a mount namespace: no telling which is which.
        let members = [m(500, &[500], 90, 1), m(400, &[400], 10, 2)];
        assert!(pick_init(&members).unwrap_err().contains("disagree on their mount namespace"));
        let unreadable = [Member { mnt: None, ..m(1, &[1], 1, 1) }];
        assert!(pick_init(&unreadable).is_err());
        assert!(pick_init(&[]).unwrap_err().contains("no processes"));
    }
}
