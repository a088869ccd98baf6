//! Capabilities: which ones cagepipe holds and why, raising them only around
//! the call that needs them, and the one linear function that drops every
//! privilege before exec and then verifies that it did.
#![forbid(unsafe_code)]

use std::io;

use nix::unistd::{Gid, Uid};

use crate::error::{Error, Result};
use crate::platform::sys::{self, CapSets};

/// A capability cagepipe needs, with the reason it is in the file caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap {
    pub(crate) number: u32,
    pub(crate) name: &'static str,
    pub(crate) why: &'static str,
}

pub(crate) const CAP_DAC_OVERRIDE: Cap =
    Cap { number: 1, name: "cap_dac_override", why: "write the container's root-owned cgroup.procs files" };
pub(crate) const CAP_SETGID: Cap =
    Cap { number: 6, name: "cap_setgid", why: "give the command the user's own primary and supplementary groups" };
pub(crate) const CAP_SETPCAP: Cap = Cap { number: 8, name: "cap_setpcap", why: "empty the bounding set before exec" };
pub(crate) const CAP_SYS_CHROOT: Cap =
    Cap { number: 18, name: "cap_sys_chroot", why: "setns into a mount namespace and chroot to the container's root" };
pub(crate) const CAP_SYS_PTRACE: Cap = Cap {
    number: 19,
    name: "cap_sys_ptrace",
    why: "open /proc/PID/ns/* and /proc/PID/root of a process owned by root",
};
pub(crate) const CAP_SYS_ADMIN: Cap = Cap { number: 21, name: "cap_sys_admin", why: "setns into the container's namespaces" };

/// The file capabilities the binary is installed with (permitted only).
pub(crate) const REQUIRED: [Cap; 6] =
    [CAP_DAC_OVERRIDE, CAP_SETGID, CAP_SETPCAP, CAP_SYS_CHROOT, CAP_SYS_PTRACE, CAP_SYS_ADMIN];

pub(crate) fn mask(caps: &[Cap]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1u64 << c.number))
}

/// The `setcap` argument for installing the binary.
pub(crate) fn setcap_text() -> String {
    let names: Vec<&str> = REQUIRED.iter().map(|c| c.name).collect();
    format!("{}=p", names.join(","))
}

/// Run `f` with `caps` raised into the effective set, then lower them again.
pub(crate) fn with_caps<T>(caps: &[Cap], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let before = sys::capget().map_err(|e| Error::io("reading capabilities", e))?;
    let wanted = mask(caps) & before.permitted;
    if wanted != mask(caps) {
        return Err(Error::SelfCheck(format!(
            "capabilities missing from the permitted set: {}",
            missing_names(before.permitted, caps)
        )));
    }
    if before.effective & wanted != wanted {
        sys::capset(CapSets { effective: before.effective | wanted, ..before })
            .map_err(|e| Error::io("raising capabilities", e))?;
    }
    let out = f();
    // Lower only what was not effective before, within whatever credentials
    // are current now (entering a user namespace replaces them).
    if let Ok(now) = sys::capget() {
        let lowered = now.effective & !(wanted & !before.effective);
        if lowered != now.effective {
            sys::capset(CapSets { effective: lowered, ..now }).map_err(|e| Error::io("lowering capabilities", e))?;
        }
    }
    out
}

pub(crate) fn missing_names(permitted: u64, caps: &[Cap]) -> String {
    let names: Vec<&str> = caps.iter().filter(|c| permitted & (1u64 << c.number) == 0).map(|c| c.name).collect();
    names.join(", ")
}

/// The identity the command runs with, as ids valid where it runs (inside
/// the container's user namespace when it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Sorted, without duplicates.
    pub(crate) groups: Vec<u32>,
}

/// What the kernel says about the current process, read back after the drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) uids: [u32; 3],
    pub(crate) gids: [u32; 3],
    pub(crate) groups: Vec<u32>,
    pub(crate) caps: CapSets,
    pub(crate) ambient: u64,
    pub(crate) bounding: u64,
    pub(crate) no_new_privs: bool,
    pub(crate) dumpable: bool,
}

