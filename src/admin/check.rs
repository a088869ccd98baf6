//! The plain-text explanation printed by `cagepipe check` and `--dry-run`:
//! one fact a line, readable at 3 am, ending in DELIVERABLE or the reason.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::config::account::Account;
use crate::cli::CommandSpec;
use crate::config::Config;
use crate::error::Result;
use crate::admin::exim;
use crate::deliver::launch::{Launch, Place};
use crate::log::escape;
use crate::deliver::privileges::{self, Credentials, REQUIRED};
use crate::deliver::resolve::Target;
use crate::config::rollout::Placement;
use crate::deliver::sandbox::Mode;
use crate::platform::sys;

#[derive(Default)]
pub(crate) struct Report {
    lines: Vec<(String, String)>,
    /// `--format json`: one JSON object instead of lines.
    json: bool,
}

/// Keys that may appear more than once: always arrays in JSON.
const MULTI: &[&str] = &[
    "cgroup to join",
    "cgroup not joined",
    "fallback",
    "environment",
    "exim problem",
    "exim transport",
    "exim note",
    "rollout problem",
];

impl Report {
    pub(crate) fn new(json: bool) -> Report {
        Report { lines: Vec::new(), json }
    }

    fn add(&mut self, key: &str, value: String) {
        self.lines.push((key.to_string(), value));
    }

    pub(crate) fn config(&mut self, c: &Config) {
        self.add("config", c.path.display().to_string());
        let crate::config::Backend::Pidfile { line, .. } = &c.backend;
        self.add("container source", format!("{} ({} line {line})", c.backend.describe(), c.path.display()));
        let f = c.features;
        let named = [("pidfd", f.pidfd), ("close_range", f.close_range), ("clone_into_cgroup", f.clone_into_cgroup)];
        let on: Vec<&str> = named.iter().filter(|(_, used)| *used).map(|(n, _)| *n).collect();
        let off: Vec<&str> = named.iter().filter(|(_, used)| !*used).map(|(n, _)| *n).collect();
        let mut features =
            format!("used where the kernel has them: {}", if on.is_empty() { "none".into() } else { on.join(", ") });
        if !off.is_empty() {
            features.push_str(&format!("; disabled by [kernel] disable: {}", off.join(", ")));
        }
        self.add("kernel features", features);
        let sandbox = match c.sandbox.mode {
            Mode::Off => "off",
            Mode::BestEffort => "landlock, best-effort: what the kernel supports",
            Mode::Required => "landlock, required: all of it or exit 75",
        };
        self.add("sandbox", sandbox.into());
        let line = match &c.rollout {
            crate::config::Rollout::All => String::new(),
            crate::config::Rollout::Listed { line, .. } => format!(" ({} line {line})", c.path.display()),
        };
        self.add("rollout", format!("{}{line}", c.rollout.describe()));
    }

    /// Where this account's deliveries run. `resolving_anyway`: check goes on
    /// to show what containing an uncontained account would find.
    pub(crate) fn placement(&mut self, p: &Placement, resolving_anyway: bool) {
        let mut text = format!("{}: {}", p.state(), p.why());
        if !p.is_contained() {
            text.push_str("; deliveries run on the host as Exim would run them without cagepipe");
            if resolving_anyway {
                text.push_str("; what follows is what containing the account would find");
            }
        }
        self.add("placement", text);
    }

    /// `@groups` in `[rollout] contain` that do not exist.
    pub(crate) fn unknown_rollout_groups(&mut self, groups: &[String]) {
        for g in groups {
            self.add("rollout problem", format!("@{g} is not a group in /etc/group: it contains nobody"));
        }
    }

    pub(crate) fn account(&mut self, a: &Account) {
        let groups: Vec<String> = a.groups.iter().map(u32::to_string).collect();
        self.add("user", format!("{} (uid {}, gid {}, groups {})", a.name, a.uid, a.gid, groups.join(",")));
        self.add("home", a.home.display().to_string());
    }

    pub(crate) fn pidfile(&mut self, p: &Path) {
        self.add("pidfile", p.display().to_string());
    }

    pub(crate) fn target(&mut self, t: &Target) {
        self.add("target", format!("pid {} running since {} UTC", t.pid, utc(t.started_epoch)));
        let ns: Vec<String> = t.foreign.iter().map(|n| format!("{}:[{}]", n.kind.name, n.inode)).collect();
        self.add("namespaces to enter", ns.join(" "));
        for d in &t.cgroups.join {
            self.add("cgroup to join", d.to_string());
        }
        for h in &t.cgroups.unmounted {
            self.add("cgroup not joined", format!("{h} (hierarchy not mounted on this host)"));
        }
        self.add(
            "enter with",
            if t.pidfd.is_some() { "pidfd (one atomic setns)" } else { "namespace files, one setns each" }.into(),
        );
        for f in &t.fallbacks {
            self.add("fallback", f.clone());
        }
    }

