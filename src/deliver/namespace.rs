//! Which namespaces exist, in which order they are entered, and the two
//! ways of entering them.
#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::platform::kernel::Kernel;
use crate::platform::ns_flag;

/// One kind of namespace: its name under /proc/PID/ns and its clone flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NsKind {
    pub(crate) name: &'static str,
    pub(crate) flag: i32,
    pub(crate) ours: Ours,
}

/// Whether the target's namespace of a kind is compared with ours, and
/// when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ours {
    /// Entered whatever it is: entering the namespace one is in changes
    /// nothing, and looking ours up would cost a call each on every
    /// delivery for nothing.
    NotCompared,
    /// Compared once its file is open: the mount namespace, which decides
    /// whether the target is a container at all.
    Compared,
    /// Compared before its file is opened, which is then opened only when
    /// it differs (one call fewer when shared, one more when not):
    /// containers commonly share it with the host (a time namespace of
    /// their own is rare; root-run Docker and Podman make no user
    /// namespace), and a shared user namespace must not be entered (the
    /// kernel refuses that).
    ComparedFirst,
}

/// The order in which namespaces are entered one by one (the fallback for
/// kernels before 5.8). Everything is entered while cagepipe still holds its
/// capabilities in the initial user namespace, which make it capable in every
/// descendant namespace too; the user namespace comes last because entering
/// it trades those capabilities for capabilities inside the container only.
pub(crate) const ENTER_ORDER: [NsKind; 8] = [
    NsKind { name: "ipc", flag: ns_flag::IPC, ours: Ours::NotCompared },
    NsKind { name: "uts", flag: ns_flag::UTS, ours: Ours::NotCompared },
    NsKind { name: "net", flag: ns_flag::NET, ours: Ours::NotCompared },
    NsKind { name: "pid", flag: ns_flag::PID, ours: Ours::NotCompared },
    NsKind { name: "time", flag: ns_flag::TIME, ours: Ours::ComparedFirst },
    NsKind { name: "mnt", flag: ns_flag::NS, ours: Ours::Compared },
    NsKind { name: "cgroup", flag: ns_flag::CGROUP, ours: Ours::NotCompared },
    NsKind { name: "user", flag: ns_flag::USER, ours: Ours::ComparedFirst },
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

/// A namespace of the target to enter (one that differs from ours, or one
/// not compared: see [`Ours`]), with its file opened on the
/// host's /proc before anything was entered.
#[derive(Debug)]
pub(crate) struct ForeignNs {
    pub(crate) kind: NsKind,
    /// Its identity: the device and inode of its namespace file.
    pub(crate) dev: u64,
    pub(crate) inode: u64,
    pub(crate) file: OwnedFd,
}

/// Enter every namespace in `foreign`, one `setns(file)` each in
/// [`ENTER_ORDER`], through the files opened and checked when the container
/// was resolved: exactly what was verified. (`setns(pidfd, flags)` would
/// enter the namespaces the process has at that moment; an init that
/// unshared a new user namespace in between would hand the command one
/// nobody checked.)
pub(crate) fn enter(k: &mut impl Kernel, foreign: &[&ForeignNs]) -> Result<(), (String, io::Error)> {
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

    use crate::platform::recording::Recording;

    fn flags_of(k: &Recording) -> Vec<String> {
        k.calls_of(&["setns"]).iter().map(|c| c.rsplit(' ').next().unwrap().to_string()).collect()
    }

    fn file() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn foreign(names: &[&str]) -> Vec<ForeignNs> {
        names.iter().map(|n| ForeignNs { kind: kind(n).unwrap(), dev: 3, inode: 1, file: file() }).collect()
    }

    fn ns_file(ns: &[ForeignNs], name: &str) -> i32 {
        ns.iter().find(|n| n.kind.name == name).unwrap().file.as_raw_fd()
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
        let ns_list = &ns;
        let mut k = Recording::new();
        enter(&mut k, &ns.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(flags_of(&k), ["uts", "net", "pid", "mnt", "user"]);
        // Each call used that namespace's own file (fd numbers in the record).
        for (call, ns) in k.calls.iter().zip(["uts", "net", "pid", "mnt", "user"]) {
            let file = ns_file(ns_list, ns);
            assert_eq!(call, &format!("setns fd{file} {ns}"));
        }
    }

    #[test]
    fn the_child_enters_cgroup_and_user_the_parent_the_rest() {
        let ns = foreign(&["user", "cgroup", "mnt", "pid", "net"]);
        let (parent, child) = split(&ns);
        let names = |v: &[&ForeignNs]| v.iter().map(|n| n.kind.name).collect::<Vec<_>>();
        assert_eq!(names(&parent), ["mnt", "pid", "net"]);
        assert_eq!(names(&child), ["user", "cgroup"]);
        let mut k = Recording::new();
        enter(&mut k, &child).unwrap();
        assert_eq!(flags_of(&k), ["cgroup", "user"]);
    }

    #[test]
    fn a_failure_names_the_namespace_and_stops() {
        let ns = foreign(&["net", "mnt"]);
        let mut k = Recording::new();
        k.fail = Some("setns");
        let (what, e) = enter(&mut k, &ns.iter().collect::<Vec<_>>()).unwrap_err();
        assert_eq!(what, "net namespace");
        assert_eq!(e.raw_os_error(), Some(crate::platform::Errno::EPERM as i32));
        assert_eq!(k.calls.len(), 1, "nothing attempted after a failure");
        let mut k = Recording::new();
        enter(&mut k, &[]).unwrap();
        assert!(k.calls.is_empty());
    }
}