/// The kernel operations of the drop, behind a seam for unit tests.
pub(crate) trait DropOps {
    fn reset_signals(&mut self) -> io::Result<()>;
    fn raise_permitted(&mut self) -> io::Result<()>;
    fn setgroups(&mut self, groups: &[u32]) -> io::Result<()>;
    fn setresgid(&mut self, gid: u32) -> io::Result<()>;
    fn clear_ambient(&mut self) -> io::Result<()>;
    fn drop_bounding(&mut self) -> io::Result<()>;
    fn setresuid(&mut self, uid: u32) -> io::Result<()>;
    fn set_non_dumpable(&mut self) -> io::Result<()>;
    fn clear_capabilities(&mut self) -> io::Result<()>;
    fn set_no_new_privs(&mut self) -> io::Result<()>;
    fn observe(&mut self) -> io::Result<Observed>;
}

/// Drop every privilege, in the only order that works for every caller
/// (Exim's uid with file caps, root with --user, a user namespace):
/// groups and gid while CAP_SETGID is there, bounding set while CAP_SETPCAP
/// is there, the uid after those (from root it would clear the capabilities
/// the earlier steps need), the remaining capability sets, then
/// no_new_privs. Then read everything back and refuse on any difference.
///
/// The process is made non-dumpable once the ids are final: changing them
/// resets that flag to `fs.suid_dumpable`, and where an administrator set
/// it to 1 the child would otherwise be open to ptrace, /proc/PID/fd and
/// pidfd_getfd by the user's own processes inside the container until the
/// exec, while it still holds descriptors of the host (CVE-2016-9962).
/// Dropping capabilities afterwards does not reset it; exec does, for the
/// command.
pub(crate) fn drop_privileges(k: &mut impl DropOps, want: &Credentials) -> Result<()> {
    let step = |what: &str, r: io::Result<()>| r.map_err(|e| Error::Privileges(format!("{what}: {e}")));
    step("resetting signal dispositions and mask", k.reset_signals())?;
    step("raising the permitted capabilities", k.raise_permitted())?;
    step("setgroups", k.setgroups(&want.groups))?;
    step("setresgid", k.setresgid(want.gid))?;
    step("clearing the ambient set", k.clear_ambient())?;
    step("emptying the bounding set", k.drop_bounding())?;
    step("setresuid", k.setresuid(want.uid))?;
    step("making the process non-dumpable", k.set_non_dumpable())?;
    step("clearing the capability sets", k.clear_capabilities())?;
    step("setting no_new_privs", k.set_no_new_privs())?;
    let seen = k.observe().map_err(|e| Error::Privileges(format!("reading back credentials: {e}")))?;
    verify(&seen, want)
}

/// For an account not yet contained (`[rollout]`): become the user on the
/// host as Exim would have made the command without cagepipe, and nothing
/// more. The capability sets are emptied (the permitted file capabilities
/// would otherwise survive until exec), but the bounding set stays full and
/// no_new_privs stays off, as for any process of the user: a handler that
/// mails a reply through a set-uid `sendmail` must keep working until its
/// account is contained. The same order as [`drop_privileges`], then the
/// same read-back.
pub(crate) fn drop_to_host_user(k: &mut impl DropOps, want: &Credentials) -> Result<()> {
    let step = |what: &str, r: io::Result<()>| r.map_err(|e| Error::Privileges(format!("{what}: {e}")));
    step("resetting signal dispositions and mask", k.reset_signals())?;
    step("raising the permitted capabilities", k.raise_permitted())?;
    step("setgroups", k.setgroups(&want.groups))?;
    step("setresgid", k.setresgid(want.gid))?;
    step("clearing the ambient set", k.clear_ambient())?;
    step("setresuid", k.setresuid(want.uid))?;
    step("making the process non-dumpable", k.set_non_dumpable())?;
    step("clearing the capability sets", k.clear_capabilities())?;
    let seen = k.observe().map_err(|e| Error::Privileges(format!("reading back credentials: {e}")))?;
    let mut wrong = identity_differences(&seen, want);
    if seen.caps != CapSets::default() || seen.ambient != 0 {
        wrong.push(format!(
            "capabilities left: effective {:#x} permitted {:#x} inheritable {:#x} ambient {:#x}",
            seen.caps.effective, seen.caps.permitted, seen.caps.inheritable, seen.ambient
        ));
    }
    refuse_if_any(wrong)
}

