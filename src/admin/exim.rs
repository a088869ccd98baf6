//! `cagepipe check` on the Exim side: read Exim's effective transport
//! settings (`exim -bP transport NAME`) and report every transport that
//! names cagepipe but would leak pipes onto the host, split them wrongly,
//! fail to execute cagepipe, or bounce what cagepipe defers.
//!
//! Parse (the `-bP` text) → validate (`lint`, pure, lookups injected) → act
//! (`read_transports` runs Exim; only `check` as root calls it).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::platform::secure_file;

/// Where Exim usually lives: Debian/Ubuntu, EL/DirectAdmin/cPanel, source builds.
pub(crate) const EXIM_CANDIDATES: &[&str] =
    &["/usr/sbin/exim4", "/usr/sbin/exim", "/usr/exim/bin/exim", "/usr/local/sbin/exim"];

/// The only environment Exim is started with: its own configuration, not
/// the caller's variables, decides what it prints.
const EXIM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The pipe transport's `path` when Exim prints none (Exim's default).
const DEFAULT_PIPE_PATH: &str = "/bin:/usr/bin";

/// Largest /etc/group read (as for the user database in `account`).
const MAX_GROUP_FILE_BYTES: usize = 64 << 20;

/// One transport as `exim -bP transport NAME` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Transport {
    pub(crate) name: String,
    /// `name = value` options (value as printed, possibly empty).
    pub(crate) options: BTreeMap<String, String>,
    /// Booleans: `force_command` → true, `no_force_command` → false.
    pub(crate) flags: BTreeMap<String, bool>,
}

impl Transport {
    /// Parse the `-bP transport NAME` output: `name = value` lines, and
    /// booleans as a bare `name` or `no_name`.
    pub(crate) fn parse(name: &str, text: &str) -> Transport {
        let mut t = Transport { name: name.to_string(), ..Default::default() };
        for line in text.lines() {
            let line = line.trim_end();
            if let Some((k, v)) = line.split_once(" = ") {
                t.options.insert(k.trim().to_string(), v.to_string());
            } else if let Some(k) = line.strip_suffix(" =") {
                // An unset string option: `group = ` (trailing blank trimmed).
                t.options.insert(k.trim().to_string(), String::new());
            } else if !line.is_empty() && !line.contains(char::is_whitespace) {
                match line.strip_prefix("no_") {
                    Some(k) => t.flags.insert(k.to_string(), false),
                    None => t.flags.insert(line.to_string(), true),
                };
            }
        }
        t
    }

    fn option(&self, name: &str) -> &str {
        self.options.get(name).map_or("", String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.get(name).copied().unwrap_or(false)
    }

    /// The command's words, quotes stripped: enough to find programs and
    /// the `$address_pipe` argument (Exim's own splitting is not needed).
    fn command_words(&self) -> Vec<String> {
        self.option("command").split_whitespace().map(|w| w.replace(['"', '\''], "")).collect()
    }

    /// The cagepipe the command runs, as written (absolute or not), if any
    /// word of the command names it.
    pub(crate) fn cagepipe_word(&self) -> Option<String> {
        self.command_words().into_iter().find(|w| Path::new(w).file_name().is_some_and(|n| n == "cagepipe"))
    }

    /// Does the command hand over the user's pipe text at all (in any form)?
    fn passes_address_pipe(&self) -> bool {
        self.option("command").contains("address_pipe")
    }

    /// The form Exim string-expands and re-splits: an argument that is
    /// exactly the variable.
    fn passes_bare_address_pipe(&self) -> bool {
        self.command_words().iter().any(|w| w == "$address_pipe" || w == "${address_pipe}")
    }
}

/// What `lint` needs from the system, injected so tests need no files.
pub(crate) trait Lookups {
    /// The gid owning `path`, or None if it does not exist.
    fn file_gid(&self, path: &Path) -> Option<u32>;
    /// The gid of group `name`.
    fn group_gid(&self, name: &str) -> Option<u32>;
    /// The name of group `gid`.
    fn group_name(&self, gid: u32) -> Option<String>;
}

/// How a cagepipe transport was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransportLint {
    pub(crate) transport: String,
    /// Each a sentence: what is wrong, why it matters, what to write.
    pub(crate) problems: Vec<String>,
    /// Facts worth showing that are not problems.
    pub(crate) notes: Vec<String>,
}