    pub(crate) fn credentials(&mut self, c: &Credentials) {
        let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
        self.add("runs inside as", format!("uid {} gid {} groups {}", c.uid, c.gid, groups.join(",")));
    }

    pub(crate) fn capabilities(&mut self) {
        let needed: Vec<&str> = REQUIRED.iter().map(|c| c.name).collect();
        let held = sys::capget().map(|c| c.permitted).unwrap_or(0);
        let missing = privileges::missing_names(held, &REQUIRED);
        self.add("capabilities needed", needed.join(","));
        self.add("capabilities missing", if missing.is_empty() { "none".into() } else { missing });
    }

    pub(crate) fn plan(&mut self, launch: &Launch, spec: &CommandSpec) {
        let words: Vec<String> = spec.argv().iter().map(|w| escape(&crate::parse::pipe_text::quote_word(w))).collect();
        self.add("command", words.join(" "));
        let tried: Vec<String> = launch.candidates.iter().map(|c| escape(c.as_bytes())).collect();
        self.add("exec tries", tried.join(" "));
        for e in &launch.env {
            self.add("environment", escape(e.as_bytes()));
        }
        match launch.place {
            Place::Container => self.add(
                "cwd",
                format!("{} inside the container if it exists there, else /", escape(launch.cwd.as_bytes())),
            ),
            Place::Host => {
                self.add(
                    "runs on the host as",
                    format!(
                        "uid {} gid {} groups {}",
                        launch.credentials.uid,
                        launch.credentials.gid,
                        launch.credentials.groups.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                    ),
                );
                self.add("cwd", "unchanged: where Exim started cagepipe, on the host".into());
            }
        }
        if let Some(sandbox) = &launch.sandbox {
            let shown = |paths: &[std::ffi::CString]| {
                let paths: Vec<String> = paths.iter().map(|p| escape(p.as_bytes())).collect();
                if paths.is_empty() {
                    "nothing".into()
                } else {
                    format!("beneath {}", paths.join(" "))
                }
            };
            self.add("sandbox may write", shown(&sandbox.write));
            self.add("sandbox may execute", shown(&sandbox.execute));
        }
        self.add("dry run", "nothing was executed".into());
    }

    /// Exim's transports that name cagepipe, judged; the number of problems.
    pub(crate) fn exim(&mut self, explicit: Option<&Path>, config: Option<&Path>) -> usize {
        let Some(bin) = exim::find_exim(explicit) else {
            let looked = exim::EXIM_CANDIDATES.join(", ");
            self.add("exim", format!("not found ({looked}): Exim's side not checked (a Postfix host?)"));
            return 0;
        };
        let shown = match config {
            Some(c) => format!("{} -C {}", bin.display(), c.display()),
            None => bin.display().to_string(),
        };
        self.add("exim", escape(shown.as_bytes()));
        if !bin.exists() {
            let why = format!(
                "--exim {} does not exist: Exim's transports were not checked; name the Exim binary (usually one \
                 of {})",
                bin.display(),
                exim::EXIM_CANDIDATES.join(", ")
            );
            self.add("exim problem", escape(why.as_bytes()));
            return 1;
        }
        let transports = match exim::read_transports(&bin, config) {
            Ok(t) => t,
            Err(e) => {
                // Exim refusing its configuration also means it delivers nothing.
                let why = format!("{e}: no transport was checked; fix what Exim says first");
                self.add("exim problem", escape(why.as_bytes()));
                return 1;
            }
        };
        let system = exim::System::load();
        let verdicts: Vec<exim::Verdict> = transports.iter().filter_map(|t| exim::lint(t, &system)).collect();
        self.add("exim transports", format!("{} read, {} run cagepipe", transports.len(), verdicts.len()));
        if verdicts.is_empty() {
            self.add(
                "exim note",
                "no transport runs cagepipe: pipe deliveries are not contained yet (see exim-config/)".into(),
            );
        }
        let mut problems = 0;
        for v in verdicts {
            for p in &v.problems {
                self.add("exim problem", escape(format!("{}: {p}", v.transport).as_bytes()));
                problems += 1;
            }
            if v.problems.is_empty() {
                let notes = if v.notes.is_empty() { String::new() } else { format!(" ({})", v.notes.join("; ")) };
                self.add("exim transport", escape(format!("{}: ok{notes}", v.transport).as_bytes()));
            }
        }
        problems
    }

