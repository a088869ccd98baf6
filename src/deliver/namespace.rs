//! Which namespaces exist, in which order they are entered, and the two
//! ways of entering them.
#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// One kind of namespace: its name under /proc/PID/ns and its clone flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NsKind {
    pub(crate) name: &'static str,
    pub(crate) flag: libc::c_int,
}

/// The order in which namespaces are entered one by one (the fallback for
/// kernels before 5.8). Everything is entered while cagepipe still holds its
/// capabilities in the initial user namespace, which make it capable in every
/// descendant namespace too; the user namespace comes last because entering
/// it trades those capabilities for capabilities inside the container only.
/// With a pidfd (5.8+) each stage (see [`CHILD_ENTERS`]) is one atomic
/// `setns` and the kernel orders it itself.
pub(crate) const ENTER_ORDER: [NsKind; 8] = [
    NsKind { name: "ipc", flag: libc::CLONE_NEWIPC },
    NsKind { name: "uts", flag: libc::CLONE_NEWUTS },
    NsKind { name: "net", flag: libc::CLONE_NEWNET },
    NsKind { name: "pid", flag: libc::CLONE_NEWPID },
    NsKind { name: "time", flag: libc::CLONE_NEWTIME },
    NsKind { name: "mnt", flag: libc::CLONE_NEWNS },
    NsKind { name: "cgroup", flag: libc::CLONE_NEWCGROUP },
    NsKind { name: "user", flag: libc::CLONE_NEWUSER },
];

/// Namespaces the command's process enters itself, after it was born in the
/// container's cgroup; cagepipe enters all the others before the fork (the
/// pid namespace must be, to be born in it). Placing the child into a
/// cgroup v2 by the host's view needs cagepipe outside the container's
/// cgroup namespace (with `nsdelegate`) and still capable in the initial
/// user namespace (the cgroup files are owned by the host's root).
pub(crate) const CHILD_ENTERS: [&str; 2] = ["cgroup", "user"];

/// Split the target's namespaces into those entered before the fork and
/// those the child enters.
pub(crate) fn split(foreign: &[ForeignNs]) -> (Vec<&ForeignNs>, Vec<&ForeignNs>) {
    foreign.iter().partition(|ns| !CHILD_ENTERS.contains(&ns.kind.name))
}

#[cfg(test)]
pub(crate) fn kind(name: &str) -> Option<NsKind> {
    ENTER_ORDER.iter().copied().find(|k| k.name == name)
}

/// A namespace of the target that differs from ours, with its file opened on
/// the host's /proc before anything was entered.
#[derive(Debug)]
pub(crate) struct ForeignNs {
    pub(crate) kind: NsKind,
    pub(crate) inode: u64,
    pub(crate) file: OwnedFd,
}

/// How namespaces get entered; the kernel operations behind the seam.
pub(crate) trait Setns {
    fn setns(&mut self, fd: std::os::fd::BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()>;
}

/// Enter every namespace in `foreign`: with one `setns(pidfd, flags)` when a
/// pidfd is given, else one `setns(file)` each in [`ENTER_ORDER`].
pub(crate) fn enter(k: &mut impl Setns, pidfd: Option<&OwnedFd>, foreign: &[&ForeignNs]) -> Result<(), (String, io::Error)> {
    if foreign.is_empty() {
        return Ok(());
    }
    if let Some(pidfd) = pidfd {
        let flags = foreign.iter().fold(0, |acc, ns| acc | ns.kind.flag);
        let names: Vec<&str> = foreign.iter().map(|ns| ns.kind.name).collect();
        return k.setns(pidfd.as_fd(), flags).map_err(|e| (format!("namespaces {} (via pidfd)", names.join(",")), e));
    }
    for kind in ENTER_ORDER {
        if let Some(ns) = foreign.iter().find(|ns| ns.kind == kind) {
            k.setns(ns.file.as_fd(), kind.flag).map_err(|e| (format!("{} namespace", kind.name), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[derive(Default)]
    struct Recorder {
        calls: Vec<(i32, libc::c_int)>,
        fail_on: Option<libc::c_int>,
    }
    impl Setns for Recorder {
        fn setns(&mut self, fd: std::os::fd::BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()> {
            self.calls.push((fd.as_raw_fd(), flags));
            if self.fail_on == Some(flags) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
    }

    fn file() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn foreign(names: &[&str]) -> Vec<ForeignNs> {
        names.iter().map(|n| ForeignNs { kind: kind(n).unwrap(), inode: 1, file: file() }).collect()
    }

    #[test]
    fn order_is_complete_and_user_is_last() {
        let names: Vec<_> = ENTER_ORDER.iter().map(|k| k.name).collect();
        assert_eq!(names.last(), Some(&"user"));
        assert_eq!(&names[names.len() - 3..], ["mnt", "cgroup", "user"]);
        let all = ENTER_ORDER.iter().fold(0, |a, k| a | k.flag);
        assert_eq!(all.count_ones(), 8, "eight distinct flags");
    }

    #[test]
    fn fallback_enters_one_by_one_in_order_whatever_the_input_order() {
        let ns = foreign(&["user", "mnt", "net", "pid", "uts"]);
        let mut r = Recorder::default();
        enter(&mut r, None, &ns.iter().collect::<Vec<_>>()).unwrap();
        let flags: Vec<_> = r.calls.iter().map(|c| c.1).collect();
        assert_eq!(
            flags,
            vec![libc::CLONE_NEWUTS, libc::CLONE_NEWNET, libc::CLONE_NEWPID, libc::CLONE_NEWNS, libc::CLONE_NEWUSER]
        );
        // Each call used that namespace's own file.
        for (fd, flag) in &r.calls {
            let ns = ns.iter().find(|n| n.kind.flag == *flag).unwrap();
            assert_eq!(*fd, ns.file.as_raw_fd());
        }
    }

    #[test]
    fn pidfd_enters_all_at_once() {
        let ns = foreign(&["mnt", "pid", "user"]);
        let pidfd = file();
        let mut r = Recorder::default();
        enter(&mut r, Some(&pidfd), &ns.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(r.calls, vec![(pidfd.as_raw_fd(), libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUSER)]);
    }

    #[test]
    fn the_child_enters_cgroup_and_user_the_parent_the_rest() {
        let ns = foreign(&["user", "cgroup", "mnt", "pid", "net"]);
        let (parent, child) = split(&ns);
        let names = |v: &[&ForeignNs]| v.iter().map(|n| n.kind.name).collect::<Vec<_>>();
        assert_eq!(names(&parent), ["mnt", "pid", "net"]);
        assert_eq!(names(&child), ["user", "cgroup"]);
        let mut r = Recorder::default();
        enter(&mut r, None, &child).unwrap();
        assert_eq!(r.calls.iter().map(|c| c.1).collect::<Vec<_>>(), [libc::CLONE_NEWCGROUP, libc::CLONE_NEWUSER]);
    }

    #[test]
    fn a_failure_names_the_namespace_and_stops() {
        let ns = foreign(&["net", "mnt", "user"]);
        let mut r = Recorder { fail_on: Some(libc::CLONE_NEWNS), ..Default::default() };
        let (what, e) = enter(&mut r, None, &ns.iter().collect::<Vec<_>>()).unwrap_err();
        assert_eq!(what, "mnt namespace");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert_eq!(r.calls.len(), 2, "user namespace not attempted after a failure");
        let mut r = Recorder::default();
        enter(&mut r, None, &[]).unwrap();
        assert!(r.calls.is_empty());
    }
}
