//! Joining the container's cgroups: v2 (the `0::` line) and every mounted
//! v1 hierarchy, with mount points taken from /proc/self/mountinfo.
#![forbid(unsafe_code)]

use std::fmt;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::parse::procfs::{CgroupEntry, MountInfo};

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
}

/// Map the target's /proc/PID/cgroup entries onto our mount table.
pub(crate) fn plan(entries: &[CgroupEntry], mounts: &[MountInfo]) -> CgroupPlan {
    let mut plan = CgroupPlan::default();
    for entry in entries {
        let (hierarchy, mount) = if entry.hierarchy_id == 0 {
            ("v2".to_string(), mounts.iter().find(|m| m.fs_type == "cgroup2"))
        } else {
            let controllers = entry.controllers.join(",");
            let mount = mounts.iter().find(|m| {
                m.fs_type == "cgroup"
                    && !entry.controllers.is_empty()
                    && entry.controllers.iter().all(|c| m.super_options.iter().any(|o| o == c))
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

impl CgroupDir {
    pub(crate) fn is_v2(&self) -> bool {
        self.hierarchy == "v2"
    }
}

/// The `tasks` file of the container's cgroup in one v1 hierarchy, opened
/// on the host before anything is entered, for the command's process to
/// write itself into.
#[derive(Debug)]
pub(crate) struct V1Tasks {
    pub(crate) dir: PathBuf,
    fd: OwnedFd,
}

/// Open the planned v1 cgroups' `tasks` files (needs CAP_DAC_OVERRIDE: they
/// belong to the host's root).
pub(crate) fn open_v1(dirs: &[CgroupDir]) -> Result<Vec<V1Tasks>> {
    let flags = OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    dirs.iter()
        .filter(|d| !d.is_v2())
        .map(|d| {
            nix::fcntl::open(&d.dir.join("tasks"), flags, Mode::empty())
                .map(|fd| V1Tasks { dir: d.dir.clone(), fd })
                .map_err(|e| Error::Cgroup { dir: d.dir.clone(), source: e.into() })
        })
        .collect()
}

/// Move the calling process into the opened v1 cgroups. `tasks` moves only
/// the writing thread, which for a single-threaded process is the whole
/// process, and (on Linux 6.x) without the global lock whose RCU grace
/// period makes a `cgroup.procs` move cost milliseconds on an idle server.
/// "0" means the writer.
pub(crate) fn join_v1(tasks: &[V1Tasks]) -> Result<()> {
    for t in tasks {
        nix::unistd::write(&t.fd, b"0").map_err(|e| Error::Cgroup { dir: t.dir.clone(), source: e.into() })?;
    }
    Ok(())
}

/// The container's cgroup v2 directory, opened on the host before anything
/// is entered: clone3 places the command into it, or cagepipe joins it
/// through the descriptor once the host path is no longer visible.
#[derive(Debug)]
pub(crate) struct V2Dir {
    pub(crate) path: PathBuf,
    pub(crate) fd: OwnedFd,
}

pub(crate) fn open_v2(dirs: &[CgroupDir]) -> Result<Option<V2Dir>> {
    let Some(d) = dirs.iter().find(|d| d.is_v2()) else { return Ok(None) };
    nix::fcntl::open(&d.dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty())
        .map(|fd| Some(V2Dir { path: d.dir.clone(), fd }))
        .map_err(|e| Error::Cgroup { dir: d.dir.clone(), source: e.into() })
}

/// Join the cgroup v2 directory through its `cgroup.procs` (for kernels
/// without clone3 into a cgroup).
pub(crate) fn join_v2(dir: &V2Dir) -> Result<()> {
    let err = |source| Error::Cgroup { dir: dir.path.clone(), source };
    let flags = OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let fd = nix::fcntl::openat(&dir.fd, "cgroup.procs", flags, Mode::empty()).map_err(|e| err(e.into()))?;
    std::fs::File::from(fd).write_all(b"0").map_err(err)
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
    fn a_mount_of_a_subtree_is_used_only_for_cgroups_below_it() {
        let mounts = vec![mount("cgroup2", "/machine", "/mnt/cg", &["rw"])];
        let p = plan(&[entry(0, &[], "/machine/c1")], &mounts);
        assert_eq!(p.join, [CgroupDir { hierarchy: "v2".into(), dir: "/mnt/cg/c1".into() }]);
        let p = plan(&[entry(0, &[], "/other/c1")], &mounts);
        assert!(p.join.is_empty());
        assert_eq!(p.unmounted, ["v2"]);
    }

    #[test]
    fn joining_a_missing_directory_names_it() {
        let d = CgroupDir { hierarchy: "pids".into(), dir: "/nonexistent/cagepipe-cg".into() };
        let e = open_v1(&[d]).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("/nonexistent/cagepipe-cg"), "{e}");
        let d = CgroupDir { hierarchy: "v2".into(), dir: "/nonexistent/cagepipe-cg".into() };
        let e = open_v2(&[d]).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("/nonexistent/cagepipe-cg"), "{e}");
    }
}
