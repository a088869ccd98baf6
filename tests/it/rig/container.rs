//! Real throwaway containers (`testbed/container`), and what the host sees
//! of processes, namespaces and cgroups.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::probe::{probe_binary, PROBE_IN_CONTAINER};

/// `testbed/container`'s state directory root.
pub const TESTBED_STATE_ROOT: &str = "/run/cagepipe-testbed";
/// The cgroup every container's own cgroup is created in, under the cgroup
/// of whoever started it, in every hierarchy.
pub const TESTBED_CGROUP: &str = "cagepipe-testbed";
/// Container names become hostnames and path components.
pub const MAX_NAME_LEN: usize = 40;

pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn container_script() -> PathBuf {
    repo_dir().join("testbed/container")
}

/// Inode of namespace `kind` (`mnt`, `user`, ...) of process `pid`.
pub fn ns_inode_of(pid: i32, kind: &str) -> u64 {
    let path = format!("/proc/{pid}/ns/{kind}");
    std::fs::metadata(&path).unwrap_or_else(|e| panic!("{path}: {e}")).ino()
}

/// Inode of this (host) process's namespace `kind`.
pub fn host_ns_inode(kind: &str) -> u64 {
    ns_inode_of(std::process::id() as i32, kind)
}

/// Field 22 of /proc/PID/stat, its start time in clock ticks after boot:
/// with the pid, it names one process. `None` once it is gone.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()
}

/// True if `pid` exists and is not a zombie.
pub fn process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            !matches!(state, Some(Some('Z' | 'X')))
        }
        Err(_) => false,
    }
}

/// A container name unique across parallel tests and test processes:
/// `prefix` (sanitised), then this process's pid and a counter.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let suffix = format!("-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut stem = String::new();
    for c in prefix.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            stem.push(c);
        } else if !stem.is_empty() && !stem.ends_with('-') {
            stem.push('-');
        }
    }
    stem.truncate(MAX_NAME_LEN.saturating_sub(suffix.len()));
    let stem = stem.trim_end_matches('-');
    let stem = if stem.is_empty() { "c" } else { stem };
    format!("{stem}{suffix}")
}

/// What `Container::start` asks `testbed/container` for. The probe is
/// always bound at [`PROBE_IN_CONTAINER`] and runs as the init.
#[derive(Debug, Clone, Default)]
pub struct ContainerOpts {
    /// Accounts living in the container (`--user`).
    pub users: Vec<String>,
    /// A new user namespace (`--userns`).
    pub userns: bool,
    /// `"IN OUT COUNT[,...]"` (implies a user namespace).
    pub uid_map: Option<String>,
    pub gid_map: Option<String>,
    /// The init chroot()s instead of pivot_root (`--chroot`).
    pub chroot: bool,
    /// Root-owned 0644 pidfile written once the container is ready.
    pub pidfile: Option<PathBuf>,
    /// No cgroups of its own (`--no-cgroup`).
    pub no_cgroup: bool,
    /// More read-only binds: host path, path inside.
    pub bind_ro: Vec<(PathBuf, String)>,
}

/// A running container, stopped on drop.
#[derive(Debug)]
pub struct Container {
    pub name: String,
    /// The init's pid in the host's pid namespace.
    pub pid: i32,
    pub pidfile: Option<PathBuf>,
    cgroup_dirs: Vec<PathBuf>,
    /// Its pid namespace, held open so that the inode number cannot be
    /// given to another namespace after `stop`, and the pid of its host-side
    /// launcher (the init's parent, which sits in its cgroups).
    pid_ns: std::fs::File,
    launcher: Option<i32>,
    stopped: bool,
}

impl Container {
    /// Start a container or panic with `testbed/container`'s stderr.
    pub fn start(name: &str, opts: &ContainerOpts) -> Container {
        Self::try_start(name, opts).unwrap_or_else(|message| panic!("{message}"))
    }

