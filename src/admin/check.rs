//! The plain-text explanation printed by `cagepipe check` and `--dry-run`:
//! one fact a line, readable at 3 am, ending in DELIVERABLE or the reason.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::admin::exim;
use crate::config::account::{Account, Database};
use crate::config::rollout::{self, Placement};
use crate::config::{self, Config, Rollout};
use crate::deliver::plan::{Place, Plan};
use crate::deliver::privileges::{self, Credentials, REQUIRED};
use crate::deliver::resolve::Target;
use crate::deliver::sandbox::Mode;
use crate::deliver::Witness;
use crate::error::{Finding, Result};
use crate::escape::escape;
use crate::parse::pipe_text::quote_word;
use crate::platform::kernel::{Kernel, Linux};

/// A JSON value, for `--format json`: numbers as numbers, lists as arrays.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Num(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }
    fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Json {
        Json::Arr(items.into_iter().map(|s| Json::str(s.as_ref())).collect())
    }
    fn nums<N: Into<i64>>(items: impl IntoIterator<Item = N>) -> Json {
        Json::Arr(items.into_iter().map(|n| Json::Num(n.into())).collect())
    }
    fn render(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => out.push_str(&json_string(s)),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&json_string(key));
                    out.push(':');
                    value.render(out);
                }
                out.push('}');
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Report {
    /// The text form: one fact a line.
    lines: Vec<(String, String)>,
    /// The JSON form: the same facts, structured; a key set twice keeps
    /// the last value, a list key collects.
    fields: Vec<(&'static str, Json)>,
    /// `--format json`: one JSON object instead of lines.
    json: bool,
    /// Problems of cagepipe's own configuration that do not stop a
    /// delivery (names in `[rollout]` that do not exist).
    problems: usize,
}

impl Report {
    pub(crate) fn new(json: bool) -> Report {
        Report { json, ..Report::default() }
    }

    /// One line of the text form. Values are escaped where they are made;
    /// this is the last line of defence for one that was not (a name, a
    /// path from passwd), so nothing reaches root's terminal raw.
    fn add(&mut self, key: &str, value: String) {
        self.lines.push((key.to_string(), crate::escape::for_terminal(&value.replace('\n', "\\n"))));
    }

    fn set(&mut self, key: &'static str, value: Json) {
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.fields.push((key, value)),
        }
    }

    /// Append to the list `key`.
    fn push(&mut self, key: &'static str, value: Json) {
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some((_, Json::Arr(items))) => items.push(value),
            _ => self.set(key, Json::Arr(vec![value])),
        }
    }

    fn capabilities(&mut self, k: &mut impl Kernel) {
        let needed: Vec<&str> = REQUIRED.iter().map(|c| c.name).collect();
        let held = k.capget().map(|c| c.permitted).unwrap_or(0);
        let missing = privileges::missing_names(held, &REQUIRED);
        self.add("capabilities needed", needed.join(","));
        self.add("capabilities missing", if missing.is_empty() { "none".into() } else { missing.clone() });
        let missing: Vec<&str> = missing.split(", ").filter(|m| !m.is_empty()).collect();
        self.set("capabilities", Json::Obj(vec![("needed", Json::strs(needed)), ("missing", Json::strs(missing))]));
    }

    /// Names in `[rollout] contain` that do not exist: users that stay
    /// uncontained, `@groups` that contain nobody.
    fn unknown_rollout_names(&mut self, users: &[String], groups: &[String]) {
        let users = users.iter().map(|u| format!("{u} is not an account in /etc/passwd: it stays uncontained"));
        let groups = groups.iter().map(|g| format!("@{g} is not a group in /etc/group: it contains nobody"));
        for problem in users.chain(groups) {
            let problem = escape(problem.as_bytes());
            self.add("rollout problem", problem.clone());
            self.push("rollout_problems", Json::str(problem));
            self.problems += 1;
        }
    }
    /// Exim's transports that name cagepipe, judged; the number of problems.
    pub(crate) fn exim(&mut self, explicit: Option<&Path>, config: Option<&Path>) -> usize {
        let first = self.lines.len();
        let problems = self.exim_lines(explicit, config);
        let of = |key: &str, lines: &[(String, String)]| -> Vec<String> {
            lines.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
        };
        let lines = &self.lines[first..];
        let exim = Json::Obj(vec![
            ("binary", of("exim", lines).pop().map_or(Json::Null, Json::Str)),
            ("transports", of("exim transports", lines).pop().map_or(Json::Null, Json::Str)),
            ("ok", Json::strs(of("exim transport", lines))),
            ("problems", Json::strs(of("exim problem", lines))),
            ("notes", Json::strs(of("exim note", lines))),
        ]);
        self.set("exim", exim);
        problems
    }

    fn exim_lines(&mut self, explicit: Option<&Path>, config: Option<&Path>) -> usize {
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
        let verdicts: Vec<exim::TransportLint> = transports.iter().filter_map(|t| exim::lint(t, &system)).collect();
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

    /// Print everything and the delivery verdict (`--dry-run`); return the
    /// exit code.
    pub(crate) fn finish(self, result: Result<()>) -> i32 {
        self.print(result, ("DELIVERABLE", "NOT DELIVERABLE"), 0)
    }

    /// `check`: the verdict on the delivery (or, for root without a user,
    /// on cagepipe's own installation), then Exim's. Exim's problems make
    /// the exit 78 when everything else is fine.
    pub(crate) fn finish_check(self, result: Result<()>, installation_only: bool, exim_problems: usize) -> i32 {
        let words = if installation_only {
            ("CONFIGURATION OK", "CONFIGURATION NOT OK")
        } else {
            ("DELIVERABLE", "NOT DELIVERABLE")
        };
        self.print(result, words, exim_problems)
    }

    fn print(mut self, result: Result<()>, (ok, bad): (&str, &str), exim_problems: usize) -> i32 {
        // A failure of the delivery itself comes first; Exim's problems
        // decide only when all else is fine.
        let (verdict, code, reason) = match &result {
            Ok(()) => (ok, Finding::Check { problems: exim_problems + self.problems }.exit_code(), None),
            Err(e) => (bad, e.exit_code(), Some(escape(e.to_string().as_bytes()))),
        };
        if self.json {
            self.set("verdict", Json::str(verdict));
            self.set("exit", Json::Num(code.into()));
            self.set("reason", reason.map_or(Json::Null, Json::Str));
            self.set("exim_problems", Json::Num(exim_problems as i64));
            let mut out = String::new();
            Json::Obj(self.fields).render(&mut out);
            println!("{out}");
            return code;
        }
        let mut out = self.render();
        match &reason {
            None => out.push_str(&format!("{verdict}\n")),
            Some(reason) => out.push_str(&format!("{verdict} (exit {code}): {reason}\n")),
        }
        if self.problems > 0 {
            out.push_str(&format!("ROLLOUT CONFIGURATION: {} problem(s)\n", self.problems));
        }
        if exim_problems > 0 {
            out.push_str(&format!("EXIM CONFIGURATION: {exim_problems} problem(s)\n"));
        }
        print!("{}", crate::escape::for_terminal(&out));
        code
    }
}

