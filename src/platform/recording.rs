//! A recording double of [`Kernel`] for unit tests: it simulates the
//! little state the pipeline reads back (one container process in /proc,
//! credentials and capabilities, the fork's outcome) and records every call
//! as one readable line, so that a test can assert the whole sequence of a
//! delivery without root. Descriptors it hands out are real ones on
//! /dev/null, labelled, so that types stay those of the real kernel.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::kernel::{
    BootClock, DirProbe, Ending, FileId, Kernel, Observed, ProcEntry, CGROUP2_SUPER_MAGIC, INIT_CGROUP_NS_INODE,
};
use super::secure_file::{TrustedDir, TrustedFile, Untrusted};
use super::sys::{CapSets, ExecWords};

/// What `exit` panics with, so a test can catch the child's end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Exited(pub(crate) i32);

/// The container process the double's /proc shows.
#[derive(Debug, Clone)]
pub(crate) struct FakeProcess {
    pub(crate) pid: i32,
    /// Field 22 of stat.
    pub(crate) start_ticks: u64,
    pub(crate) cgroup: String,
    /// The namespaces whose identity differs from ours: (kind, inode).
    pub(crate) foreign: Vec<(&'static str, u64)>,
    /// The owner of its user namespace.
    pub(crate) userns_owner: u32,
    pub(crate) uid_map: String,
    pub(crate) gid_map: String,
    /// The identity of its root directory (the host's is (8, 1)).
    pub(crate) root: FileId,
    /// Its pid in each pid namespace, outermost first (`NSpid`).
    pub(crate) ns_pids: Vec<i32>,
}

impl FakeProcess {
    /// A container init with its own user, mnt, pid, net, ipc and uts
    /// namespaces and one cgroup in v2 and one in v1 (cpu).
    pub(crate) fn container(pid: i32) -> FakeProcess {
        FakeProcess {
            pid,
            start_ticks: 500,
            cgroup: "4:cpu,cpuacct:/ct/alice\n0::/ct/alice\n".into(),
            foreign: vec![("ipc", 91), ("uts", 92), ("net", 93), ("pid", 94), ("mnt", 95), ("user", 97)],
            userns_owner: 0,
            uid_map: "0 100000 65536\n".into(),
            gid_map: "0 100000 65536\n".into(),
            root: (8, 2),
            ns_pids: vec![pid, 1],
        }
    }
}

/// Which side of `spawn` a test follows: the parent (with the child's pid),
/// or the child (its steps run, and end in `exit` or `execve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    Parent(i32),
    Child,
}

pub(crate) struct Recording {
    /// Every call, in order.
    pub(crate) calls: Vec<String>,
    /// The pidfile's contents and last write (ns since the epoch); None:
    /// there is none.
    pub(crate) pidfile: Option<(Vec<u8>, i128)>,
    /// Other trusted files (an engine's state), by path: contents and last
    /// write; they take precedence over `pidfile`.
    pub(crate) files: HashMap<PathBuf, (Vec<u8>, i128)>,
    /// Trusted directories and their entries.
    pub(crate) dirs: HashMap<PathBuf, Vec<String>>,
    pub(crate) process: Option<FakeProcess>,
    /// More processes (a cgroup's other members).
    pub(crate) others: Vec<FakeProcess>,
    pub(crate) mountinfo: String,
    /// The host directories `probe_dir` finds, with what they are; any
    /// other does not exist. As on a hybrid host: a tmpfs at /sys/fs/cgroup
    /// and cgroup2's root at /sys/fs/cgroup/unified.
    pub(crate) probed: HashMap<PathBuf, DirProbe>,
    /// The inode of our cgroup namespace (the initial one's by default).
    pub(crate) own_cgroup_ns: u64,
    /// Our own /proc/self/cgroup: the root cgroup in every hierarchy.
    pub(crate) own_cgroups: String,
    /// Wall-clock time at boot (ns) and ticks per second.
    pub(crate) boot: (i128, i128),
    /// Kernel features that are missing (ENOSYS): "pidfd", "clone3",
    /// "close_range".
    pub(crate) missing: Vec<&'static str>,
    /// A call (its first word) that fails with EPERM.
    pub(crate) fail: Option<&'static str>,
    /// Which side of `spawn` the test follows.
    pub(crate) fork_as: Forked,
    /// The child's credentials and capabilities, changed by the drop.
    pub(crate) state: Observed,
    /// A bounding set the kernel silently leaves behind.
    pub(crate) leave_bounding: u64,
    /// Whether capset really changes the sets.
    pub(crate) capset_works: bool,
    /// What the parent reads from its end of the channel.
    pub(crate) report: Vec<u8>,
    pub(crate) ending: Ending,
    /// The errno exec fails with.
    pub(crate) exec_errno: i32,
    /// Whether we have a controlling terminal.
    pub(crate) terminal: bool,
    labels: HashMap<RawFd, String>,
    held: Vec<OwnedFd>,
}

