//! Capabilities: which ones cagepipe holds and why, raising them only for
//! the steps that need them (around one call, or for a named window), and
//! the one linear function that drops every privilege before exec and then
//! verifies that it did.
#![forbid(unsafe_code)]

use std::io;

use crate::error::{Error, Result};
use crate::platform::kernel::{Kernel, Observed};
use crate::platform::sys::CapSets;

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
pub(crate) const CAP_SYS_ADMIN: Cap =
    Cap { number: 21, name: "cap_sys_admin", why: "setns into the container's namespaces" };

/// The file capabilities the binary is installed with (permitted only).
pub(crate) const REQUIRED: [Cap; 6] =
    [CAP_DAC_OVERRIDE, CAP_SETGID, CAP_SETPCAP, CAP_SYS_CHROOT, CAP_SYS_PTRACE, CAP_SYS_ADMIN];

pub(crate) fn mask(caps: &[Cap]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1u64 << c.number))
}

/// The mask of [`REQUIRED`].
#[cfg(test)]
pub(crate) fn required_mask() -> u64 {
    mask(&REQUIRED)
}

/// The `setcap` argument for installing the binary.
pub(crate) fn setcap_text() -> String {
    let names: Vec<&str> = REQUIRED.iter().map(|c| c.name).collect();
    format!("{}=p", names.join(","))
}

/// Run `f` with `caps` raised into the effective set, then lower them again.
pub(crate) fn with_caps<K: Kernel, T>(k: &mut K, caps: &[Cap], f: impl FnOnce(&mut K) -> Result<T>) -> Result<T> {
    let before = k.capget().map_err(|e| Error::io("reading capabilities", e))?;
    let wanted = mask(caps) & before.permitted;
    if wanted != mask(caps) {
        return Err(Error::SelfCheck(format!(
            "capabilities missing from the permitted set: {}",
            missing_names(before.permitted, caps)
        )));
    }
    if before.effective & wanted != wanted {
        k.capset(CapSets { effective: before.effective | wanted, ..before })
            .map_err(|e| Error::io("raising capabilities", e))?;
    }
    let out = f(k);
    // Lower only what was not effective before, within whatever credentials
    // are current now (entering a user namespace replaces them).
    if let Ok(now) = k.capget() {
        let lowered = now.effective & !(wanted & !before.effective);
        if lowered != now.effective {
            k.capset(CapSets { effective: lowered, ..now }).map_err(|e| Error::io("lowering capabilities", e))?;
        }
    }
    out
}

/// Make exactly `caps` effective and leave them so, for a window of steps
/// that the caller names: it ends at the next `set_effective`, the drop, or
/// [`lower_all`]. One call where a raise and a lower around each step would
/// take two; the caller says in a comment what the window covers, and no
/// path a user or a container controls may be opened inside it unless the
/// window exists for that open.
pub(crate) fn set_effective(k: &mut impl Kernel, caps: &[Cap]) -> Result<()> {
    let now = k.capget().map_err(|e| Error::io("reading capabilities", e))?;
    let wanted = mask(caps);
    if now.permitted & wanted != wanted {
        return Err(Error::SelfCheck(format!(
            "capabilities missing from the permitted set: {}",
            missing_names(now.permitted, caps)
        )));
    }
    if now.effective != wanted {
        k.capset(CapSets { effective: wanted, ..now })
            .map_err(|e| Error::io("setting the effective capabilities", e))?;
    }
    Ok(())
}