    /// Start a container; `Err` carries the exit status and stderr.
    pub fn try_start(name: &str, opts: &ContainerOpts) -> Result<Container, String> {
        let probe = probe_binary();
        let mut cmd = Command::new(container_script());
        cmd.arg("start").arg(name).arg("--init").arg(probe);
        cmd.arg("--bind-ro").arg(format!("{}:{PROBE_IN_CONTAINER}", probe.display()));
        for (src, dst) in &opts.bind_ro {
            cmd.arg("--bind-ro").arg(format!("{}:{dst}", src.display()));
        }
        for user in &opts.users {
            cmd.args(["--user", user]);
        }
        if opts.userns {
            cmd.arg("--userns");
        }
        if let Some(map) = &opts.uid_map {
            cmd.args(["--uid-map", map]);
        }
        if let Some(map) = &opts.gid_map {
            cmd.args(["--gid-map", map]);
        }
        if opts.chroot {
            cmd.arg("--chroot");
        }
        if let Some(pidfile) = &opts.pidfile {
            cmd.arg("--pidfile").arg(pidfile);
        }
        if opts.no_cgroup {
            cmd.arg("--no-cgroup");
        }
        let out =
            cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {}: {e}", container_script().display()));
        if !out.status.success() {
            return Err(format!(
                "testbed/container start {name} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pid = stdout.trim().parse().unwrap_or_else(|_| panic!("testbed/container start {name} printed {stdout:?}"));
        let mut container = Container {
            name: name.to_owned(),
            pid,
            pidfile: opts.pidfile.clone(),
            cgroup_dirs: Vec::new(),
            pid_ns: std::fs::File::open(format!("/proc/{pid}/ns/pid"))
                .unwrap_or_else(|e| panic!("/proc/{pid}/ns/pid: {e}")),
            launcher: std::fs::read_to_string(Path::new(TESTBED_STATE_ROOT).join(name).join("launcher.pid"))
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse().ok()),
            stopped: false,
        };
        if !opts.no_cgroup {
            container.cgroup_dirs = own_cgroup_dirs_of(pid, name);
        }
        Ok(container)
    }

    /// Inode of the container's namespace `kind`, from the host's /proc.
    pub fn ns_inode(&self, kind: &str) -> u64 {
        ns_inode_of(self.pid, kind)
    }

    /// The container's cgroup directories: the v2 one and one per v1
    /// hierarchy (empty for `no_cgroup`). Taken from /proc/PID/cgroup at
    /// start, so still known after `stop`.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.cgroup_dirs.clone()
    }

    /// Host pids of what a delivery left behind: every process in the
    /// container's pid namespace or cgroups (any hierarchy, sub-cgroups
    /// included) but its init and launcher, zombies included. Also right
    /// after `stop`, when the answer must be empty.
    pub fn leftovers(&self) -> Vec<i32> {
        let mut pids = pids_in_pid_ns(self.pid_ns.metadata().expect("fstat of a pid namespace").ino());
        pids.extend(pids_in_cgroups(&self.cgroup_dirs));
        pids.retain(|&p| p != self.pid && Some(p) != self.launcher);
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Host pids of the delivered commands (probes) running in it: its pid
    /// namespace or cgroups, not its init, zombies excluded.
    pub fn commands(&self) -> Vec<i32> {
        self.leftovers()
            .into_iter()
            .filter(|p| process_running(*p))
            .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|comm| comm.trim() == "probe"))
            .collect()
    }

    /// Where a path inside the container is on the host (its root file
    /// system, as `testbed/container` built it).
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.state_dir().join("rootfs").join(inside.trim_start_matches('/'))
    }

    pub fn state_dir(&self) -> PathBuf {
        Path::new(TESTBED_STATE_ROOT).join(&self.name)
    }

    /// `nsenter` into all the container's namespaces, its root directory
    /// and working directory, as root (uid 0 of its user namespace).
    /// `--root`/`--wd` matter for `--chroot` containers, whose mount
    /// namespace root is not the container's root.
    pub fn nsenter(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.pid.to_string()).args(["--all", "--root", "--wd"]);
        cmd
    }

    /// The ids `user` has inside, from the container's /etc/passwd.
    pub fn inside_ids(&self, user: &str) -> (u32, u32) {
        let path = format!("/proc/{}/root/etc/passwd", self.pid);
        let passwd = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        passwd
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.first() == Some(&user) && fields.len() >= 4)
                    .then(|| (fields[2].parse().ok(), fields[3].parse().ok()))
            })
            .and_then(|(uid, gid)| Some((uid?, gid?)))
            .unwrap_or_else(|| panic!("{user} is not in {path}"))
    }

    /// Run the probe inside as root with `args` after `report`.
    pub fn probe_as_root(&self, args: &[&str]) -> Output {
        let mut cmd = self.nsenter();
        cmd.args(["env", "-i", "PATH=/usr/bin:/bin", PROBE_IN_CONTAINER, "report"]).args(args);
        run_captured(&mut cmd)
    }

    /// Run the probe inside as `user` (its ids and groups as the container
    /// knows them, HOME=/home/USER) with `args` after `report`.
    pub fn probe_as(&self, user: &str, args: &[&str]) -> Output {
        let (uid, gid) = self.inside_ids(user);
        let mut cmd = self.nsenter();
        cmd.arg("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--init-groups", "--"])
            .args(["env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("HOME=/home/{user}"))
            .args([PROBE_IN_CONTAINER, "report"])
            .args(args);
        run_captured(&mut cmd)
    }

    /// Stop it (idempotent).
    pub fn stop(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        let out = stop_container(&self.name);
        if !out.status.success() {
            return Err(format!(
                "testbed/container stop {} failed ({}):\n{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.stopped = true;
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(message) = self.stop() {
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// Host pids of the processes whose pid namespace has inode `ns_inode`.
pub fn pids_in_pid_ns(ns_inode: u64) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // A process that is gone by now is simply not counted.
        if std::fs::metadata(format!("/proc/{pid}/ns/pid")).is_ok_and(|m| m.ino() == ns_inode) {
            pids.push(pid);
        }
    }
    pids
}

/// Host pids in the cgroup directories `dirs` and every cgroup below them.
pub fn pids_in_cgroups(dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut todo: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = todo.pop() {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.parse::<i32>().ok()));
        }
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
    }
    pids
}

/// One line per pid, `ps`-style (pid, ppid, state, command line), for
/// failure messages.
pub fn describe_pids(pids: &[i32]) -> String {
    let mut out = String::new();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push_str(&format!(
            "  {pid} ppid={} state={} {}\n",
            fields.get(1).unwrap_or(&"?"),
            fields.first().unwrap_or(&"?"),
            cmdline.trim_end()
        ));
    }
    out
}