/// Where the transport's cagepipe is on this host: an absolute word as is;
/// a bare name the way Exim finds it, in the transport's `path`.
fn locate(word: &str, t: &Transport, sys: &dyn Lookups) -> (PathBuf, Option<u32>) {
    let written = PathBuf::from(word);
    if written.is_absolute() {
        let gid = sys.file_gid(&written);
        return (written, gid);
    }
    let path = match t.option("path") {
        "" => DEFAULT_PIPE_PATH,
        p => p,
    };
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(word))
        .find_map(|p| sys.file_gid(&p).map(|g| (p, Some(g))))
        .unwrap_or((written, None))
}

/// Judge one transport; None if it does not name cagepipe.
pub(crate) fn lint(t: &Transport, sys: &dyn Lookups) -> Option<TransportLint> {
    let word = t.cagepipe_word()?;
    let mut problems = Vec::new();
    let mut notes = Vec::new();

    if t.passes_address_pipe() {
        if !t.flag("force_command") {
            problems.push(
                "force_command is missing: Exim runs pipes from .forward files and aliases directly on the host and \
                 ignores this command, so they bypass cagepipe; add `force_command`"
                    .to_string(),
            );
        }
    } else if t.flag("force_command") {
        notes.push("fixed command".to_string());
    } else {
        // Harmless as a router's `transport =`; as a `pipe_transport`
        // Exim would run the user's pipe itself, which the admin may not see.
        notes.push(
            "fixed command; do not name it as a router's pipe_transport: without force_command Exim would run \
             users' pipes itself, on the host"
                .to_string(),
        );
    }
    if t.flag("use_shell") {
        problems.push(
            "use_shell is set: with force_command /bin/sh pipes cagepipe into the user's command, which then runs \
             outside the container while Exim logs a success; remove `use_shell`"
                .to_string(),
        );
    }
    if t.passes_bare_address_pipe() {
        problems.push(
            "the command passes the bare `$address_pipe` form: Exim string-expands the user's pipe text on the host \
             (${run{...}} and ${readfile{...}} escape the container) and moves single-quoted words to the end; \
             write `--raw-pipe=$address_pipe` instead of `-- $address_pipe`"
                .to_string(),
        );
    }

    let (bin, bin_gid) = locate(&word, t, sys);
    let bin_group = bin_gid.map(|g| sys.group_name(g).unwrap_or_else(|| g.to_string()));
    // Only for advice when the binary is missing: what the packages install.
    let advised = bin_group.clone().unwrap_or_else(|| "cagepipe".to_string());
    if bin_gid.is_none() {
        let searched = if Path::new(&word).is_absolute() {
            String::new()
        } else {
            format!(" (searched the transport's path {})", t.option("path"))
        };
        problems.push(format!(
            "{}{searched} does not exist: Exim cannot execute it and every pipe through this transport bounces; \
             install cagepipe there (root:cagepipe 0750) or correct the path in `command`",
            bin.display()
        ));
    }
    let group = t.option("group").trim();
    if group.is_empty() {
        problems.push(format!(
            "group is not set: the pipe runs with the user's own group, which cannot execute {} (installed \
             root:{advised} 0750), so every pipe bounces; add `group = {advised}`",
            bin.display()
        ));
    } else if group.contains('$') {
        notes.push(format!("group {group} is an expansion: cannot be verified against {}", bin.display()));
    } else if let (Some(file_gid), Some(file_group)) = (bin_gid, &bin_group) {
        let gid = group.parse::<u32>().ok().or_else(|| sys.group_gid(group));
        if gid != Some(file_gid) {
            problems.push(format!(
                "group {group} does not match the group of {} ({file_group}, gid {file_gid}): the pipe cannot \
                 execute cagepipe (installed 0750) and every pipe bounces; write `group = {file_group}`",
                bin.display()
            ));
        }
    }

    let temp = t.option("temp_errors");
    if !temp.split(':').map(str::trim).any(|c| c == "75" || c == "*") {
        problems.push(format!(
            "temp_errors ({}) does not contain 75: when cagepipe says \"try again later\" (no container running, a \
             configuration to fix) Exim bounces the mail instead of deferring it; write `temp_errors = 75:73`",
            if temp.is_empty() { "empty" } else { temp }
        ));
    }
    Some(TransportLint { transport: t.name.clone(), problems, notes })
}

/// The Exim binary to ask: `explicit`, or the first that exists.
pub(crate) fn find_exim(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => EXIM_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()),
    }
}

