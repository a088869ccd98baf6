//! Defence in depth with Landlock: what the command may write and execute
//! inside the container, on top of the privilege drop.
//!
//! Parse → validate → act, like the rest: `[sandbox]` becomes a [`Policy`]
//! (config.rs), the policy and the account become a [`Plan`] of paths
//! before the fork, and the child [`apply`]s the plan after it has dropped
//! its privileges and changed directory, just before exec. Paths are opened
//! there, inside the container and as the user, so they name what the
//! command will see.
//!
//! Reading stays allowed everywhere (mail handlers read a lot); writing,
//! creating, removing, renaming, truncating and executing are refused
//! outside the listed paths. Landlock only ever takes rights away: a rule
//! never lets the user write what file permissions forbid.
#![forbid(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::platform::fs::{fstat, open, Mode as FileMode, OFlag, SFlag};
use crate::platform::Errno;
use landlock::{
    AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, ABI,
};

use crate::config::account::Account;
use crate::error::{Error, Result};
use crate::escape::escape;

/// `[sandbox] landlock`: whether the sandbox is used, and what happens on a
/// kernel that cannot enforce all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No sandbox (the default).
    Off,
    /// Enforce what the kernel supports; say in the audit line what is not.
    BestEffort,
    /// Enforce all of it or run nothing (exit 75).
    Required,
}

impl Mode {
    pub(crate) const NAMES: &'static str = "\"off\", \"best-effort\" or \"required\"";

    pub(crate) fn from_name(name: &str) -> Option<Mode> {
        match name {
            "off" => Some(Mode::Off),
            "best-effort" => Some(Mode::BestEffort),
            "required" => Some(Mode::Required),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::BestEffort => "best-effort",
            Mode::Required => "required",
        }
    }
}

const HOME: &str = "{home}";
const USER: &str = "{user}";

/// One entry of `[sandbox] write` or `execute`: an absolute path inside the
/// container, or one starting with `{home}` (the account's home directory);
/// `{user}` (the account name) may appear anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate(String);

