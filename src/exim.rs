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

/// Where Exim usually lives: Debian/Ubuntu, EL/DirectAdmin/cPanel, source builds.
pub const EXIM_CANDIDATES: &[&str] =
    &["/usr/sbin/exim4", "/usr/sbin/exim", "/usr/exim/bin/exim", "/usr/local/sbin/exim"];

/// One transport as `exim -bP transport NAME` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    pub name: String,
    /// `name = value` options (value as printed, possibly empty).
    pub options: BTreeMap<String, String>,
    /// Booleans: `force_command` → true, `no_force_command` → false.
    pub flags: BTreeMap<String, bool>,
}

impl Transport {
    /// Parse the `-bP transport NAME` output.
    pub fn parse(name: &str, text: &str) -> Transport {
        let mut t = Transport { name: name.to_string(), ..Default::default() };
        for line in text.lines() {
            let line = line.trim_end();
            if let Some((k, v)) = line.split_once(" = ") {
                t.options.insert(k.trim().to_string(), v.to_string());
            } else if let Some(k) = line.strip_suffix(" =") {
                t.options.insert(k.trim().to_string(), String::new());
            } else if !line.is_empty() && !line.contains(' ') {
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

    /// The command's words, quotes stripped (enough to find programs and
    /// the `$address_pipe` argument; Exim's own splitting is not needed).
    fn command_words(&self) -> Vec<String> {
        self.option("command")
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
            .collect()
    }

    /// The path of the cagepipe the command runs, if it runs one.
    pub fn cagepipe_path(&self) -> Option<PathBuf> {
        self.command_words().into_iter().map(PathBuf::from).find(|p| p.file_name().is_some_and(|n| n == "cagepipe"))
    }
}

/// What `lint` needs from the system, injected so tests need no files.
pub trait Lookups {
    /// The gid owning `path`, or None if it does not exist.
    fn file_gid(&self, path: &Path) -> Option<u32>;
    /// The gid of group `name`.
    fn group_gid(&self, name: &str) -> Option<u32>;
}

/// How a cagepipe transport was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub transport: String,
    /// Each a sentence: what is wrong, why it matters, what to write.
    pub problems: Vec<String>,
    /// Facts worth showing that are not problems.
    pub notes: Vec<String>,
}

/// Judge one transport; None if it does not name cagepipe.
pub fn lint(t: &Transport, sys: &dyn Lookups) -> Option<Verdict> {
    let bin = t.cagepipe_path()?;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let words = t.command_words();
    let passes_pipe = t.option("command").contains("address_pipe");
    let bare = words.iter().any(|w| w == "$address_pipe" || w == "${address_pipe}");

    if passes_pipe && !t.flag("force_command") {
        problems.push(
            "force_command is missing: Exim runs the user's pipe from .forward files and aliases itself, on the host, \
             and never calls cagepipe; add force_command"
                .to_string(),
        );
    }
    if !passes_pipe {
        notes.push("fixed command (no $address_pipe): not used for users' pipes".to_string());
    }
    if t.flag("use_shell") {
        problems.push(
            "use_shell is set: with force_command /bin/sh pipes cagepipe into the user's command, which then runs \
             outside the container while Exim logs a success; remove use_shell"
                .to_string(),
        );
    }
    if bare {
        problems.push(
            "the command passes the bare `$address_pipe` form: Exim string-expands the user's pipe text as the user, \
             on the host (${run{...}} and ${readfile{...}} escape the container) and moves single-quoted words to \
             the end; write `--raw-pipe=$address_pipe`"
                .to_string(),
        );
    }
    let group = t.option("group");
    match sys.file_gid(&bin) {
        None => problems.push(format!("{} does not exist: every delivery through this transport fails", bin.display())),
        Some(_) if group.is_empty() => problems.push(format!(
            "group is not set: the pipe runs with the user's own group and cannot execute {} (installed \
             root:cagepipe 0750); add `group = cagepipe`",
            bin.display()
        )),
        Some(_) if group.contains('$') => {
            notes.push(format!("group {group} is an expansion: not verified against {}", bin.display()))
        }
        Some(file_gid) => {
            let gid = group.parse::<u32>().ok().or_else(|| sys.group_gid(group));
            if gid != Some(file_gid) {
                problems.push(format!(
                    "group {group} does not match the group of {} (gid {file_gid}): the pipe cannot execute it; set \
                     `group` to the binary's group",
                    bin.display()
                ));
            }
        }
    }
    let temp = t.option("temp_errors");
    if !temp.split(':').map(str::trim).any(|c| c == "75" || c == "*") {
        problems.push(format!(
            "temp_errors ({}) does not contain 75: when cagepipe says \"try again later\" (no container running, a \
             configuration to fix) Exim bounces the message; write `temp_errors = 75:73`",
            if temp.is_empty() { "empty" } else { temp }
        ));
    }
    Some(Verdict { transport: t.name.clone(), problems, notes })
}

/// The Exim binary to ask: `explicit`, or the first that exists.
pub fn find_exim(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => EXIM_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()),
    }
}

