//! Joining the container's cgroups: v2 (the `0::` line) and every mounted
//! v1 hierarchy, with mount points taken from /proc/self/mountinfo, or,
//! where only cgroup v2 is in use, from its hierarchy's root found without it.
#![forbid(unsafe_code)]

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::parse::procfs::{self, CgroupEntry, MountInfo};
use crate::platform::kernel::{Kernel, CGROUP2_SUPER_MAGIC, INIT_CGROUP_NS_INODE};
use crate::platform::Errno;

/// Where the cgroup hierarchies are mounted, and how that was found (a
/// line for `check`).
#[derive(Debug)]
pub(crate) struct Mounts {
    pub(crate) table: Vec<MountInfo>,
    pub(crate) found: String,
}

/// Where cgroup v2's hierarchy root is mounted on a host that uses only
/// cgroup v2 (systemd's default), then on a hybrid one.
const V2_ROOTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

/// kernfs numbers a hierarchy's nodes from 1 up, per hierarchy, and makes
/// its root first (fs/kernfs/dir.c, `kernfs_create_root`: an idr starting
/// at 1; the root holds 1 as long as the hierarchy exists). A mount of a
/// subtree (a bind mount, a mount made inside a cgroup namespace) has
/// another inode at its root.
const KERNFS_ROOT_INODE: u64 = 1;

/// Where the cgroup hierarchies named in `lines` (a /proc/PID/cgroup) are
/// mounted here. With cgroup v2 alone there is one hierarchy, so a
/// trusted host directory that is cgroup2 and the hierarchy's root is
/// where it is mounted, and the mount table, which the kernel renders
/// whole on each read (about 1.3 µs a mount; a Docker host has several
/// mounts a container), is not read. Anything else (v1 hierarchies to
/// tell apart, a cgroup namespace of our own, in which the lines' paths
/// do not start at the hierarchy's root) reads the mount table.
pub(crate) fn mounts(k: &mut impl Kernel, lines: &[CgroupEntry]) -> Result<Mounts> {
    let why = match v2_root(k, lines) {
        Ok(root) => {
            let found = format!("cgroup2 root: {root} (cgroup2, hierarchy root; the mount table is not read)");
            // The one mount that matters, as the table would show it.
            let mount = MountInfo {
                mount_id: 0,
                parent_id: 0,
                root: "/".into(),
                mount_point: root.into(),
                fs_type: "cgroup2".into(),
                source: "cgroup2".into(),
                super_options: Vec::new(),
            };
            return Ok(Mounts { table: vec![mount], found });
        }
        Err(why) => why,
    };
    let text = k.mountinfo().map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
    let table =
        procfs::parse_mountinfo(&text).map_err(|e| Error::io("/proc/self/mountinfo", std::io::Error::other(e)))?;
    Ok(Mounts { table, found: format!("cgroup mounts: from /proc/self/mountinfo ({why})") })
}