/// What Exim said when it failed: its first message (with the indented lines
/// that continue it), without its `LOG: PANIC DIE` banners.
fn first_message(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() { stdout } else { stderr };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("LOG:"));
    let Some(first) = lines.next() else {
        return "no output".to_string();
    };
    let mut said = first.trim().to_string();
    for more in lines.take_while(|l| l.starts_with(char::is_whitespace)) {
        said.push(' ');
        said.push_str(more.trim());
    }
    said
}

/// Run `exim [-C config] -bP ARGS`; stdout, or why it failed.
fn bp(exim: &Path, config: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(exim);
    if let Some(c) = config {
        cmd.arg("-C").arg(c);
    }
    let out = cmd
        .arg("-bP")
        .args(args)
        .env_clear()
        .env("PATH", EXIM_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exim.display()))?;
    if !out.status.success() {
        let said = first_message(&String::from_utf8_lossy(&out.stderr), &String::from_utf8_lossy(&out.stdout));
        return Err(format!("{} -bP {} failed: {said}", exim.display(), args.join(" ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every transport of Exim's effective configuration.
pub(crate) fn read_transports(exim: &Path, config: Option<&Path>) -> Result<Vec<Transport>, String> {
    let names = bp(exim, config, &["transport_list"])?;
    names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| bp(exim, config, &["transport", name]).map(|text| Transport::parse(name, &text)))
        .collect()
}

/// `name:password:gid:members` lines of /etc/group; malformed lines skipped.
fn parse_groups(text: &[u8]) -> Vec<(String, u32)> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
            if f.len() != 4 {
                return None;
            }
            let name = std::str::from_utf8(f[0]).ok()?;
            let gid = std::str::from_utf8(f[2]).ok()?.parse().ok()?;
            Some((name.to_string(), gid))
        })
        .collect()
}

/// The real system: file owners by stat, groups from /etc/group read the
/// way the account database is (root-owned, not writable by others), not
/// through NSS.
pub(crate) struct System {
    groups: Vec<(String, u32)>,
}

impl System {
    pub(crate) fn load() -> System {
        let groups = secure_file::read_root_owned(Path::new("/etc/group"), MAX_GROUP_FILE_BYTES)
            .map(|f| parse_groups(&f.contents))
            .unwrap_or_default();
        System { groups }
    }
}