const FULL_BOUNDING: u64 = u64::MAX >> 23;
/// `f_type` of tmpfs (linux/magic.h).
pub(crate) const TMPFS_MAGIC: u64 = 0x0102_1994;

impl Recording {
    /// A kernel with every feature, a container at pid 4711 named by a
    /// pidfile written after it started, and cagepipe holding its file
    /// capabilities as the Exim user.
    pub(crate) fn new() -> Recording {
        Recording {
            calls: Vec::new(),
            pidfile: Some((b"4711\n".to_vec(), 1_000_000_000_000 + 6 * 1_000_000_000)),
            files: HashMap::new(),
            dirs: HashMap::new(),
            process: Some(FakeProcess::container(4711)),
            others: Vec::new(),
            own_cgroups: "4:cpu,cpuacct:/\n0::/\n".into(),
            mountinfo: "30 1 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                        31 1 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                .into(),
            probed: HashMap::from([
                (PathBuf::from("/sys/fs/cgroup"), DirProbe { magic: TMPFS_MAGIC, inode: 1 }),
                (PathBuf::from("/sys/fs/cgroup/unified"), DirProbe { magic: CGROUP2_SUPER_MAGIC, inode: 1 }),
            ]),
            own_cgroup_ns: INIT_CGROUP_NS_INODE,
            boot: (1_000_000_000_000, 100),
            missing: Vec::new(),
            fail: None,
            fork_as: Forked::Parent(5000),
            state: Observed {
                uids: [101; 3],
                gids: [901; 3],
                groups: vec![901],
                caps: CapSets { effective: 0, permitted: crate::deliver::privileges::required_mask(), inheritable: 0 },
                ambient: 0,
                bounding: FULL_BOUNDING,
                no_new_privs: false,
                dumpable: true,
            },
            leave_bounding: 0,
            capset_works: true,
            report: Vec::new(),
            ending: Ending::Exited(0),
            exec_errno: libc::ENOENT,
            terminal: false,
            labels: HashMap::new(),
            held: Vec::new(),
        }
    }

    /// The same on a host that uses cgroup v2 alone (systemd's default):
    /// cgroup2's root at /sys/fs/cgroup, no v1 hierarchy, the container in
    /// a cgroup of its own.
    pub(crate) fn pure_v2() -> Recording {
        let mut k = Recording::new();
        k.process.as_mut().expect("the container").cgroup = "0::/ct/alice\n".into();
        k.own_cgroups = "0::/\n".into();
        k.mountinfo = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n".into();
        k.probed =
            HashMap::from([(PathBuf::from("/sys/fs/cgroup"), DirProbe { magic: CGROUP2_SUPER_MAGIC, inode: 1 })]);
        k
    }

    fn record(&mut self, line: String) -> io::Result<()> {
        let word = line.split(' ').next().unwrap_or("").to_string();
        self.calls.push(line);
        if self.fail == Some(word.as_str()) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }

    fn fd(&mut self, label: String) -> OwnedFd {
        let fd: OwnedFd = std::fs::File::open("/dev/null").expect("/dev/null").into();
        self.labels.insert(fd.as_raw_fd(), label);
        fd
    }

    fn label(&self, fd: BorrowedFd<'_>) -> String {
        self.labels.get(&fd.as_raw_fd()).cloned().unwrap_or_else(|| format!("fd{}", fd.as_raw_fd()))
    }

    fn missing(&self, feature: &str) -> bool {
        self.missing.contains(&feature)
    }

    fn process(&self, pid: i32) -> Result<&FakeProcess, Errno> {
        self.process.iter().chain(&self.others).find(|p| p.pid == pid).ok_or(Errno::ENOENT)
    }

    fn proc_pid(&self, dir: BorrowedFd<'_>) -> i32 {
        self.label(dir).trim_start_matches("/proc/").parse().unwrap_or(0)
    }

    /// Capability numbers in a mask, for the record.
    fn caps(mask: u64) -> String {
        let n: Vec<String> = (0..64).filter(|c| mask & (1 << c) != 0).map(|c: u32| c.to_string()).collect();
        n.join(",")
    }

    /// The calls whose first word is one of `words`.
    pub(crate) fn calls_of(&self, words: &[&str]) -> Vec<&str> {
        self.calls
            .iter()
            .map(String::as_str)
            .filter(|c| words.iter().any(|w| c.split(' ').next() == Some(*w)))
            .collect()
    }
}