impl PathTemplate {
    pub(crate) fn parse(text: &str) -> std::result::Result<PathTemplate, String> {
        let rest = text.strip_prefix(HOME).unwrap_or(text);
        if rest.len() == text.len() && !text.starts_with('/') {
            return Err(format!("{text:?} must be an absolute path or start with {HOME}"));
        }
        if !rest.is_empty() && !rest.starts_with('/') {
            return Err(format!("{text:?}: {HOME} must be followed by '/' or nothing"));
        }
        let plain = rest.replace(USER, "u");
        if plain.contains(['{', '}']) {
            return Err(format!(
                "{text:?}: unknown placeholder or stray brace (known: {HOME} at the start, {USER} anywhere)"
            ));
        }
        if plain.contains('\0') || has_dot_component(plain.as_bytes()) {
            return Err(format!("{text:?} must not contain '.', '..' or NUL"));
        }
        Ok(PathTemplate(text.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The path for `account`, checked again once substituted: a home
    /// directory from /etc/passwd is not this file's to vouch for.
    pub(crate) fn expand(&self, account: &Account) -> std::result::Result<CString, String> {
        let mut bytes = Vec::new();
        let rest = match self.0.strip_prefix(HOME) {
            Some(rest) => {
                bytes.extend_from_slice(account.home.as_os_str().as_bytes());
                rest
            }
            None => self.0.as_str(),
        };
        bytes.extend_from_slice(rest.replace(USER, &account.name).as_bytes());
        let shown = escape(&bytes);
        if !bytes.starts_with(b"/") || has_dot_component(&bytes) {
            return Err(format!("{} becomes {shown:?}, which is not an absolute path without '.' or '..'", self.0));
        }
        CString::new(bytes).map_err(|_| format!("{} becomes {shown:?}, which contains NUL", self.0))
    }
}

fn has_dot_component(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(|c| c == b"." || c == b"..")
}

/// The validated `[sandbox]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) mode: Mode,
    pub(crate) write: Vec<PathTemplate>,
    pub(crate) execute: Vec<PathTemplate>,
}

impl Policy {
    #[cfg(test)]
    pub(crate) const OFF: Policy = Policy { mode: Mode::Off, write: Vec::new(), execute: Vec::new() };
}

/// What the child applies: the policy's paths for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) required: bool,
    pub(crate) write: Vec<CString>,
    pub(crate) execute: Vec<CString>,
    /// Named in the message when "required" cannot be met.
    pub(crate) config: PathBuf,
}

/// The plan for `account`, or `None` when the sandbox is off. Built before
/// the fork, so that a bad path is reported like any configuration error.
pub(crate) fn plan(policy: &Policy, account: &Account, config: &Path) -> Result<Option<Plan>> {
    if policy.mode == Mode::Off {
        return Ok(None);
    }
    let expand = |list: &str, templates: &[PathTemplate]| -> Result<Vec<CString>> {
        templates
            .iter()
            .map(|t| {
                t.expand(account)
                    .map_err(|problem| Error::Sandbox(format!("[sandbox] {list}: {problem} for user {}", account.name)))
            })
            .collect()
    };
    Ok(Some(Plan {
        required: policy.mode == Mode::Required,
        write: expand("write", &policy.write)?,
        execute: expand("execute", &policy.execute)?,
        config: config.to_path_buf(),
    }))
}

/// The rights the sandbox handles, beneath a listed directory: every kind
/// of change to the file system (ABI 1), moving files between directories
/// (ABI 2, what Maildir's tmp → new rename needs) and truncating (ABI 3).
/// Pinned to ABI 3 so that a newer crate never restricts more than was
/// tested.
fn write_rights() -> BitFlags<AccessFs> {
    AccessFs::from_write(ABI::V3)
}

/// What of [`write_rights`] applies to a file that is not a directory.
fn write_rights_file() -> BitFlags<AccessFs> {
    AccessFs::from_write(ABI::V3) & AccessFs::from_file(ABI::V3)
}

/// Apply `plan` to this process and everything it will exec. Called in
/// the child, single-threaded, after the privilege drop (no_new_privs is
/// set) and the chdir, before the fds are closed. Returns the note for the
/// audit line, or the error that must stop the exec: in "required" mode
/// anything less than the whole sandbox, in either mode a ruleset that
/// could not be built as planned.
pub(crate) fn apply(plan: &Plan) -> Result<String> {
    let failed = |what: &str, e: &dyn std::fmt::Display| Error::Sandbox(format!("{what}: {e}"));
    // Without Refer (Landlock ABI 1) the kernel refuses every rename and
    // link between directories, which breaks Maildir delivery: then rather
    // no sandbox at all (SoftRequirement drops the whole ruleset). Truncate
    // (ABI 3) is added where the kernel has it.
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::SoftRequirement)
        .handle_access(AccessFs::from_write(ABI::V2) | AccessFs::Execute)
        .and_then(|r| r.set_compatibility(CompatLevel::BestEffort).handle_access(AccessFs::Truncate))
        .and_then(Ruleset::create)
        .map_err(|e| failed("cannot create the Landlock ruleset", &e))?;
    let mut skipped = Vec::new();
    let ruleset = add_rules(ruleset, &plan.write, Grant::Write, &mut skipped)?;
    let ruleset = add_rules(ruleset, &plan.execute, Grant::Execute, &mut skipped)?;
    let status = ruleset.restrict_self().map_err(|e| failed("cannot apply the Landlock ruleset", &e))?;
    let mut note = verdict(plan, enforcement(&status.ruleset, &status.landlock))?;
    if !skipped.is_empty() {
        note.push_str(&format!("; absent or out of reach inside, skipped: {}", skipped.join(" ")));
    }
    Ok(note)
}

#[derive(Clone, Copy)]
enum Grant {
    Write,
    Execute,
}

fn add_rules(
    mut ruleset: RulesetCreated,
    paths: &[CString],
    grant: Grant,
    skipped: &mut Vec<String>,
) -> Result<RulesetCreated> {
    for path in paths {
        let shown = escape(path.as_bytes());
        let fd = match open_path(path) {
            Ok(fd) => fd,
            // Absent inside, or out of the user's reach: a rule there would
            // allow nothing, and leaving it out only narrows the sandbox.
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES | Errno::ELOOP) => {
                skipped.push(shown);
                continue;
            }
            Err(e) => return Err(Error::Sandbox(format!("cannot open {shown} for a Landlock rule: {e}"))),
        };
        let is_dir = fstat(&fd)
            .map(|st| SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR)
            .map_err(|e| Error::Sandbox(format!("cannot stat {shown} for a Landlock rule: {e}")))?;
        let rights = match grant {
            Grant::Write if is_dir => write_rights(),
            Grant::Write => write_rights_file(),
            Grant::Execute => AccessFs::Execute.into(),
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(|e| Error::Sandbox(format!("cannot add the Landlock rule for {shown}: {e}")))?;
    }
    Ok(ruleset)
}

