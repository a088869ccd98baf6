//! Joining the container's cgroups: v2 (the `0::` line) and every mounted
//! v1 hierarchy, with mount points taken from /proc/self/mountinfo.
#![forbid(unsafe_code)]

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::parse::procfs::{CgroupEntry, MountInfo};
use crate::platform::kernel::Kernel;

/// One cgroup directory to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupDir {
    /// "v2" or the v1 controllers, e.g. "cpu,cpuacct" or "name=systemd".
    pub(crate) hierarchy: String,
    pub(crate) dir: PathBuf,
}

impl fmt::Display for CgroupDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.hierarchy, self.dir.display())
    }
}

/// The target's cgroups as directories on this host, and the hierarchies
/// that cannot be joined because they are not mounted here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CgroupPlan {
    pub(crate) join: Vec<CgroupDir>,
    pub(crate) unmounted: Vec<String>,
    /// Hierarchies where the target's cgroup is the one cagepipe (and so
    /// the command's process, born in it) is already in: a manager that
    /// leaves the container in the root cgroup of some hierarchies. Not
    /// joined: a v1 move into the same cgroup still takes the threadgroup
    /// lock and waits for an RCU grace period on an idle server.
    pub(crate) already_in: Vec<CgroupDir>,
}

impl CgroupPlan {
    /// Move the hierarchies whose target cgroup is `own`'s (our own
    /// /proc/self/cgroup, read in the same cgroup namespace) from `join` to
    /// `already_in`.
    pub(crate) fn skip_own(&mut self, target: &[CgroupEntry], own: &[CgroupEntry]) {
        let same = |d: &CgroupDir| {
            target.iter().any(|t| {
                let hierarchy = if t.hierarchy_id == 0 { "v2".to_string() } else { t.controllers.join(",") };
                hierarchy == d.hierarchy
                    && own
                        .iter()
                        .any(|o| o.hierarchy_id == t.hierarchy_id && o.controllers == t.controllers && o.path == t.path)
            })
        };
        let (already_in, join): (Vec<CgroupDir>, Vec<CgroupDir>) = self.join.drain(..).partition(|d| same(d));
        self.join = join;
        self.already_in = already_in;
    }
}

/// Map the target's /proc/PID/cgroup entries onto our mount table.
pub(crate) fn plan(entries: &[CgroupEntry], mounts: &[MountInfo]) -> CgroupPlan {
    let mut plan = CgroupPlan::default();
    for entry in entries {
        let (hierarchy, mount) = if entry.hierarchy_id == 0 {
            ("v2".to_string(), mounts.iter().find(|m| m.fs_type == "cgroup2"))
        } else {
            let controllers = entry.controllers.join(",");
            // The line's names, matched as a set against the mount's real
            // controllers only: a name chosen inside a container ("rw") must
            // not match a mount option.
            let mut wanted: Vec<&str> = entry.controllers.iter().map(String::as_str).collect();
            wanted.sort_unstable();
            let mount = mounts.iter().find(|m| {
                let mut has: Vec<&str> =
                    m.super_options.iter().map(String::as_str).filter(|o| is_v1_controller(o)).collect();
                has.sort_unstable();
                m.fs_type == "cgroup" && !wanted.is_empty() && has == wanted
            });
            (controllers, mount)
        };
        // A hierarchy is joinable only through a mount whose root contains
        // the target's cgroup (a mount of a sub-tree may not).
        let dir = mount.and_then(|m| {
            let rel = Path::new(&entry.path).strip_prefix(&m.root).ok()?;
            Some(m.mount_point.join(rel))
        });
        match dir {
            Some(dir) => plan.join.push(CgroupDir { hierarchy, dir }),
            None => plan.unmounted.push(hierarchy),
        }
    }
    // cgroup v2 first: it is the one the container manager most likely
    // limits the container by.
    plan.join.sort_by_key(|d| d.hierarchy != "v2");
    plan
}

/// The controllers of cgroup v1 (and named hierarchies): what may appear in
/// a v1 mount's super options besides mount flags such as `rw` or `xattr`.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

