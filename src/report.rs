//! The plain-text explanation printed by `cagepipe check` and `--dry-run`:
//! one fact a line, readable at 3 am, ending in DELIVERABLE or the reason.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::account::Account;
use crate::cli::CommandSpec;
use crate::config::Config;
use crate::error::Result;
use crate::launch::Launch;
use crate::log::escape;
use crate::privileges::{self, Credentials, REQUIRED};
use crate::resolve::Target;
use crate::sandbox::Mode;
use crate::sys;

#[derive(Default)]
pub struct Report {
    lines: Vec<(String, String)>,
}

impl Report {
    fn add(&mut self, key: &str, value: String) {
        self.lines.push((key.to_string(), value));
    }

    pub fn config(&mut self, c: &Config) {
        self.add("config", c.path.display().to_string());
        self.add("container source", c.backend.describe());
        let sandbox = match c.sandbox.mode {
            Mode::Off => "off",
            Mode::BestEffort => "landlock, best-effort: what the kernel supports",
            Mode::Required => "landlock, required: all of it or exit 75",
        };
        self.add("sandbox", sandbox.into());
    }

    pub fn account(&mut self, a: &Account) {
        let groups: Vec<String> = a.groups.iter().map(u32::to_string).collect();
        self.add("user", format!("{} (uid {}, gid {}, groups {})", a.name, a.uid, a.gid, groups.join(",")));
        self.add("home", a.home.display().to_string());
    }

    pub fn pidfile(&mut self, p: &Path) {
        self.add("pidfile", p.display().to_string());
    }

    pub fn target(&mut self, t: &Target) {
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

    pub fn credentials(&mut self, c: &Credentials) {
        let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
        self.add("runs inside as", format!("uid {} gid {} groups {}", c.uid, c.gid, groups.join(",")));
    }

    pub fn capabilities(&mut self) {
        let needed: Vec<&str> = REQUIRED.iter().map(|c| c.name).collect();
        let held = sys::capget().map(|c| c.permitted).unwrap_or(0);
        let missing = privileges::missing_names(held, &REQUIRED);
        self.add("capabilities needed", needed.join(","));
        self.add("capabilities missing", if missing.is_empty() { "none".into() } else { missing });
    }

    pub fn plan(&mut self, launch: &Launch, spec: &CommandSpec) {
        let words: Vec<String> = spec.argv().iter().map(|w| escape(&crate::pipe_text::quote_word(w))).collect();
        self.add("command", words.join(" "));
        let tried: Vec<String> = launch.candidates.iter().map(|c| escape(c.as_bytes())).collect();
        self.add("exec tries", tried.join(" "));
        for e in &launch.env {
            self.add("environment", escape(e.as_bytes()));
        }
        self.add("cwd", format!("{} inside the container if it exists there, else /", escape(launch.cwd.as_bytes())));
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

    /// Print everything and the verdict; return the exit code.
    pub fn finish<T>(self, result: Result<T>) -> i32 {
        let width = self.lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.lines {
            out.push_str(&format!("{k:width$}  {v}\n"));
        }
        let code = match &result {
            Ok(_) => {
                out.push_str("DELIVERABLE\n");
                0
            }
            Err(e) => {
                out.push_str(&format!(
                    "NOT DELIVERABLE (exit {}): {}\n",
                    e.exit_code(),
                    escape(e.to_string().as_bytes())
                ));
                e.exit_code()
            }
        };
        print!("{out}");
        code
    }
}

/// Seconds since the epoch as "YYYY-MM-DD HH:MM:SS" (UTC, no tz database).
pub fn utc(epoch: i64) -> String {
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
    }
}