/// `testbed/container stop NAME`, whatever the outcome.
pub fn stop_container(name: &str) -> Output {
    Command::new(container_script())
        .args(["stop", name])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", container_script().display()))
}

fn run_captured(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

/// A mounted cgroup hierarchy, from /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct CgroupMount {
    /// The mount's root inside the hierarchy (field 4).
    pub root: String,
    pub mount_point: PathBuf,
    /// `cgroup2`, or `cgroup` (v1).
    pub fs_type: String,
    /// Super block options: the controllers (or `name=`) of a v1 hierarchy.
    pub super_options: Vec<String>,
}

/// Every cgroup v1 and v2 mount of the host.
pub fn cgroup_mounts() -> Vec<CgroupMount> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().skip(6).position(|&f| f == "-").map(|p| p + 6) else {
            continue;
        };
        let fs_type = fields.get(sep + 1).copied().unwrap_or_default();
        if fs_type != "cgroup" && fs_type != "cgroup2" {
            continue;
        }
        mounts.push(CgroupMount {
            root: unescape_mountinfo(fields[3]),
            mount_point: PathBuf::from(unescape_mountinfo(fields[4])),
            fs_type: fs_type.to_owned(),
            super_options: fields.get(sep + 3).map(|o| o.split(',').map(str::to_owned).collect()).unwrap_or_default(),
        });
    }
    mounts
}

fn unescape_mountinfo(field: &str) -> String {
    field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// One line of /proc/PID/cgroup: hierarchy id, controllers, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub hierarchy: String,
    pub controllers: String,
    pub path: String,
}

pub fn cgroup_lines(pid: i32) -> Vec<CgroupLine> {
    let path = format!("/proc/{pid}/cgroup");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter_map(|line| {
            let (hierarchy, rest) = line.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            Some(CgroupLine {
                hierarchy: hierarchy.to_owned(),
                controllers: controllers.to_owned(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The directory of a /proc/PID/cgroup line in the host's mounts, if the
/// hierarchy is mounted.
pub fn cgroup_dir(line: &CgroupLine, mounts: &[CgroupMount]) -> Option<PathBuf> {
    let v2 = line.hierarchy == "0" && line.controllers.is_empty();
    mounts.iter().find_map(|mount| {
        if v2 != (mount.fs_type == "cgroup2") {
            return None;
        }
        if !v2 && !line.controllers.split(',').all(|c| mount.super_options.iter().any(|o| o == c)) {
            return None;
        }
        let relative = if mount.root == "/" { line.path.as_str() } else { line.path.strip_prefix(&mount.root)? };
        let relative = relative.trim_start_matches('/');
        Some(if relative.is_empty() { mount.mount_point.clone() } else { mount.mount_point.join(relative) })
    })
}

/// The cgroup directories of `pid` that belong to container `name`.
fn own_cgroup_dirs_of(pid: i32, name: &str) -> Vec<PathBuf> {
    let mounts = cgroup_mounts();
    let suffix = format!("/{TESTBED_CGROUP}/{name}");
    cgroup_lines(pid)
        .iter()
        .filter(|line| line.path.ends_with(&suffix))
        .filter_map(|line| cgroup_dir(line, &mounts))
        .collect()
}