fn is_v1_controller(option: &str) -> bool {
    V1_CONTROLLERS.contains(&option) || option.strip_prefix("name=").is_some_and(|n| !n.is_empty())
}

impl CgroupDir {
    pub(crate) fn is_v2(&self) -> bool {
        self.hierarchy == "v2"
    }
}

/// The container's cgroups, opened on the host before anything is entered:
/// the `tasks` file in each v1 hierarchy, for the command's process to write
/// itself into, and the v2 directory, which clone3 places the command into
/// or whose `cgroup.procs` it writes itself into once the host path is no
/// longer visible.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    pub(crate) v1: Vec<(PathBuf, OwnedFd)>,
    pub(crate) v2: Option<(PathBuf, OwnedFd)>,
}

/// Open the planned cgroups (the caller holds CAP_DAC_OVERRIDE: the files
/// belong to the host's root).
pub(crate) fn open(k: &mut impl Kernel, dirs: &[CgroupDir]) -> Result<Opened> {
    let mut opened = Opened::default();
    for d in dirs {
        let fd = k.open_cgroup(&d.dir, d.is_v2()).map_err(|source| Error::Cgroup { dir: d.dir.clone(), source })?;
        if d.is_v2() {
            opened.v2 = Some((d.dir.clone(), fd));
        } else {
            opened.v1.push((d.dir.clone(), fd));
        }
    }
    Ok(opened)
}