/// Run `exim [-C config] -bP ARGS`; stdout, or the first line of the failure.
fn bp(exim: &Path, config: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(exim);
    if let Some(c) = config {
        cmd.arg("-C").arg(c);
    }
    let out = cmd
        .arg("-bP")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exim.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Exim's own words, without its "LOG: PANIC DIE" banner.
        let said: Vec<&str> = err
            .lines()
            .chain(stdout.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("LOG:"))
            .collect();
        let said = if said.is_empty() { "no output".to_string() } else { said.join(" ") };
        return Err(format!("{} -bP {} failed: {said}", exim.display(), args.join(" ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every transport of Exim's effective configuration.
pub fn read_transports(exim: &Path, config: Option<&Path>) -> Result<Vec<Transport>, String> {
    let names = bp(exim, config, &["transport_list"])?;
    names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| bp(exim, config, &["transport", name]).map(|text| Transport::parse(name, &text)))
        .collect()
}

/// The real system: file owners by stat, groups from /etc/group.
pub struct System;

impl Lookups for System {
    fn file_gid(&self, path: &Path) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| m.gid())
    }
    fn group_gid(&self, name: &str) -> Option<u32> {
        let text = std::fs::read_to_string("/etc/group").ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == name).then(|| f[2].parse().ok()).flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Lookups for Fake {
        fn file_gid(&self, path: &Path) -> Option<u32> {
            (path == Path::new("/usr/sbin/cagepipe")).then_some(990)
        }
        fn group_gid(&self, name: &str) -> Option<u32> {
            match name {
                "cagepipe" => Some(990),
                "nobody" => Some(65534),
                _ => None,
            }
        }
    }

    const CLEAN: &str = "no_body_only\ncurrent_directory = \ndriver = pipe\ngroup = cagepipe\n\
        command = /usr/sbin/cagepipe --raw-pipe=$address_pipe\nforce_command\nno_use_shell\n\
        temp_errors = 75:73\nreturn_fail_output\nmax_output = 20K\n";

    fn with(text: &str, from: &str, to: &str) -> Transport {
        assert!(text.contains(from), "{from:?} not in the fixture");
        Transport::parse("t", &text.replace(from, to))
    }

    fn problems(t: &Transport) -> Vec<String> {
        lint(t, &Fake).expect("names cagepipe").problems
    }

    #[test]
    fn the_output_of_bp_is_parsed_into_options_and_flags() {
        let t = Transport::parse("cagepipe_pipe", CLEAN);
        assert_eq!(t.option("group"), "cagepipe");
        assert_eq!(t.option("current_directory"), "");
        assert!(t.flag("force_command") && !t.flag("use_shell") && !t.flag("body_only"));
        assert_eq!(t.cagepipe_path(), Some(PathBuf::from("/usr/sbin/cagepipe")));
    }

    #[test]
    fn the_shipped_form_is_clean() {
        let v = lint(&Transport::parse("t", CLEAN), &Fake).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let numeric = with(CLEAN, "group = cagepipe", "group = 990");
        assert!(problems(&numeric).is_empty());
        let star = with(CLEAN, "temp_errors = 75:73", "temp_errors = *");
        assert!(problems(&star).is_empty());
    }

    #[test]
    fn transports_without_cagepipe_are_not_judged() {
        let t = with(CLEAN, "/usr/sbin/cagepipe --raw-pipe=$address_pipe", "/usr/bin/procmail");
        assert_eq!(lint(&t, &Fake), None);
        let t = with(CLEAN, "/usr/sbin/cagepipe", "/usr/sbin/cagepipe2");
        assert_eq!(lint(&t, &Fake), None);
    }

    #[test]
    fn each_problem_is_reported_once_with_what_to_write() {
        let cases = [
            ("force_command\n", "no_force_command\n", "force_command is missing"),
            ("no_use_shell", "use_shell", "use_shell is set"),
            ("--raw-pipe=$address_pipe", "-- $address_pipe", "bare `$address_pipe`"),
            ("--raw-pipe=$address_pipe", "-- ${address_pipe}", "bare `$address_pipe`"),
            ("group = cagepipe", "group = ", "group is not set"),
            ("group = cagepipe", "group = nobody", "group nobody does not match"),
            ("group = cagepipe", "group = nosuchgroup", "group nosuchgroup does not match"),
            ("temp_errors = 75:73", "temp_errors = 73", "does not contain 75"),
            ("temp_errors = 75:73", "temp_errors = 175:73", "does not contain 75"),
            ("/usr/sbin/cagepipe", "/opt/cagepipe", "does not exist"),
        ];
        for (from, to, expect) in cases {
            let p = problems(&with(CLEAN, from, to));
            assert_eq!(p.len(), 1, "{to:?}: {p:?}");
            assert!(p[0].contains(expect), "{to:?}: {p:?}");
        }
    }

    #[test]
    fn a_fixed_command_needs_no_force_command_and_an_expanded_group_is_not_verified() {
        let t = with(
            &CLEAN.replace("force_command\n", "no_force_command\n"),
            "--raw-pipe=$address_pipe",
            "-- /usr/bin/procmail",
        );
        let v = lint(&t, &Fake).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert!(v.notes.iter().any(|n| n.contains("fixed command")));
        let t = with(CLEAN, "group = cagepipe", "group = ${lookup{$domain}lsearch{/etc/g}}");
        let v = lint(&t, &Fake).unwrap();
        assert!(v.problems.is_empty() && v.notes.iter().any(|n| n.contains("not verified")));
    }
}