    fn render(&self) -> String {
        let width = self.lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        self.lines.iter().map(|(k, v)| format!("{k:width$}  {v}\n")).collect()
    }

    /// Print everything and the delivery verdict; return the exit code.
    pub(crate) fn finish<T>(self, result: Result<T>) -> i32 {
        if self.json {
            return self.print_json(result.map(|_| ()), "DELIVERABLE", "NOT DELIVERABLE", 0);
        }
        let mut out = self.render();
        let code = verdict(&mut out, &result, "DELIVERABLE", "NOT DELIVERABLE");
        print!("{out}");
        code
    }

    /// The same facts as one JSON object: each line's key in snake_case
    /// (keys in `MULTI` are arrays), then `verdict`, `exit`, `reason`.
    fn print_json(self, result: Result<()>, ok: &str, bad: &str, exim_problems: usize) -> i32 {
        let mut fields: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in self.lines {
            let key = k.replace(' ', "_");
            match fields.iter_mut().find(|(f, _)| *f == key) {
                Some((_, values)) => values.push(v),
                None => fields.push((key, vec![v])),
            }
        }
        let mut out = String::from("{");
        for (key, values) in &fields {
            let multi = MULTI.contains(&key.replace('_', " ").as_str());
            let value = if multi {
                format!("[{}]", values.iter().map(|v| json_string(v)).collect::<Vec<_>>().join(","))
            } else {
                json_string(values.last().map_or("", String::as_str))
            };
            out.push_str(&format!("{}:{value},", json_string(key)));
        }
        let (verdict, mut code, reason) = match &result {
            Ok(()) => (ok, 0, "null".to_string()),
            Err(e) => (bad, e.exit_code(), json_string(&escape(e.to_string().as_bytes()))),
        };
        if exim_problems > 0 && code == 0 {
            code = crate::error::exit::CONFIG;
        }
        out.push_str(&format!(
            "\"verdict\":{},\"exit\":{code},\"reason\":{reason},\"exim_problems\":{exim_problems}}}\n",
            json_string(verdict)
        ));
        print!("{out}");
        code
    }

    /// `check`: the verdict on the delivery (or, for root without a user,
    /// on cagepipe's own installation), then Exim's. Exim's problems make
    /// the exit 78 when everything else is fine.
    pub(crate) fn finish_check(self, result: Result<()>, installation_only: bool, exim_problems: usize) -> i32 {
        let (ok, bad) = if installation_only {
            ("CONFIGURATION OK", "CONFIGURATION NOT OK")
        } else {
            ("DELIVERABLE", "NOT DELIVERABLE")
        };
        if self.json {
            return self.print_json(result, ok, bad, exim_problems);
        }
        let mut out = self.render();
        let mut code = verdict(&mut out, &result, ok, bad);
        if exim_problems > 0 {
            out.push_str(&format!("EXIM CONFIGURATION: {exim_problems} problem(s)\n"));
            if code == 0 {
                code = crate::error::exit::CONFIG;
            }
        }
        print!("{out}");
        code
    }
}

/// A JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn verdict<T>(out: &mut String, result: &Result<T>, ok: &str, bad: &str) -> i32 {
    match result {
        Ok(_) => {
            out.push_str(&format!("{ok}\n"));
            0
        }
        Err(e) => {
            out.push_str(&format!("{bad} (exit {}): {}\n", e.exit_code(), escape(e.to_string().as_bytes())));
            e.exit_code()
        }
    }
}

/// Seconds since the epoch as "YYYY-MM-DD HH:MM:SS" (UTC, no tz database).
pub(crate) fn utc(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\u000a\\u0001é\"");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_392_000 + 3661), "2026-11-23 01:01:01");
    }

    #[test]
    fn the_verdict_is_the_exit_code() {
        let r = Report::default();
        assert_eq!(r.finish::<()>(Ok(())), 0);
        let r = Report::default();
        assert_eq!(r.finish::<()>(Err(crate::error::Error::Usage("x".into()))), 64);
        assert_eq!(Report::default().finish_check(Ok(()), false, 0), 0);
        assert_eq!(Report::default().finish_check(Ok(()), true, 2), 78);
        let bad = Err(crate::error::Error::Usage("x".into()));
        assert_eq!(Report::default().finish_check(bad, false, 2), 64, "the delivery's own verdict comes first");
    }
}