impl Kernel for Recording {
    fn read_trusted(&mut self, path: &Path, _max: usize) -> Result<TrustedFile, Untrusted> {
        let _ = self.record(format!("read_trusted {}", path.display()));
        if let Some((contents, written_ns)) = self.files.get(path) {
            return Ok(TrustedFile { contents: contents.clone(), written_ns: *written_ns });
        }
        if !self.files.is_empty() {
            return Err(Untrusted::Missing(PathBuf::from(path)));
        }
        match &self.pidfile {
            Some((contents, written_ns)) => Ok(TrustedFile { contents: contents.clone(), written_ns: *written_ns }),
            None => Err(Untrusted::Missing(PathBuf::from(path))),
        }
    }
    fn open_trusted_dir(&mut self, dir: &Path, _max: usize) -> Result<TrustedDir, Untrusted> {
        let _ = self.record(format!("open_trusted_dir {}", dir.display()));
        // A directory is there if it is listed, or holds a file.
        let names = match self.dirs.get(dir) {
            Some(names) => names.clone(),
            None if self.files.keys().any(|f| f.starts_with(dir)) => Vec::new(),
            None => return Err(Untrusted::Missing(PathBuf::from(dir))),
        };
        let fd = self.fd(dir.display().to_string());
        Ok(TrustedDir { path: dir.into(), entries: names.into_iter().map(|n| (n, true)).collect(), fd })
    }
    fn read_trusted_in(&mut self, dir: &TrustedDir, rel: &Path, _max: usize) -> Result<TrustedFile, Untrusted> {
        let label = self.label(std::os::fd::AsFd::as_fd(&dir.fd));
        let _ = self.record(format!("read_trusted_in {label} {}", rel.display()));
        let path = dir.path.join(rel);
        match self.files.get(&path) {
            Some((contents, written_ns)) => Ok(TrustedFile { contents: contents.clone(), written_ns: *written_ns }),
            None => Err(Untrusted::Missing(path)),
        }
    }
    fn pidfd_open(&mut self, pid: i32) -> io::Result<OwnedFd> {
        self.record(format!("pidfd_open {pid}"))?;
        if self.missing("pidfd") {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        self.process(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        Ok(self.fd("pidfd".into()))
    }
    fn pidfd_alive(&mut self, pidfd: BorrowedFd<'_>) -> io::Result<()> {
        let label = self.label(pidfd);
        self.record(format!("pidfd_alive {label}"))
    }
    fn open_proc(&mut self, pid: i32) -> Result<OwnedFd, Errno> {
        let _ = self.record(format!("open_proc {pid}"));
        self.process(pid)?;
        Ok(self.fd(format!("/proc/{pid}")))
    }
    fn read_proc(&mut self, dir: BorrowedFd<'_>, name: &str, _max: usize) -> Result<Vec<u8>, Errno> {
        let pid = self.proc_pid(dir);
        let _ = self.record(format!("read_proc {pid}/{name}"));
        let p = self.process(pid)?;
        Ok(match name {
            "stat" => format!(
                "{pid} (init) S 0 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
                p.start_ticks
            )
            .into_bytes(),
            "cgroup" => p.cgroup.clone().into_bytes(),
            "status" => format!(
                "Name:\tinit\nPid:\t{pid}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nNSpid:\t{}\nThreads:\t1\n\
                 CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n",
                p.ns_pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\t")
            )
            .into_bytes(),
            "uid_map" => p.uid_map.clone().into_bytes(),
            "gid_map" => p.gid_map.clone().into_bytes(),
            "setgroups" => b"allow\n".to_vec(),
            _ => return Err(Errno::ENOENT),
        })
    }
    fn open_proc_entry(&mut self, dir: BorrowedFd<'_>, entry: ProcEntry<'_>) -> Result<(OwnedFd, FileId), Errno> {
        let pid = self.proc_pid(dir);
        let p = self.process(pid)?.clone();
        match entry {
            ProcEntry::Namespace(kind) => {
                let _ = self.record(format!("open_proc_entry {pid}/ns/{kind}"));
                let inode = p.foreign.iter().find(|(k, _)| *k == kind).map_or(own_ns(kind), |(_, i)| *i);
                Ok((self.fd(format!("ns/{kind}")), (3, inode)))
            }
            ProcEntry::Root => {
                let _ = self.record(format!("open_proc_entry {pid}/root"));
                Ok((self.fd("root".into()), p.root))
            }
        }
    }
    fn proc_identity(&mut self, dir: BorrowedFd<'_>, name: &str) -> Result<FileId, Errno> {
        let pid = self.proc_pid(dir);
        let p = self.process(pid)?.clone();
        let _ = self.record(format!("proc_identity {pid}/{name}"));
        let kind = name.strip_prefix("ns/").ok_or(Errno::ENOENT)?;
        Ok((3, p.foreign.iter().find(|(k, _)| *k == kind).map_or(own_ns(kind), |(_, i)| *i)))
    }
    fn identity(&mut self, path: &Path) -> Result<FileId, Errno> {
        let _ = self.record(format!("identity {}", path.display()));
        let text = path.to_string_lossy();
        match text.strip_prefix("/proc/self/ns/").or_else(|| text.strip_prefix("/proc/1/ns/")) {
            Some("time") if self.missing("timens") => Err(Errno::ENOENT),
            Some("cgroup") if self.missing("cgroupns") => Err(Errno::ENOENT),
            Some("cgroup") if text.starts_with("/proc/self/") => Ok((3, self.own_cgroup_ns)),
            Some(kind) => Ok((3, own_ns(kind))),
            // "/" and /proc/1/root: the host's root directory.
            None => Ok((8, 1)),
        }
    }
    fn ns_owner_uid(&mut self, ns: BorrowedFd<'_>) -> io::Result<u32> {
        let label = self.label(ns);
        self.record(format!("ns_owner_uid {label}"))?;
        Ok(self.process.as_ref().map_or(0, |p| p.userns_owner))
    }
    fn mountinfo(&mut self) -> io::Result<Vec<u8>> {
        self.record("mountinfo".into())?;
        Ok(self.mountinfo.clone().into_bytes())
    }
    fn probe_dir(&mut self, dir: &Path) -> Result<DirProbe, Untrusted> {
        let _ = self.record(format!("probe_dir {}", dir.display()));
        self.probed.get(dir).copied().ok_or_else(|| Untrusted::Missing(dir.into()))
    }
    fn own_cgroups(&mut self) -> io::Result<Vec<u8>> {
        self.record("own_cgroups".into())?;
        Ok(self.own_cgroups.clone().into_bytes())
    }
    fn boot_clock(&mut self) -> io::Result<BootClock> {
        self.record("boot_clock".into())?;
        Ok(BootClock { offset_ns: self.boot.0, ticks_per_s: self.boot.1, slack_ns: 4_000_000 })
    }
    fn capget(&mut self) -> io::Result<CapSets> {
        Ok(self.state.caps)
    }
    fn capset(&mut self, sets: CapSets) -> io::Result<()> {
        self.record(format!("capset effective={}", Self::caps(sets.effective)))?;
        if self.capset_works {
            self.state.caps = sets;
        }
        Ok(())
    }
    fn open_cgroup(&mut self, dir: &Path, v2: bool) -> io::Result<OwnedFd> {
        let what = if v2 { dir.display().to_string() } else { format!("{}/tasks", dir.display()) };
        self.record(format!("open_cgroup {what}"))?;
        Ok(self.fd(what))
    }
    fn setns(&mut self, fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
        let label = self.label(fd);
        let kinds: Vec<&str> =
            crate::deliver::namespace::ENTER_ORDER.iter().filter(|k| flags & k.flag != 0).map(|k| k.name).collect();
        self.record(format!("setns {label} {}", kinds.join("+")))
    }
    fn chroot(&mut self, root: BorrowedFd<'_>) -> io::Result<()> {
        let label = self.label(root);
        self.record(format!("chroot {label}"))
    }
    fn channel(&mut self) -> io::Result<(OwnedFd, OwnedFd)> {
        self.record("channel".into())?;
        Ok((self.fd("parent-end".into()), self.fd("child-end".into())))
    }
    fn spawn(
        &mut self,
        into_cgroup: Option<BorrowedFd<'_>>,
        share_memory: bool,
        child: &mut dyn FnMut(&mut Self) -> Infallible,
    ) -> io::Result<i32> {
        let shared = if share_memory { " sharing memory" } else { "" };
        match into_cgroup {
            Some(dir) => {
                let label = self.label(dir);
                self.record(format!("clone3 into {label}{shared}"))?;
                if self.missing("clone3") {
                    return Err(io::Error::from_raw_os_error(libc::ENOSYS));
                }
            }
            None if share_memory && !self.missing("clone3") => self.record(format!("clone3{shared}"))?,
            None => self.record("fork".into())?,
        }
        match self.fork_as {
            Forked::Parent(pid) => Ok(pid),
            Forked::Child => super::sys::run(&mut || child(self)),
        }
    }
    fn join_cgroup(&mut self, fd: BorrowedFd<'_>, v2: bool) -> io::Result<()> {
        let label = self.label(fd);
        let file = if v2 { format!("{label}/cgroup.procs") } else { label };
        self.record(format!("join_cgroup {file}"))
    }
    fn has_controlling_terminal(&mut self) -> bool {
        let _ = self.record("open /dev/tty".into());
        self.terminal
    }
    fn new_session(&mut self) -> io::Result<()> {
        self.record("setsid".into())
    }
    fn reset_signals(&mut self) -> io::Result<()> {
        self.record("reset_signals".into())
    }
    fn setgroups(&mut self, groups: &[u32]) -> io::Result<()> {
        self.record(format!("setgroups {groups:?}"))?;
        self.state.groups = groups.to_vec();
        Ok(())
    }
    fn setresgid(&mut self, gid: u32) -> io::Result<()> {
        self.record(format!("setresgid {gid}"))?;
        self.state.gids = [gid; 3];
        Ok(())
    }
    fn setresuid(&mut self, uid: u32) -> io::Result<()> {
        self.record(format!("setresuid {uid}"))?;
        self.state.uids = [uid; 3];
        Ok(())
    }
    fn clear_ambient(&mut self) -> io::Result<()> {
        self.record("clear_ambient".into())?;
        self.state.ambient = 0;
        Ok(())
    }
    fn drop_bounding(&mut self) -> io::Result<()> {
        self.record("drop_bounding".into())?;
        self.state.bounding = self.leave_bounding;
        Ok(())
    }
    fn set_non_dumpable(&mut self) -> io::Result<()> {
        self.record("set_non_dumpable".into())?;
        self.state.dumpable = false;
        Ok(())
    }
    fn set_no_new_privs(&mut self) -> io::Result<()> {
        self.record("set_no_new_privs".into())?;
        self.state.no_new_privs = true;
        Ok(())
    }
    fn observe(&mut self) -> io::Result<Observed> {
        self.record("observe".into())?;
        Ok(self.state.clone())
    }
    fn set_parent_death_signal(&mut self) -> io::Result<()> {
        self.record("set_parent_death_signal".into())
    }
    fn parent_alive(&mut self, _ours: BorrowedFd<'_>) -> bool {
        self.record("parent_alive".into()).is_ok()
    }
    fn chdir(&mut self, dir: &CStr) -> io::Result<()> {
        self.record(format!("chdir {}", dir.to_string_lossy()))
    }
    fn restrict_self(&mut self, plan: &crate::deliver::sandbox::Plan) -> crate::error::Result<String> {
        let _ = self.record(format!("restrict_self write={} execute={}", plan.write.len(), plan.execute.len()));
        Ok("enforced".into())
    }
    fn close_range(&mut self, first: u32, last: u32) -> io::Result<()> {
        self.record(format!("close_range {first} {last}"))?;
        if self.missing("close_range") {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        Ok(())
    }
    fn close(&mut self, fd: RawFd) {
        if let Some(label) = self.labels.get(&fd).cloned() {
            let _ = self.record(format!("close {label}"));
            return;
        }
        // The walk closes a thousand numbers; one line says where it ended.
        if self.calls.last().is_some_and(|c| c.starts_with("close ")) {
            self.calls.pop();
        }
        let _ = self.record(format!("close ..{fd}"));
    }
    fn execve(&mut self, path: &CStr, argv: &ExecWords, _env: &ExecWords) -> io::Error {
        let args: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let _ = self.record(format!("execve {} [{}]", path.to_string_lossy(), args.join(" ")));
        io::Error::from_raw_os_error(self.exec_errno)
    }
    fn write(&mut self, fd: BorrowedFd<'_>, bytes: &[u8]) {
        let label = self.label(fd);
        let _ = self.record(format!("write {label} {}", String::from_utf8_lossy(bytes).trim_end()));
    }
    fn exit(&mut self, code: i32) -> ! {
        self.calls.push(format!("exit {code}"));
        std::panic::panic_any(Exited(code))
    }
    fn read_to_end(&mut self, fd: OwnedFd, _max: usize) -> Vec<u8> {
        let label = self.label(std::os::fd::AsFd::as_fd(&fd));
        let _ = self.record(format!("read_to_end {label}"));
        self.held.push(fd);
        self.report.clone()
    }
    fn wait(&mut self, pid: i32) -> io::Result<Ending> {
        self.record(format!("wait {pid}"))?;
        Ok(self.ending)
    }
    fn pause(&mut self, ms: u64) {
        let _ = self.record(format!("pause {ms}"));
    }
}

/// The double's identities of our own namespaces.
fn own_ns(kind: &str) -> u64 {
    match kind {
        "ipc" => 11,
        "uts" => 12,
        "net" => 13,
        "pid" => 14,
        "time" => 15,
        "mnt" => 16,
        "cgroup" => INIT_CGROUP_NS_INODE,
        "user" => 18,
        _ => 19,
    }
}