/// The mount point of cgroup v2's hierarchy root, or why it is not used.
fn v2_root(k: &mut impl Kernel, lines: &[CgroupEntry]) -> std::result::Result<&'static str, String> {
    if lines.is_empty() {
        return Err("no cgroup".into());
    }
    if lines.iter().any(|l| l.hierarchy_id != 0) {
        return Err("cgroup v1 hierarchies are in use".into());
    }
    match k.identity(Path::new("/proc/self/ns/cgroup")) {
        Ok((_, INIT_CGROUP_NS_INODE)) | Err(Errno::ENOENT) => {} // ENOENT: no cgroup namespaces (before 4.6)
        Ok(_) => return Err("cagepipe runs in a cgroup namespace of its own".into()),
        Err(e) => return Err(format!("/proc/self/ns/cgroup: {}", e.desc())),
    }
    let mut tried = Vec::new();
    for root in V2_ROOTS {
        match k.probe_dir(Path::new(root)) {
            Ok(d) if d.magic == CGROUP2_SUPER_MAGIC && d.inode == KERNFS_ROOT_INODE => return Ok(root),
            Ok(d) if d.magic != CGROUP2_SUPER_MAGIC => tried.push(format!("{root} is not cgroup2")),
            Ok(d) => tried.push(format!("{root} is inode {}, not a hierarchy's root", d.inode)),
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(tried.join("; "))
}

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
    use crate::platform::recording::Recording;

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

    /// The plan from `found`'s mounts and from the double's mount table,
    /// with our own cgroups at the root or where the target is.
    fn assert_same_plan(k: &Recording, found: &Mounts, lines: &[CgroupEntry]) {
        let table = procfs::parse_mountinfo(k.mountinfo.as_bytes()).unwrap();
        let roots: Vec<CgroupEntry> = lines.iter().map(|l| CgroupEntry { path: "/".into(), ..l.clone() }).collect();
        for own in [roots.as_slice(), lines] {
            let (mut a, mut b) = (plan(lines, &found.table), plan(lines, &table));
            a.skip_own(lines, own);
            b.skip_own(lines, own);
            assert_eq!(a, b, "{}", found.found);
        }
    }

    #[test]
    fn with_cgroup_v2_alone_its_root_is_found_without_the_mount_table_and_plans_the_same() {
        let lines = [entry(0, &[], "/system.slice/ct-alice.scope")];
        let mut k = Recording::pure_v2();
        let found = mounts(&mut k, &lines).unwrap();
        assert_eq!(k.calls, ["identity /proc/self/ns/cgroup", "probe_dir /sys/fs/cgroup"]);
        assert_eq!(found.found, "cgroup2 root: /sys/fs/cgroup (cgroup2, hierarchy root; the mount table is not read)");
        assert_eq!(
            plan(&lines, &found.table).join,
            [CgroupDir { hierarchy: "v2".into(), dir: "/sys/fs/cgroup/system.slice/ct-alice.scope".into() }]
        );
        assert_same_plan(&k, &found, &lines);
        // A kernel without cgroup namespaces (before 4.6) has only the one.
        let mut k = Recording::pure_v2();
        k.missing = vec!["cgroupns"];
        assert!(!mounts(&mut k, &lines).unwrap().found.contains("mountinfo"));

        // cgroup2 beside a tmpfs of v1 mount points (the double's default),
        // no v1 hierarchy in use: the second place.
        let mut k = Recording::new();
        let found = mounts(&mut k, &lines).unwrap();
        assert_eq!(
            k.calls,
            ["identity /proc/self/ns/cgroup", "probe_dir /sys/fs/cgroup", "probe_dir /sys/fs/cgroup/unified"]
        );
        assert!(found.found.starts_with("cgroup2 root: /sys/fs/cgroup/unified (cgroup2, hierarchy root"));
        assert_same_plan(&k, &found, &lines);
    }

    #[test]
    fn anything_but_cgroup2_s_own_root_reads_the_mount_table_and_says_why() {
        use crate::platform::kernel::DirProbe;
        use crate::platform::recording::TMPFS_MAGIC;
        let v2 = vec![entry(0, &[], "/ct/alice")];
        let hybrid = vec![entry(4, &["cpu", "cpuacct"], "/ct/alice"), entry(0, &[], "/ct/alice")];
        let probe = |magic, inode| DirProbe { magic, inode };
        let at = |dirs: Vec<(&str, DirProbe)>| dirs.into_iter().map(|(d, p)| (PathBuf::from(d), p)).collect();
        // What the host has, as a change to the pure v2 double.
        type Host = Box<dyn Fn(&mut Recording)>;
        let cases: Vec<(&str, Vec<CgroupEntry>, Host, &str)> = vec![
            ("v1 in use", hybrid.clone(), Box::new(|_| {}), "cgroup v1 hierarchies are in use"),
            (
                "wrong magic",
                v2.clone(),
                Box::new(move |k| {
                    k.probed = at(vec![
                        ("/sys/fs/cgroup", probe(TMPFS_MAGIC, 1)),
                        ("/sys/fs/cgroup/unified", probe(TMPFS_MAGIC, 1)),
                    ])
                }),
                "/sys/fs/cgroup is not cgroup2; /sys/fs/cgroup/unified is not cgroup2",
            ),
            (
                "a subtree mounted",
                v2.clone(),
                Box::new(move |k| k.probed = at(vec![("/sys/fs/cgroup", probe(CGROUP2_SUPER_MAGIC, 4711))])),
                "/sys/fs/cgroup is inode 4711, not a hierarchy's root; /sys/fs/cgroup/unified does not exist",
            ),
            (
                "missing",
                v2.clone(),
                Box::new(|k| k.probed.clear()),
                "/sys/fs/cgroup does not exist; /sys/fs/cgroup/unified does not exist",
            ),
            (
                "a cgroup namespace of our own",
                v2.clone(),
                Box::new(|k| k.own_cgroup_ns = 0xF000_0004),
                "cagepipe runs in a cgroup namespace of its own",
            ),
        ];
        for (case, lines, host, why) in cases {
            let mut k = Recording::pure_v2();
            k.mountinfo = "30 1 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                           31 1 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                .into();
            host(&mut k);
            let found = mounts(&mut k, &lines).unwrap();
            assert_eq!(found.found, format!("cgroup mounts: from /proc/self/mountinfo ({why})"), "{case}");
            assert_eq!(k.calls.last().map(String::as_str), Some("mountinfo"), "{case}");
            assert_same_plan(&k, &found, &lines);
            // With v1 in use nothing is probed: not one call more than before.
            if case == "v1 in use" {
                assert_eq!(k.calls, ["mountinfo"]);
            }
        }
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