fn identity_differences(seen: &Observed, want: &Credentials) -> Vec<String> {
    let mut wrong = Vec::new();
    if seen.uids != [want.uid; 3] {
        wrong.push(format!("uids {:?} instead of {}", seen.uids, want.uid));
    }
    if seen.gids != [want.gid; 3] {
        wrong.push(format!("gids {:?} instead of {}", seen.gids, want.gid));
    }
    let mut groups = seen.groups.clone();
    groups.sort_unstable();
    groups.dedup();
    if groups != want.groups {
        wrong.push(format!("groups {:?} instead of {:?}", groups, want.groups));
    }
    if seen.dumpable {
        wrong.push("the process is dumpable".into());
    }
    wrong
}

fn refuse_if_any(wrong: Vec<String>) -> Result<()> {
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::Privileges(format!("refusing to exec, {}", wrong.join("; "))))
    }
}

fn verify(seen: &Observed, want: &Credentials) -> Result<()> {
    let mut wrong = identity_differences(seen, want);
    if seen.caps != CapSets::default() || seen.ambient != 0 || seen.bounding != 0 {
        wrong.push(format!(
            "capabilities left: effective {:#x} permitted {:#x} inheritable {:#x} ambient {:#x} bounding {:#x}",
            seen.caps.effective, seen.caps.permitted, seen.caps.inheritable, seen.ambient, seen.bounding
        ));
    }
    if !seen.no_new_privs {
        wrong.push("no_new_privs is not set".into());
    }
    refuse_if_any(wrong)
}

/// The real kernel.
pub(crate) struct Kernel;