/// `check` by root without a user: the configuration, the rollout setting's
/// groups and cagepipe's own capabilities.
pub(crate) fn installation(config_path: &Path, out: &mut Report) -> Result<()> {
    let c = config::load(config_path)?;
    out.config(&c);
    let db = Database::default();
    out.unknown_rollout_names(&rollout::unknown_users(&c.rollout, &db), &rollout::unknown_groups(&c.rollout, &db)?);
    out.capabilities(&mut Linux::default());
    Ok(())
}

/// `check` and `--dry-run` render what the delivery pipeline decided, step
/// by step: the same calls the audit line of a delivery is built from.
impl Witness for Report {
    fn config(&mut self, c: &Config) {
        self.add("config", c.path.display().to_string());
        let line_of = |b: &config::Backend| if b.line() != 0 { b.line() } else { c.backend_line };
        for b in &c.backends {
            let at = match line_of(b) {
                0 => format!("({}, the default)", c.path.display()),
                line => format!("({} line {line})", c.path.display()),
            };
            self.add("container source", format!("{} {at}", b.describe()));
        }
        let f = c.features;
        let named = f.named();
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
        let (line_text, rollout_line) = match &c.rollout {
            Rollout::All => (String::new(), Json::Null),
            Rollout::Listed { line, .. } => (format!(" ({} line {line})", c.path.display()), Json::Num(*line as i64)),
        };
        self.add("rollout", format!("{}{line_text}", c.rollout.describe()));
        let contain = match &c.rollout {
            Rollout::All => Json::str("all"),
            Rollout::Listed { users, groups, .. } => {
                Json::strs(users.iter().cloned().chain(groups.iter().map(|g| format!("@{g}"))))
            }
        };
        self.set(
            "config",
            Json::Obj(vec![
                ("path", Json::str(c.path.display().to_string())),
                (
                    "container",
                    Json::Arr(
                        c.backends
                            .iter()
                            .map(|b| {
                                Json::Obj(vec![
                                    ("backend", Json::str(b.engine())),
                                    ("setting", Json::str(b.describe())),
                                    ("line", Json::Num(line_of(b) as i64)),
                                ])
                            })
                            .collect(),
                    ),
                ),
                ("kernel_features", Json::Obj(vec![("used", Json::strs(on)), ("disabled", Json::strs(off))])),
                ("sandbox", Json::str(c.sandbox.mode.name())),
                ("rollout", Json::Obj(vec![("contain", contain), ("line", rollout_line)])),
            ]),
        );
    }