/// Move the calling process into the opened cgroups: every v1 hierarchy,
/// and v2 unless it was born there. `tasks` moves only the writing thread,
/// which for a single-threaded process is the whole process, and (on Linux
/// 6.x) without the global lock whose RCU grace period makes a
/// `cgroup.procs` move cost milliseconds on an idle server.
pub(crate) fn join(k: &mut impl Kernel, opened: &Opened, born_in_v2: bool) -> Result<()> {
    for (dir, fd) in &opened.v1 {
        k.join_cgroup(fd.as_fd(), false).map_err(|source| Error::Cgroup { dir: dir.clone(), source })?;
    }
    match &opened.v2 {
        Some((dir, fd)) if !born_in_v2 => {
            k.join_cgroup(fd.as_fd(), true).map_err(|source| Error::Cgroup { dir: dir.clone(), source })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(fs: &str, root: &str, at: &str, opts: &[&str]) -> MountInfo {
        MountInfo {
            mount_id: 1,
            parent_id: 0,
            root: root.into(),
            mount_point: at.into(),
            fs_type: fs.into(),
            source: "cgroup".into(),
            super_options: opts.iter().map(|s| s.to_string()).collect(),
        }
    }
    fn entry(id: u32, ctl: &[&str], path: &str) -> CgroupEntry {
        CgroupEntry { hierarchy_id: id, controllers: ctl.iter().map(|s| s.to_string()).collect(), path: path.into() }
    }

    #[test]
    fn hybrid_hierarchies_map_to_their_mounts() {
        let mounts = vec![
            mount("tmpfs", "/", "/sys/fs/cgroup", &["rw"]),
            mount("cgroup", "/", "/sys/fs/cgroup/cpu,cpuacct", &["rw", "cpu", "cpuacct"]),
            mount("cgroup", "/", "/sys/fs/cgroup/systemd", &["rw", "xattr", "name=systemd"]),
            mount("cgroup", "/", "/sys/fs/cgroup/pids", &["rw", "pids"]),
            mount("cgroup2", "/", "/sys/fs/cgroup/unified", &["rw", "nsdelegate"]),
        ];
        let entries = vec![
            entry(5, &["pids"], "/c1"),
            entry(2, &["cpu", "cpuacct"], "/c1"),
            entry(1, &["name=systemd"], "/c1"),
            entry(7, &["memory"], "/c1"),
            entry(0, &[], "/c1"),
        ];
        let p = plan(&entries, &mounts);
        let dirs: Vec<String> = p.join.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            dirs,
            [
                "v2 /sys/fs/cgroup/unified/c1",
                "pids /sys/fs/cgroup/pids/c1",
                "cpu,cpuacct /sys/fs/cgroup/cpu,cpuacct/c1",
                "name=systemd /sys/fs/cgroup/systemd/c1"
            ]
        );
        assert_eq!(p.unmounted, ["memory"]);
    }

    #[test]
    fn only_real_controller_names_match_a_v1_mount() {
        let mounts = vec![
            mount("cgroup", "/", "/sys/fs/cgroup/cpu,cpuacct", &["rw", "cpu", "cpuacct"]),
            mount("cgroup", "/", "/sys/fs/cgroup/systemd", &["rw", "xattr", "name=systemd"]),
        ];
        // Mount flags are not controllers; a subset of a mount's controllers
        // is not that hierarchy either.
        for ctl in [&["rw"][..], &["xattr"], &["cpu"], &["rw", "cpu", "cpuacct"], &["name="]] {
            let p = plan(&[entry(9, ctl, "/")], &mounts);
            assert!(p.join.is_empty(), "{ctl:?} matched {:?}", p.join);
        }
        let p = plan(&[entry(2, &["cpuacct", "cpu"], "/c")], &mounts);
        assert_eq!(p.join, [CgroupDir { hierarchy: "cpuacct,cpu".into(), dir: "/sys/fs/cgroup/cpu,cpuacct/c".into() }]);
    }

    #[test]
    fn a_mount_of_a_subtree_is_used_only_for_cgroups_below_it() {
        let mounts = vec![mount("cgroup2", "/machine", "/mnt/cg", &["rw"])];
        let p = plan(&[entry(0, &[], "/machine/c1")], &mounts);
        assert_eq!(p.join, [CgroupDir { hierarchy: "v2".into(), dir: "/mnt/cg/c1".into() }]);
        let p = plan(&[entry(0, &[], "/other/c1")], &mounts);
        assert!(p.join.is_empty());
        assert_eq!(p.unmounted, ["v2"]);
    }

    #[test]
    fn a_hierarchy_whose_target_is_our_own_cgroup_is_not_joined() {
        let mounts = vec![
            mount("cgroup", "/", "/sys/fs/cgroup/cpu,cpuacct", &["rw", "cpu", "cpuacct"]),
            mount("cgroup", "/", "/sys/fs/cgroup/pids", &["rw", "pids"]),
            mount("cgroup2", "/", "/sys/fs/cgroup/unified", &["rw"]),
        ];
        // The container has a cgroup of its own in pids and v2 only.
        let target = vec![entry(2, &["cpu", "cpuacct"], "/"), entry(5, &["pids"], "/c1"), entry(0, &[], "/c1")];
        let own = vec![entry(2, &["cpu", "cpuacct"], "/"), entry(5, &["pids"], "/"), entry(0, &[], "/")];
        let mut p = plan(&target, &mounts);
        p.skip_own(&target, &own);
        let dirs = |v: &[CgroupDir]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        assert_eq!(dirs(&p.join), ["v2 /sys/fs/cgroup/unified/c1", "pids /sys/fs/cgroup/pids/c1"]);
        assert_eq!(dirs(&p.already_in), ["cpu,cpuacct /sys/fs/cgroup/cpu,cpuacct/"]);
        // The same path in another hierarchy is not ours.
        let own = vec![entry(3, &["cpu", "cpuacct"], "/"), entry(5, &["pids"], "/c1")];
        let mut p = plan(&target, &mounts);
        p.skip_own(&target, &own);
        assert_eq!(dirs(&p.already_in), ["pids /sys/fs/cgroup/pids/c1"]);
    }

    #[test]
    fn joining_a_missing_directory_names_it() {
        let d = CgroupDir { hierarchy: "pids".into(), dir: "/nonexistent/cagepipe-cg".into() };
        let e = open(&mut crate::platform::kernel::Linux::default(), &[d]).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("/nonexistent/cagepipe-cg"), "{e}");
        let d = CgroupDir { hierarchy: "v2".into(), dir: "/nonexistent/cagepipe-cg".into() };
        let e = open(&mut crate::platform::kernel::Linux::default(), &[d]).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("/nonexistent/cagepipe-cg"), "{e}");
    }
}