/// An O_PATH descriptor, following symbolic links inside the container
/// (`/bin` → `usr/bin`): the rule then covers what the command reaches
/// through the link, and permissions still decide what it may do there.
fn open_path(path: &CStr) -> std::result::Result<OwnedFd, Errno> {
    open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, FileMode::empty())
}

/// How much of the ruleset the kernel enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Enforcement {
    Full,
    Partial(String),
    Absent(String),
}

fn enforcement(ruleset: &RulesetStatus, landlock: &LandlockStatus) -> Enforcement {
    match (ruleset, landlock) {
        (RulesetStatus::FullyEnforced, _) => Enforcement::Full,
        (RulesetStatus::PartiallyEnforced, LandlockStatus::Available { effective_abi, .. }) => Enforcement::Partial(
            format!("the kernel's Landlock ABI {effective_abi} cannot restrict truncate(2) (ABI 3, Linux 6.2)"),
        ),
        (RulesetStatus::PartiallyEnforced, _) => Enforcement::Partial("the kernel's Landlock is incomplete".into()),
        (RulesetStatus::NotEnforced, LandlockStatus::NotImplemented) => {
            Enforcement::Absent("this kernel has no Landlock (not built in, or older than Linux 5.13)".into())
        }
        (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled) => Enforcement::Absent(
            "Landlock is built into this kernel but not enabled (add landlock to the lsm= boot parameter)".into(),
        ),
        (RulesetStatus::NotEnforced, LandlockStatus::Available { effective_abi, .. }) => Enforcement::Absent(format!(
            "the kernel's Landlock ABI {effective_abi} refuses every rename between directories, \
             which would break Maildir delivery (ABI 2, Linux 5.19, allows them)"
        )),
    }
}