/// End a window of [`set_effective`]: nothing effective.
pub(crate) fn lower_all(k: &mut impl Kernel) -> Result<()> {
    set_effective(k, &[])
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

/// How far the drop goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confinement {
    /// Inside a container: every capability set empty, the bounding set
    /// included, and no_new_privs, so nothing inside can give any back.
    Contained,
    /// An account not contained yet (`[rollout]`): the user on the host as
    /// Exim would have made the command without cagepipe, and nothing more.
    /// The capability sets are emptied (the permitted file capabilities
    /// would otherwise survive until exec), but the bounding set stays full
    /// and no_new_privs stays off, as for any process of the user: a handler
    /// that mails a reply through a set-uid `sendmail` must keep working
    /// until its account is contained.
    Host,
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
pub(crate) fn drop_privileges(k: &mut impl Kernel, want: &Credentials, how: Confinement) -> Result<()> {
    let contained = how == Confinement::Contained;
    let step = |what: &str, r: io::Result<()>| r.map_err(|e| Error::Privileges(format!("{what}: {e}")));
    step("resetting signal dispositions and mask", k.reset_signals())?;
    // A contained delivery's child has every permitted capability effective
    // already (from the parent's window before the fork, or from entering
    // a user namespace).
    let now = step_value("reading capabilities", k.capget())?;
    if now.effective != now.permitted {
        step("raising the permitted capabilities", k.capset(CapSets { effective: now.permitted, ..now }))?;
    }
    step("setgroups", k.setgroups(&want.groups))?;
    step("setresgid", k.setresgid(want.gid))?;
    step("clearing the ambient set", k.clear_ambient())?;
    if contained {
        step("emptying the bounding set", k.drop_bounding())?;
    }
    step("setresuid", k.setresuid(want.uid))?;
    step("making the process non-dumpable", k.set_non_dumpable())?;
    step("clearing the capability sets", k.capset(CapSets::default()))?;
    if contained {
        step("setting no_new_privs", k.set_no_new_privs())?;
    }
    let seen = step_value("reading back credentials", k.observe())?;
    verify(&seen, want, how)
}

fn step_value<T>(what: &str, r: io::Result<T>) -> Result<T> {
    r.map_err(|e| Error::Privileges(format!("{what}: {e}")))
}

/// Everything the drop was to achieve, read back from the kernel.
fn verify(seen: &Observed, want: &Credentials, how: Confinement) -> Result<()> {
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
    let bounding_left = how == Confinement::Contained && seen.bounding != 0;
    if seen.caps != CapSets::default() || seen.ambient != 0 || bounding_left {
        let mut left = format!(
            "capabilities left: effective {:#x} permitted {:#x} inheritable {:#x} ambient {:#x}",
            seen.caps.effective, seen.caps.permitted, seen.caps.inheritable, seen.ambient
        );
        if how == Confinement::Contained {
            left.push_str(&format!(" bounding {:#x}", seen.bounding));
        }
        wrong.push(left);
    }
    if how == Confinement::Contained && !seen.no_new_privs {
        wrong.push("no_new_privs is not set".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::Privileges(format!("refusing to exec, {}", wrong.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::recording::Recording;

    fn want() -> Credentials {
        Credentials { uid: 1001, gid: 1001, groups: vec![1001, 1500] }
    }

    const REQUIRED_NUMBERS: &str = "capset effective=1,6,8,18,19,21";

    #[test]
    fn the_drop_happens_in_the_one_order_that_works_and_is_verified() {
        let mut k = Recording::new();
        drop_privileges(&mut k, &want(), Confinement::Contained).unwrap();
        assert_eq!(
            k.calls,
            [
                "reset_signals",
                REQUIRED_NUMBERS,
                "setgroups [1001, 1500]",
                "setresgid 1001",
                "clear_ambient",
                "drop_bounding",
                "setresuid 1001",
                "set_non_dumpable",
                "capset effective=",
                "set_no_new_privs",
                "observe"
            ]
        );
        assert_eq!(k.state.gids, [1001; 3]);
        assert_eq!(k.state.groups, vec![1001, 1500]);
    }

    #[test]
    fn any_failed_step_stops_before_exec() {
        for step in
            ["setgroups", "setresgid", "drop_bounding", "setresuid", "set_non_dumpable", "capset", "set_no_new_privs"]
        {
            let mut k = Recording::new();
            k.fail = Some(step);
            let e = drop_privileges(&mut k, &want(), Confinement::Contained).unwrap_err();
            assert_eq!(e.exit_code(), 75, "{step}");
            assert!(!k.calls.contains(&"observe".to_string()), "{step}: no verification after a failure");
            assert!(k.calls.last().is_some_and(|c| c.starts_with(step)), "{step}: {:?}", k.calls);
        }
    }

    #[test]
    fn verification_catches_what_the_kernel_left_behind() {
        let mut k = Recording::new();
        k.leave_bounding = 1 << CAP_SYS_ADMIN.number;
        let e = drop_privileges(&mut k, &want(), Confinement::Contained).unwrap_err().to_string();
        assert!(e.contains("bounding 0x200000"), "{e}");

        let mut seen = Recording::new().state;
        seen.uids = [1001, 1001, 0];
        seen.caps = CapSets::default();
        seen.bounding = 0;
        seen.no_new_privs = true;
        seen.dumpable = false;
        seen.gids = [1001; 3];
        seen.groups = vec![1500, 1001];
        let contained = Confinement::Contained;
        let e = verify(&seen, &want(), contained).unwrap_err().to_string();
        assert!(e.contains("uids [1001, 1001, 0]"), "{e}");
        seen.uids = [1001; 3];
        verify(&seen, &want(), contained).unwrap();
        seen.no_new_privs = false;
        assert!(verify(&seen, &want(), contained).unwrap_err().to_string().contains("no_new_privs"));
        seen.no_new_privs = true;
        seen.dumpable = true;
        assert!(verify(&seen, &want(), contained).unwrap_err().to_string().contains("dumpable"));
    }

    #[test]
    fn the_host_drop_keeps_what_any_process_of_the_user_has_and_nothing_of_ours() {
        let mut k = Recording::new();
        drop_privileges(&mut k, &want(), Confinement::Host).unwrap();
        assert_eq!(
            k.calls,
            [
                "reset_signals",
                REQUIRED_NUMBERS,
                "setgroups [1001, 1500]",
                "setresgid 1001",
                "clear_ambient",
                "setresuid 1001",
                "set_non_dumpable",
                "capset effective=",
                "observe"
            ]
        );
        assert_eq!(k.state.bounding, u64::MAX >> 23, "bounding set untouched");
        assert!(!k.state.no_new_privs);
        for step in ["setgroups", "setresgid", "setresuid", "capset"] {
            let mut k = Recording::new();
            k.fail = Some(step);
            assert_eq!(drop_privileges(&mut k, &want(), Confinement::Host).unwrap_err().exit_code(), 75, "{step}");
            assert!(!k.calls.contains(&"observe".to_string()));
        }
    }

    /// A kernel whose capset does nothing: the read-back must catch it.
    #[test]
    fn the_host_drop_is_verified_too() {
        let mut k = Recording::new();
        k.capset_works = false;
        let e = drop_privileges(&mut k, &want(), Confinement::Host).unwrap_err().to_string();
        let left = format!("capabilities left: effective {:#x} permitted {:#x}", 0, mask(&REQUIRED));
        assert!(e.contains(&left), "{e}");
    }

    #[test]
    fn capabilities_are_raised_only_around_the_call_that_needs_them() {
        let mut k = Recording::new();
        let got = with_caps(&mut k, &[CAP_SYS_PTRACE], |k| {
            k.calls.push("inside".into());
            Ok(7)
        })
        .unwrap();
        assert_eq!(got, 7);
        assert_eq!(k.calls, ["capset effective=19", "inside", "capset effective="]);
        k.state.caps.permitted = 0;
        let e = with_caps(&mut k, &[CAP_SYS_PTRACE], |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("cap_sys_ptrace"), "{e}");
    }

    #[test]
    fn a_window_sets_exactly_its_capabilities_once_and_lower_all_ends_it() {
        let mut k = Recording::new();
        set_effective(&mut k, &[CAP_DAC_OVERRIDE]).unwrap();
        set_effective(&mut k, &[CAP_DAC_OVERRIDE]).unwrap();
        set_effective(&mut k, &[CAP_SYS_ADMIN, CAP_SYS_CHROOT]).unwrap();
        lower_all(&mut k).unwrap();
        lower_all(&mut k).unwrap();
        assert_eq!(k.calls, ["capset effective=1", "capset effective=18,21", "capset effective="]);
        k.state.caps.permitted = mask(&[CAP_SETGID]);
        let e = set_effective(&mut k, &[CAP_SETGID, CAP_SYS_ADMIN]).unwrap_err();
        assert!(e.to_string().contains("cap_sys_admin"), "{e}");
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