impl Lookups for System {
    fn file_gid(&self, path: &Path) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| m.gid())
    }
    fn group_gid(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|(n, _)| n == name).map(|(_, g)| *g)
    }
    fn group_name(&self, gid: u32) -> Option<String> {
        self.groups.iter().find(|(_, g)| *g == gid).map(|(n, _)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /usr/sbin/cagepipe and /usr/bin/cagepipe exist, group cagepipe (990).
    struct Fake;
    impl Lookups for Fake {
        fn file_gid(&self, path: &Path) -> Option<u32> {
            [Path::new("/usr/sbin/cagepipe"), Path::new("/usr/bin/cagepipe")].contains(&path).then_some(990)
        }
        fn group_gid(&self, name: &str) -> Option<u32> {
            match name {
                "cagepipe" => Some(990),
                "nobody" => Some(65534),
                _ => None,
            }
        }
        fn group_name(&self, gid: u32) -> Option<String> {
            match gid {
                990 => Some("cagepipe".into()),
                65534 => Some("nobody".into()),
                _ => None,
            }
        }
    }

    /// What `exim4 -bP transport address_pipe` prints for the shipped form
    /// (abridged; the real output has every option of the pipe transport).
    const CLEAN: &str = "no_body_only\ncurrent_directory = \ndebug_print = T: address_pipe for $local_part@$domain\n\
        driver = pipe\ngroup = cagepipe\nheaders_add = \nuser = \n\
        command = /usr/sbin/cagepipe --raw-pipe=$address_pipe\nforce_command\nno_freeze_exec_fail\n\
        max_output = 20K\nmessage_prefix = From ${if def:return_path{$return_path}{MAILER-DAEMON}} \
        ${tod_bsdinbox}\\n\npath = /bin:/usr/bin\nreturn_fail_output\ntemp_errors = 75:73\ntimeout = 1h\n\
        no_use_shell\n";

    fn with(text: &str, from: &str, to: &str) -> Transport {
        assert!(text.contains(from), "{from:?} not in the fixture");
        Transport::parse("t", &text.replace(from, to))
    }

    fn verdict(t: &Transport) -> TransportLint {
        lint(t, &Fake).expect("names cagepipe")
    }

    fn problems(t: &Transport) -> Vec<String> {
        verdict(t).problems
    }

    #[test]
    fn the_output_of_bp_is_parsed_into_options_and_flags() {
        let t = Transport::parse("address_pipe", CLEAN);
        assert_eq!(t.name, "address_pipe");
        assert_eq!(t.option("group"), "cagepipe");
        assert_eq!(t.option("current_directory"), "", "an unset option with Exim's trailing blank");
        assert_eq!(t.option("user"), "");
        assert_eq!(t.option("debug_print"), "T: address_pipe for $local_part@$domain");
        assert_eq!(t.option("max_output"), "20K");
        assert!(t.option("message_prefix").starts_with("From ${if def:return_path"));
        assert!(t.flag("force_command") && t.flag("return_fail_output"));
        assert!(!t.flag("use_shell") && !t.flag("body_only") && !t.flag("never_printed"));
        assert_eq!(t.flags.get("freeze_exec_fail"), Some(&false));
        assert_eq!(t.cagepipe_word().as_deref(), Some("/usr/sbin/cagepipe"));
    }

    #[test]
    fn quotes_are_stripped_from_the_command_words() {
        let t = with(CLEAN, "/usr/sbin/cagepipe --raw-pipe=$address_pipe", "\"/usr/sbin/cagepipe\" -- '$address_pipe'");
        assert_eq!(t.cagepipe_word().as_deref(), Some("/usr/sbin/cagepipe"));
        assert!(t.passes_bare_address_pipe());
        let t = with(CLEAN, "--raw-pipe=$address_pipe", "\"--raw-pipe=$address_pipe\"");
        assert!(!t.passes_bare_address_pipe() && t.passes_address_pipe());
    }

    #[test]
    fn the_shipped_form_is_clean() {
        let v = verdict(&Transport::parse("t", CLEAN));
        assert!(v.problems.is_empty() && v.notes.is_empty(), "{v:?}");
        for (from, to) in [
            ("group = cagepipe", "group = 990"),
            ("temp_errors = 75:73", "temp_errors = *"),
            ("temp_errors = 75:73", "temp_errors = 73 : 75"),
            ("--raw-pipe=$address_pipe", "--raw-pipe=${address_pipe}"),
            ("/usr/sbin/cagepipe", "cagepipe"),
        ] {
            let p = problems(&with(CLEAN, from, to));
            assert!(p.is_empty(), "{to:?}: {p:?}");
        }
    }

    #[test]
    fn transports_without_cagepipe_are_not_judged() {
        for command in ["/usr/bin/procmail", "/usr/sbin/cagepipe2 -- $address_pipe", "/opt/cagepipe.d/x", ""] {
            let t = with(CLEAN, "/usr/sbin/cagepipe --raw-pipe=$address_pipe", command);
            assert_eq!(lint(&t, &Fake), None, "{command:?}");
        }
        // Exim's own address_pipe: command empty, no force_command.
        let stock = CLEAN.replace("force_command\n", "no_force_command\n");
        assert_eq!(lint(&with(&stock, "/usr/sbin/cagepipe --raw-pipe=$address_pipe", ""), &Fake), None);
    }

    #[test]
    fn each_problem_is_reported_once_with_why_and_what_to_write() {
        let cases = [
            ("force_command\n", "no_force_command\n", "force_command is missing", "add `force_command`"),
            ("no_use_shell", "use_shell", "use_shell is set", "remove `use_shell`"),
            ("--raw-pipe=$address_pipe", "-- $address_pipe", "bare `$address_pipe`", "--raw-pipe=$address_pipe`"),
            ("--raw-pipe=$address_pipe", "-- ${address_pipe}", "bare `$address_pipe`", "--raw-pipe="),
            ("--raw-pipe=$address_pipe", "--raw-pipe=x $address_pipe", "bare `$address_pipe`", "--raw-pipe="),
            ("group = cagepipe", "group = ", "group is not set", "add `group = cagepipe`"),
            ("group = cagepipe", "group = nobody", "group nobody does not match", "write `group = cagepipe`"),
            ("group = cagepipe", "group = 65534", "group 65534 does not match", "(cagepipe, gid 990)"),
            ("group = cagepipe", "group = nosuchgroup", "group nosuchgroup does not match", "`group = cagepipe`"),
            ("temp_errors = 75:73", "temp_errors = 73", "temp_errors (73) does not contain 75", "75:73`"),
            ("temp_errors = 75:73", "temp_errors = 175:73", "does not contain 75", "bounces the mail"),
            ("temp_errors = 75:73", "temp_errors = ", "temp_errors (empty) does not contain 75", "75:73`"),
            ("/usr/sbin/cagepipe", "/opt/cagepipe", "/opt/cagepipe does not exist", "correct the path"),
        ];
        for (from, to, what, advice) in cases {
            let p = problems(&with(CLEAN, from, to));
            assert_eq!(p.len(), 1, "{to:?}: {p:?}");
            assert!(p[0].contains(what) && p[0].contains(advice), "{to:?}: {p:?}");
        }
    }

    #[test]
    fn a_bare_name_is_found_in_the_transports_path_as_exim_does() {
        let bare = CLEAN.replace("/usr/sbin/cagepipe", "cagepipe");
        let v = verdict(&with(&bare, "path = /bin:/usr/bin", "path = /usr/local/bin:/usr/bin"));
        assert!(v.problems.is_empty() && v.notes.is_empty(), "{v:?}");
        let p = problems(&with(&bare, "path = /bin:/usr/bin", "path = /bin"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("cagepipe (searched the transport's path /bin) does not exist"), "{p:?}");
    }

    #[test]
    fn independent_problems_are_all_reported() {
        let t = Transport::parse(
            "t",
            "command = /opt/cagepipe -- $address_pipe\nno_force_command\nuse_shell\ngroup = \ntemp_errors = 1\n",
        );
        let p = problems(&t);
        let expected =
            ["force_command is missing", "use_shell is set", "bare `", "does not exist", "group is not set", "75"];
        assert_eq!(p.len(), expected.len(), "{p:?}");
        for (line, what) in p.iter().zip(expected) {
            assert!(line.contains(what), "{what}: {line}");
        }
    }

    #[test]
    fn a_fixed_command_needs_no_force_command() {
        let fixed = with(CLEAN, "--raw-pipe=$address_pipe", "-- /usr/bin/procmail -d $local_part");
        let v = verdict(&fixed);
        assert!(v.problems.is_empty() && v.notes == ["fixed command"], "{v:?}");
        let v = verdict(&with(&fixed.options_text(), "force_command\n", "no_force_command\n"));
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert!(v.notes[0].starts_with("fixed command; do not name it as a router's pipe_transport"), "{v:?}");
    }

    #[test]
    fn an_expanded_group_is_not_verified_and_not_a_problem() {
        let t = with(CLEAN, "group = cagepipe", "group = ${lookup{$domain}lsearch{/etc/g}}");
        let v = verdict(&t);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.notes.len(), 1);
        assert!(v.notes[0].contains("cannot be verified against /usr/sbin/cagepipe"), "{v:?}");
    }

    #[test]
    fn exims_first_message_is_kept_without_its_banners() {
        let stderr = "LOG: PANIC DIE\n  Exim configuration error in line 1 of /tmp/x.conf:\n  main option \"bogus\" \
            unknown\n2026-11-23 04:04:43 Exim configuration error in line 1 of /tmp/x.conf:\n  again\n";
        assert_eq!(
            first_message(stderr, ""),
            "Exim configuration error in line 1 of /tmp/x.conf: main option \"bogus\" unknown"
        );
        assert_eq!(first_message("", "transport nosuch not found\n"), "transport nosuch not found");
        assert_eq!(first_message("LOG: PANIC DIE\n", ""), "no output");
    }

    #[test]
    fn group_lines_are_parsed_and_malformed_ones_skipped() {
        let g = parse_groups(b"root:x:0:\ncagepipe:x:995:\nbroken\nnum:x:abc:\nmail:x:8:alice,bob\n\n");
        assert_eq!(g, vec![("root".into(), 0), ("cagepipe".into(), 995), ("mail".into(), 8)]);
    }

    impl Transport {
        /// Back to `-bP` text (for variants of a variant).
        fn options_text(&self) -> String {
            let mut s: String = self.options.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            for (k, on) in &self.flags {
                s.push_str(&format!("{}{k}\n", if *on { "" } else { "no_" }));
            }
            s
        }
    }
}