/// The audit note, or the error "required" makes of anything less than
/// the whole sandbox.
fn verdict(plan: &Plan, enforced: Enforcement) -> Result<String> {
    let why = match enforced {
        Enforcement::Full => return Ok("enforced".into()),
        Enforcement::Partial(why) if !plan.required => return Ok(format!("partial: {why}")),
        Enforcement::Absent(why) if !plan.required => return Ok(format!("not applied: {why}")),
        Enforcement::Partial(why) | Enforcement::Absent(why) => why,
    };
    Err(Error::Sandbox(format!(
        "[sandbox] landlock = \"required\" cannot be met: {why}; nothing was run. \
         To deliver without it, set landlock = \"best-effort\" (or \"off\") in {}",
        plan.config.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            name: "alice".into(),
            uid: 1001,
            gid: 1001,
            groups: vec![1001],
            home: "/home/alice".into(),
            shell: "/bin/sh".into(),
        }
    }

    fn plan_with(mode: Mode) -> Plan {
        let policy = Policy {
            mode,
            write: vec![PathTemplate::parse("{home}").unwrap(), PathTemplate::parse("/tmp").unwrap()],
            execute: vec![PathTemplate::parse("/usr").unwrap()],
        };
        plan(&policy, &account(), Path::new("/etc/cagepipe/cagepipe.toml")).unwrap().unwrap()
    }

    #[test]
    fn templates_are_absolute_or_start_at_the_home() {
        for ok in ["/", "/tmp", "/tmp/", "{home}", "{home}/Maildir", "/var/mail/{user}", "/srv/{user}/in/{user}"] {
            PathTemplate::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let err = |t: &str| PathTemplate::parse(t).unwrap_err();
        assert!(err("tmp").contains("absolute"));
        assert!(err("").contains("absolute"));
        assert!(err("{user}/x").contains("absolute"));
        assert!(err("{home}x").contains("followed by '/'"));
        assert!(err("/x/{home}").contains("placeholder"));
        assert!(err("/x/{uid}").contains("placeholder"));
        assert!(err("/x/{user").contains("placeholder"));
        assert!(err("/x/../etc").contains("'..'"));
        assert!(err("{home}/./x").contains("'.'"));
        assert!(err("/x\0y").contains("NUL"));
    }

    #[test]
    fn templates_expand_for_the_account_and_are_checked_again() {
        let t = |s: &str| PathTemplate::parse(s).unwrap().expand(&account());
        assert_eq!(t("{home}/Maildir").unwrap().as_bytes(), b"/home/alice/Maildir");
        assert_eq!(t("{home}").unwrap().as_bytes(), b"/home/alice");
        assert_eq!(t("/var/mail/{user}").unwrap().as_bytes(), b"/var/mail/alice");
        let mut odd = account();
        odd.home = "relative/home".into();
        let e = PathTemplate::parse("{home}/x").unwrap().expand(&odd).unwrap_err();
        assert!(e.contains("not an absolute path"), "{e}");
        odd.home = "/home/../etc".into();
        assert!(PathTemplate::parse("{home}").unwrap().expand(&odd).is_err());
    }

    #[test]
    fn off_has_no_plan_and_a_bad_home_is_a_tempfail() {
        let mut policy = Policy::OFF;
        assert_eq!(plan(&policy, &account(), Path::new("/c")).unwrap(), None);
        policy.mode = Mode::BestEffort;
        policy.write.push(PathTemplate::parse("{home}").unwrap());
        let mut odd = account();
        odd.home = "nowhere".into();
        let e = plan(&policy, &odd, Path::new("/c")).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("[sandbox] write"), "{e}");
        let p = plan_with(Mode::Required);
        assert!(p.required);
        assert_eq!(p.write, [c"/home/alice".to_owned(), c"/tmp".to_owned()]);
        assert_eq!(p.execute, [c"/usr".to_owned()]);
    }

    #[test]
    fn rights_cover_every_change_and_maildir_renames_but_never_reading() {
        let w = write_rights();
        for right in [AccessFs::WriteFile, AccessFs::MakeReg, AccessFs::RemoveFile, AccessFs::Refer, AccessFs::Truncate]
        {
            assert!(w.contains(right), "{right:?}");
        }
        for right in [AccessFs::ReadFile, AccessFs::ReadDir, AccessFs::Execute, AccessFs::IoctlDev] {
            assert!(!w.contains(right), "{right:?}");
        }
        assert_eq!(write_rights_file(), AccessFs::WriteFile | AccessFs::Truncate);
        // What apply() handles, in its two steps, is exactly what the rules grant.
        assert_eq!(AccessFs::from_write(ABI::V2) | AccessFs::Truncate, w);
    }

    #[test]
    fn the_kernels_answer_becomes_a_note_or_stops_a_required_sandbox() {
        let v = |abi| LandlockStatus::Available { effective_abi: abi, kernel_abi: None };
        let cases = [
            (RulesetStatus::FullyEnforced, v(ABI::V6), "enforced"),
            (RulesetStatus::PartiallyEnforced, v(ABI::V2), "partial: the kernel's Landlock ABI 2 cannot restrict"),
            (RulesetStatus::NotEnforced, LandlockStatus::NotImplemented, "not applied: this kernel has no Landlock"),
            (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled, "not applied: Landlock is built into"),
            (RulesetStatus::NotEnforced, v(ABI::V1), "not applied: the kernel's Landlock ABI 1 refuses"),
        ];
        for (ruleset, landlock, note) in cases {
            let e = enforcement(&ruleset, &landlock);
            let got = verdict(&plan_with(Mode::BestEffort), e.clone()).unwrap();
            assert!(got.starts_with(note), "{got}");
            let required = verdict(&plan_with(Mode::Required), e);
            if ruleset == RulesetStatus::FullyEnforced {
                assert_eq!(required.unwrap(), "enforced");
            } else {
                let err = required.unwrap_err();
                assert_eq!(err.exit_code(), 75);
                let text = err.to_string();
                assert!(text.contains("\"required\" cannot be met") && text.contains("nothing was run"), "{text}");
                assert!(text.contains("landlock = \"best-effort\" (or \"off\") in /etc/cagepipe/cagepipe.toml"));
            }
        }
    }
}
