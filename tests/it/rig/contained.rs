//! What must hold inside for any delivery into a container, and what a
//! refusal looks like.

use super::cagepipe::Delivery;
use super::container::{cgroup_lines, host_ns_inode, Container};
use super::probe::{parse_report, Marker, Report};

/// Every namespace kind a process has (`/proc/PID/ns`, as the probe reports
/// them as `ns_<kind>`).
pub const NAMESPACES: [&str; 8] = ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"];

/// What a report from a command contained in a container says, taken from
/// the container while it runs (so that reports can be judged after it
/// stopped): see [`assert_contained`].
#[derive(Debug, Clone)]
pub struct Inside {
    name: String,
    /// `(kind, inode, whose)` for every kind in [`NAMESPACES`].
    namespaces: Vec<(&'static str, u64, &'static str)>,
    /// `ID:CONTROLLERS:/` of every hierarchy the container's init is in.
    cgroups: Vec<String>,
    /// How many hierarchies the container has a cgroup of its own in.
    hierarchies: usize,
    uid: u32,
    gid: u32,
}

impl Inside {
    pub fn of(c: &Container, uid: u32, gid: u32) -> Inside {
        let namespaces = NAMESPACES
            .iter()
            .map(|&kind| {
                let theirs = c.ns_inode(kind);
                (
                    kind,
                    theirs,
                    if theirs != host_ns_inode(kind) { "the container's own" } else { "the host's (shared)" },
                )
            })
            .collect();
        let cgroups = cgroup_lines(c.pid).iter().map(|l| format!("{}:{}:/", l.hierarchy, l.controllers)).collect();
        Inside { name: c.name.clone(), namespaces, cgroups, hierarchies: c.cgroup_dirs().len(), uid, gid }
    }

    /// What in `r` says otherwise, one line each (empty: contained).
    pub fn differences(&self, r: &Report) -> Vec<String> {
        let mut wrong = Vec::new();
        let get = |k: &str| r.get(k).map_or("(missing)", String::as_str);
        let mut expect = |key: &str, want: &str, what: &str| {
            if get(key) != want {
                wrong.push(format!("{key} is {:?}, not {want:?}: {what}", get(key)));
            }
        };
        for (kind, inode, whose) in &self.namespaces {
            expect(&format!("ns_{kind}"), &inode.to_string(), &format!("{kind} namespace is {whose}"));
        }
        expect("hostname", &self.name, "the container's hostname");
        expect("home_marker", &self.name, "the files seen are the container's, not the host's");
        for k in ["uid", "euid", "suid", "fsuid"] {
            expect(k, &self.uid.to_string(), "the user's uid inside");
        }
        for k in ["gid", "egid", "sgid", "fsgid"] {
            expect(k, &self.gid.to_string(), "the user's gid inside");
        }
        for k in ["cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"] {
            expect(k, "0000000000000000", "no capability");
        }
        expect("no_new_privs", "1", "no_new_privs is set");
        expect("fds", "0,1,2", "only the standard descriptors");
        expect("sig_ign", "0000000000000000", "Exim's ignored signals were reset");
        expect("sig_blk", "0000000000000000", "the signal mask is empty");
        // In the container's cgroup namespace its own cgroups are "/": a
        // process in any other cgroup would see "/../x".
        let mut lines: Vec<&str> = get("cgroup").split(';').collect();
        lines.sort_unstable();
        let mut own: Vec<&str> = self.cgroups.iter().map(String::as_str).collect();
        own.sort_unstable();
        // One line for each hierarchy the container has a cgroup in: v2 and
        // every v1 one on a hybrid host, v2 or v1 alone on the others
        // (testbed/vm's layouts).
        if lines != own || self.hierarchies == 0 || own.len() != self.hierarchies {
            wrong.push(format!(
                "cgroup is {:?}, not the container's own in each of its {} hierarchies {own:?}",
                get("cgroup"),
                self.hierarchies
            ));
        }
        wrong
    }
}

/// The report `r` came from a command run inside `c` as the user whose ids
/// inside are `uid` and `gid`, with nothing else:
/// - every namespace the container has of its own is the container's, and
///   every one it shares with the host is the host's;
/// - its hostname, and files in its home (`home_marker`), are the
///   container's;
/// - it is in the container's own cgroup in every hierarchy the container
///   has (v2 and v1 on a hybrid host, one of them alone elsewhere), and in
///   no other (in the container's cgroup namespace each reads "/");
/// - all eight ids are the user's, all five capability sets are empty,
///   `no_new_privs` is set, only descriptors 0-2 are open, and no signal is
///   ignored or blocked.
pub fn assert_contained(c: &Container, r: &Report, uid: u32, gid: u32) {
    let wrong = Inside::of(c, uid, gid).differences(r);
    assert!(wrong.is_empty(), "not contained in {}:\n  {}\nreport: {r:#?}", c.name, wrong.join("\n  "));
}

/// [`assert_contained`] for `user` as the container's /etc/passwd knows it.
pub fn assert_contained_as(c: &Container, user: &str, r: &Report) {
    let (uid, gid) = c.inside_ids(user);
    assert_contained(c, r, uid, gid);
}

/// The delivery succeeded; the probe's report from its stdout.
pub fn report(d: &Delivery) -> Report {
    assert_eq!(d.code(), Some(0), "delivery failed: {d:?}");
    parse_report(&d.stdout)
}

/// The delivery was refused with `code` and a message saying `words`, and
/// printed nothing.
pub fn assert_refused(d: &Delivery, code: i32, words: &str) {
    assert_eq!(d.code(), Some(code), "{words}: {d:?}");
    assert!(d.stderr.contains(words), "stderr should say {words:?}: {}", d.stderr);
    assert!(d.stdout.is_empty(), "nothing ran: {d:?}");
}

impl Marker {
    /// [`assert_refused`], and the command given `--mark` never ran.
    pub fn assert_refused(&self, d: &Delivery, code: i32, words: &str) {
        assert_refused(d, code, words);
        self.assert_absent();
    }
}