impl DropOps for Kernel {
    fn reset_signals(&mut self) -> io::Result<()> {
        sys::reset_all_signals()
    }
    fn raise_permitted(&mut self) -> io::Result<()> {
        let now = sys::capget()?;
        sys::capset(CapSets { effective: now.permitted, ..now })
    }
    fn setgroups(&mut self, groups: &[u32]) -> io::Result<()> {
        let gids: Vec<Gid> = groups.iter().copied().map(Gid::from_raw).collect();
        nix::unistd::setgroups(&gids).map_err(io::Error::from)
    }
    fn setresgid(&mut self, gid: u32) -> io::Result<()> {
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(io::Error::from)
    }
    fn clear_ambient(&mut self) -> io::Result<()> {
        sys::cap_ambient_clear_all()
    }
    fn drop_bounding(&mut self) -> io::Result<()> {
        sys::capbset_drop_all()
    }
    fn setresuid(&mut self, uid: u32) -> io::Result<()> {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(io::Error::from)
    }
    fn set_non_dumpable(&mut self) -> io::Result<()> {
        nix::sys::prctl::set_dumpable(false).map_err(io::Error::from)
    }
    fn clear_capabilities(&mut self) -> io::Result<()> {
        sys::capset(CapSets::default())
    }
    fn set_no_new_privs(&mut self) -> io::Result<()> {
        nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)
    }
    fn observe(&mut self) -> io::Result<Observed> {
        let u = nix::unistd::getresuid()?;
        let g = nix::unistd::getresgid()?;
        Ok(Observed {
            uids: [u.real.as_raw(), u.effective.as_raw(), u.saved.as_raw()],
            gids: [g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw()],
            groups: nix::unistd::getgroups()?.into_iter().map(Gid::as_raw).collect(),
            caps: sys::capget()?,
            ambient: sys::cap_ambient_read(),
            bounding: sys::capbset_read(),
            no_new_privs: nix::sys::prctl::get_no_new_privs()?,
            dumpable: nix::sys::prctl::get_dumpable()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recording double that also simulates the kernel state it changes.
    struct Double {
        calls: Vec<String>,
        state: Observed,
        fail: Option<&'static str>,
        /// Simulate a kernel that silently leaves a capability behind.
        leave_bounding: u64,
    }

    impl Double {
        fn new() -> Self {
            Double {
                calls: Vec::new(),
                state: Observed {
                    uids: [1001; 3],
                    gids: [900; 3],
                    groups: vec![],
                    caps: CapSets { effective: 0, permitted: mask(&REQUIRED), inheritable: 0 },
                    ambient: 0,
                    bounding: u64::MAX >> 23,
                    no_new_privs: false,
                    dumpable: true,
                },
                fail: None,
                leave_bounding: 0,
            }
        }
        fn call(&mut self, name: &'static str) -> io::Result<()> {
            self.calls.push(name.to_string());
            if self.fail == Some(name) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
    }

    impl DropOps for Double {
        fn reset_signals(&mut self) -> io::Result<()> {
            self.call("reset_signals")
        }
        fn raise_permitted(&mut self) -> io::Result<()> {
            self.call("raise_permitted")?;
            self.state.caps.effective = self.state.caps.permitted;
            Ok(())
        }
        fn setgroups(&mut self, groups: &[u32]) -> io::Result<()> {
            self.call("setgroups")?;
            self.state.groups = groups.to_vec();
            Ok(())
        }
        fn setresgid(&mut self, gid: u32) -> io::Result<()> {
            self.call("setresgid")?;
            self.state.gids = [gid; 3];
            Ok(())
        }
        fn clear_ambient(&mut self) -> io::Result<()> {
            self.call("clear_ambient")?;
            self.state.ambient = 0;
            Ok(())
        }
        fn drop_bounding(&mut self) -> io::Result<()> {
            self.call("drop_bounding")?;
            self.state.bounding = self.leave_bounding;
            Ok(())
        }
        fn setresuid(&mut self, uid: u32) -> io::Result<()> {
            self.call("setresuid")?;
            self.state.uids = [uid; 3];
            Ok(())
        }
        fn set_non_dumpable(&mut self) -> io::Result<()> {
            self.call("set_non_dumpable")?;
            self.state.dumpable = false;
            Ok(())
        }
        fn clear_capabilities(&mut self) -> io::Result<()> {
            self.call("clear_capabilities")?;
            self.state.caps = CapSets::default();
            Ok(())
        }
        fn set_no_new_privs(&mut self) -> io::Result<()> {
            self.call("set_no_new_privs")?;
            self.state.no_new_privs = true;
            Ok(())
        }
        fn observe(&mut self) -> io::Result<Observed> {
            self.calls.push("observe".into());
            Ok(self.state.clone())
        }
    }

    fn want() -> Credentials {
        Credentials { uid: 1001, gid: 1001, groups: vec![1001, 1500] }
    }

    #[test]
    fn the_drop_happens_in_the_one_order_that_works_and_is_verified() {
        let mut d = Double::new();
        drop_privileges(&mut d, &want()).unwrap();
        assert_eq!(
            d.calls,
            [
                "reset_signals",
                "raise_permitted",
                "setgroups",
                "setresgid",
                "clear_ambient",
                "drop_bounding",
                "setresuid",
                "set_non_dumpable",
                "clear_capabilities",
                "set_no_new_privs",
                "observe"
            ]
        );
        assert_eq!(d.state.gids, [1001; 3]);
        assert_eq!(d.state.groups, vec![1001, 1500]);
    }

    #[test]
    fn any_failed_step_stops_before_exec() {
        for step in [
            "setgroups",
            "setresgid",
            "drop_bounding",
            "setresuid",
            "set_non_dumpable",
            "clear_capabilities",
            "set_no_new_privs",
        ] {
            let mut d = Double::new();
            d.fail = Some(step);
            let e = drop_privileges(&mut d, &want()).unwrap_err();
            assert_eq!(e.exit_code(), 75, "{step}");
            assert!(!d.calls.contains(&"observe".to_string()), "{step}: no verification after a failure");
            assert_eq!(d.calls.last().map(String::as_str), Some(step));
        }
    }

    #[test]
    fn verification_catches_what_the_kernel_left_behind() {
        let mut d = Double::new();
        d.leave_bounding = 1 << CAP_SYS_ADMIN.number;
        let e = drop_privileges(&mut d, &want()).unwrap_err().to_string();
        assert!(e.contains("bounding 0x200000"), "{e}");

        let mut seen = Double::new().state;
        seen.uids = [1001, 1001, 0];
        seen.caps = CapSets::default();
        seen.bounding = 0;
        seen.no_new_privs = true;
        seen.dumpable = false;
        seen.gids = [1001; 3];
        seen.groups = vec![1500, 1001];
        let e = verify(&seen, &want()).unwrap_err().to_string();
        assert!(e.contains("uids [1001, 1001, 0]"), "{e}");
        seen.uids = [1001; 3];
        verify(&seen, &want()).unwrap();
        seen.no_new_privs = false;
        assert!(verify(&seen, &want()).unwrap_err().to_string().contains("no_new_privs"));
        seen.no_new_privs = true;
        seen.dumpable = true;
        assert!(verify(&seen, &want()).unwrap_err().to_string().contains("dumpable"));
    }

    #[test]
    fn the_host_drop_keeps_what_any_process_of_the_user_has_and_nothing_of_ours() {
        let mut d = Double::new();
        drop_to_host_user(&mut d, &want()).unwrap();
        assert_eq!(
            d.calls,
            [
                "reset_signals",
                "raise_permitted",
                "setgroups",
                "setresgid",
                "clear_ambient",
                "setresuid",
                "set_non_dumpable",
                "clear_capabilities",
                "observe"
            ]
        );
        assert_eq!(d.state.bounding, u64::MAX >> 23, "bounding set untouched");
        assert!(!d.state.no_new_privs);
        for step in ["setgroups", "setresgid", "setresuid", "clear_capabilities"] {
            let mut d = Double::new();
            d.fail = Some(step);
            assert_eq!(drop_to_host_user(&mut d, &want()).unwrap_err().exit_code(), 75, "{step}");
            assert!(!d.calls.contains(&"observe".to_string()));
        }
    }

    /// A double whose capset does nothing: the read-back must catch it.
    #[test]
    fn the_host_drop_is_verified_too() {
        struct Stubborn(Double);
        impl DropOps for Stubborn {
            fn reset_signals(&mut self) -> io::Result<()> {
                self.0.reset_signals()
            }
            fn raise_permitted(&mut self) -> io::Result<()> {
                self.0.raise_permitted()
            }
            fn setgroups(&mut self, g: &[u32]) -> io::Result<()> {
                self.0.setgroups(g)
            }
            fn setresgid(&mut self, gid: u32) -> io::Result<()> {
                self.0.setresgid(gid)
            }
            fn clear_ambient(&mut self) -> io::Result<()> {
                self.0.clear_ambient()
            }
            fn drop_bounding(&mut self) -> io::Result<()> {
                self.0.drop_bounding()
            }
            fn setresuid(&mut self, uid: u32) -> io::Result<()> {
                self.0.setresuid(uid)
            }
            fn set_non_dumpable(&mut self) -> io::Result<()> {
                self.0.set_non_dumpable()
            }
            fn clear_capabilities(&mut self) -> io::Result<()> {
                Ok(())
            }
            fn set_no_new_privs(&mut self) -> io::Result<()> {
                self.0.set_no_new_privs()
            }
            fn observe(&mut self) -> io::Result<Observed> {
                self.0.observe()
            }
        }
        let e = drop_to_host_user(&mut Stubborn(Double::new()), &want()).unwrap_err().to_string();
        let left = format!("capabilities left: effective {:#x} permitted {:#x}", mask(&REQUIRED), mask(&REQUIRED));
        assert!(e.contains(&left), "{e}");
    }

    #[test]
    fn the_setcap_text_lists_every_required_capability_permitted_only() {
        assert_eq!(
            setcap_text(),
            "cap_dac_override,cap_setgid,cap_setpcap,cap_sys_chroot,cap_sys_ptrace,cap_sys_admin=p"
        );
        assert_eq!(missing_names(mask(&[CAP_SETGID]), &[CAP_SETGID, CAP_SYS_ADMIN]), "cap_sys_admin");
    }
}

#[cfg(test)]
mod packaging_tests {
    /// The install script and the packages read packaging/file-caps; it must
    /// say exactly what the self-check requires.
    #[test]
    fn packaging_file_caps_match_the_required_set() {
        let file = include_str!("../../packaging/file-caps");
        assert_eq!(file.trim(), super::setcap_text());
    }
}