    fn account(&mut self, a: &Account) {
        let groups: Vec<String> = a.groups.iter().map(u32::to_string).collect();
        self.add("user", format!("{} (uid {}, gid {}, groups {})", a.name, a.uid, a.gid, groups.join(",")));
        self.add("home", a.home.display().to_string());
        self.set(
            "user",
            Json::Obj(vec![
                ("name", Json::str(&a.name)),
                ("uid", Json::Num(a.uid.into())),
                ("gid", Json::Num(a.gid.into())),
                ("groups", Json::nums(a.groups.iter().copied())),
                ("home", Json::str(escape(a.home.as_os_str().as_encoded_bytes()))),
            ]),
        );
    }

    /// Where this account's deliveries run. `resolving_anyway`: check goes on
    /// to show what containing an uncontained account would find.
    fn placement(&mut self, p: &Placement, resolving_anyway: bool) {
        let mut text = format!("{}: {}", p.state(), p.why());
        if !p.is_contained() {
            text.push_str("; deliveries run on the host as Exim would run them without cagepipe");
            if resolving_anyway {
                text.push_str("; what follows is what containing the account would find");
            }
        }
        self.add("placement", text);
        self.set(
            "placement",
            Json::Obj(vec![
                ("contained", Json::Bool(p.is_contained())),
                ("state", Json::str(p.state())),
                ("why", Json::str(p.why())),
            ]),
        );
    }

    fn looking_in(&mut self, places: &[String]) {
        for p in places {
            self.add("looks in", escape(p.as_bytes()));
        }
        self.set("looks_in", Json::strs(places.iter().map(|p| escape(p.as_bytes()))));
    }

    fn target(&mut self, t: &Target) {
        self.add("container", escape(t.source.as_bytes()));
        for e in &t.evidence {
            self.add("rule", escape(e.as_bytes()));
        }
        self.add("target", format!("pid {} running since {} UTC", t.pid, utc(t.started_epoch)));
        let ns: Vec<String> = t.foreign.iter().map(|n| format!("{}:[{}]", n.kind.name, n.inode)).collect();
        self.add("namespaces to enter", ns.join(" "));
        for d in &t.cgroups.join {
            self.add("cgroup to join", escape(d.to_string().as_bytes()));
        }
        for d in &t.cgroups.already_in {
            self.add("cgroup not joined", format!("{} (cagepipe is already in it)", escape(d.to_string().as_bytes())));
        }
        for h in &t.cgroups.unmounted {
            self.add("cgroup not joined", format!("{} (hierarchy not mounted on this host)", escape(h.as_bytes())));
        }
        let pinned = if t.pidfd.is_some() { "pinned by a pidfd" } else { "pinned by its /proc directory" };
        let enter_with = format!("the namespace files checked above, one setns each; {pinned}");
        self.add("enter with", enter_with);
        for f in &t.fallbacks {
            self.add("fallback", f.clone());
        }
        let dir = |d: &crate::deliver::cgroup::CgroupDir| {
            Json::Obj(vec![
                ("hierarchy", Json::str(escape(d.hierarchy.as_bytes()))),
                ("dir", Json::str(escape(d.dir.as_os_str().as_encoded_bytes()))),
            ])
        };
        self.set(
            "target",
            Json::Obj(vec![
                ("pid", Json::Num(t.pid.into())),
                ("source", Json::str(escape(t.source.as_bytes()))),
                ("rules", Json::strs(t.evidence.iter().map(|e| escape(e.as_bytes())))),
                ("started", Json::str(format!("{} UTC", utc(t.started_epoch)))),
                ("started_epoch", Json::Num(t.started_epoch)),
                ("pinned_by", Json::str(if t.pidfd.is_some() { "pidfd" } else { "proc directory" })),
                ("fallbacks", Json::strs(&t.fallbacks)),
            ]),
        );
        let namespaces = t
            .foreign
            .iter()
            .map(|n| Json::Obj(vec![("kind", Json::str(n.kind.name)), ("inode", Json::Num(n.inode as i64))]))
            .collect();
        self.set("namespaces", Json::Arr(namespaces));
        self.set(
            "cgroups",
            Json::Obj(vec![
                ("join", Json::Arr(t.cgroups.join.iter().map(dir).collect())),
                ("already_in", Json::Arr(t.cgroups.already_in.iter().map(dir).collect())),
                ("not_joined", Json::strs(t.cgroups.unmounted.iter().map(|h| escape(h.as_bytes())))),
            ]),
        );
    }

    fn credentials(&mut self, c: &Credentials) {
        let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
        self.add("runs inside as", format!("uid {} gid {} groups {}", c.uid, c.gid, groups.join(",")));
        self.set("credentials", credentials_json(c, "container"));
        self.capabilities(&mut Linux::default());
    }

    fn plan(&mut self, plan: &Plan) {
        let words: Vec<String> = plan.argv.iter().map(|w| escape(&quote_word(w.as_bytes()))).collect();
        self.add("command", words.join(" "));
        let tried: Vec<String> = plan.candidates.iter().map(|c| escape(c.as_bytes())).collect();
        self.add("exec tries", tried.join(" "));
        for e in plan.env.iter() {
            self.add("environment", escape(e.as_bytes()));
        }
        match (&plan.place, &plan.cwd) {
            (Place::Container(_), Some(cwd)) => {
                self.add("cwd", format!("{} inside the container if it exists there, else /", escape(cwd.as_bytes())))
            }
            _ => {
                let c = &plan.credentials;
                let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
                self.add("runs on the host as", format!("uid {} gid {} groups {}", c.uid, c.gid, groups.join(",")));
                self.add("cwd", "unchanged: where Exim started cagepipe, on the host".into());
                self.set("credentials", credentials_json(c, "host"));
            }
        }
        let shown = |paths: &[std::ffi::CString]| paths.iter().map(|p| escape(p.as_bytes())).collect::<Vec<_>>();
        if let Some(sandbox) = &plan.sandbox {
            let text = |paths: Vec<String>| {
                if paths.is_empty() {
                    "nothing".into()
                } else {
                    format!("beneath {}", paths.join(" "))
                }
            };
            self.add("sandbox may write", text(shown(&sandbox.write)));
            self.add("sandbox may execute", text(shown(&sandbox.execute)));
        }
        self.add("dry run", "nothing was executed".into());
        let sandbox = plan.sandbox.as_ref().map_or(Json::Null, |s| {
            Json::Obj(vec![("write", Json::strs(shown(&s.write))), ("execute", Json::strs(shown(&s.execute)))])
        });
        self.set(
            "command",
            Json::Obj(vec![
                ("argv", Json::strs(plan.argv.iter().map(|w| escape(w.as_bytes())))),
                ("exec_tries", Json::strs(tried)),
                ("environment", Json::strs(plan.env.iter().map(|e| escape(e.as_bytes())))),
                ("cwd", plan.cwd.as_ref().map_or(Json::Null, |c| Json::str(escape(c.as_bytes())))),
                ("sandbox", sandbox),
            ]),
        );
        self.set("dry_run", Json::Bool(true));
    }
}

fn credentials_json(c: &Credentials, place: &str) -> Json {
    Json::Obj(vec![
        ("where", Json::str(place)),
        ("uid", Json::Num(c.uid.into())),
        ("gid", Json::Num(c.gid.into())),
        ("groups", Json::nums(c.groups.iter().copied())),
    ])
}

/// A JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // C0 and C1 controls (0x9b is a CSI to many terminals) and the
            // characters that reorder text, so that JSON shown on a
            // terminal is as safe as the text form.
            c if c.is_control() || crate::escape::is_format(c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
        assert_eq!(r.finish(Ok(())), 0);
        let r = Report::default();
        assert_eq!(r.finish(Err(crate::error::Error::Usage("x".into()))), 64);
        assert_eq!(Report::default().finish_check(Ok(()), false, 0), 0);
        assert_eq!(Report::default().finish_check(Ok(()), true, 2), 78);
        let bad = Err(crate::error::Error::Usage("x".into()));
        assert_eq!(Report::default().finish_check(bad, false, 2), 64, "the delivery's own verdict comes first");
    }
}
