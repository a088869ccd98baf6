//! `cagepipe check --format json` (and the dry run's JSON), read in this
//! one place: the tests ask for what they assert (the verdict, the target's
//! pid, the missing capabilities), not for the shape of the document, so a
//! change of the format is adapted here alone.

use serde_json::Value;

/// One `check --format json` document.
#[derive(Debug, Clone)]
pub struct CheckJson(Value);

impl CheckJson {
    /// Parse `stdout`; a test failure naming `context` if it is not JSON.
    pub fn parse(stdout: &[u8], context: &dyn std::fmt::Debug) -> CheckJson {
        CheckJson(serde_json::from_slice(stdout).unwrap_or_else(|e| panic!("check printed no JSON ({e}): {context:?}")))
    }

    fn text(&self, key: &str) -> &str {
        self.0[key].as_str().unwrap_or_else(|| panic!("no text {key:?} in {}", self.0))
    }

    /// `DELIVERABLE`, `NOT DELIVERABLE`, `CONFIGURATION OK`, ...
    pub fn verdict(&self) -> &str {
        self.text("verdict")
    }

    /// The exit code check returns with it.
    pub fn exit(&self) -> i64 {
        self.0["exit"].as_i64().unwrap_or_else(|| panic!("no numeric exit in {}", self.0))
    }

    /// Why it is not deliverable; `None` when it is.
    pub fn reason(&self) -> Option<&str> {
        match &self.0["reason"] {
            Value::Null => None,
            reason => Some(reason.as_str().unwrap_or_else(|| panic!("reason is not text in {}", self.0))),
        }
    }

    /// The account checked, by name.
    pub fn user_name(&self) -> &str {
        self.0["user"]["name"].as_str().unwrap_or_else(|| panic!("no user.name in {}", self.0))
    }

    /// The account's uid, a number.
    pub fn user_uid(&self) -> Option<u64> {
        self.0["user"]["uid"].as_u64()
    }

    /// The pid of the process the delivery would enter.
    pub fn target_pid(&self) -> Option<i32> {
        self.0["target"]["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
    }

    /// The kinds of namespace the delivery would enter.
    pub fn namespaces(&self) -> Vec<String> {
        let kinds = self.0["namespaces"].as_array().unwrap_or_else(|| panic!("no namespaces in {}", self.0));
        kinds.iter().map(|n| n["kind"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// Where the command would run: `container` or `host`.
    pub fn credentials_where(&self) -> Option<&str> {
        self.0["credentials"]["where"].as_str()
    }

    /// The cgroups the command would join, one per hierarchy.
    pub fn cgroups_to_join(&self) -> Vec<String> {
        let dirs = self.0["cgroups"]["join"].as_array().unwrap_or_else(|| panic!("no cgroups.join in {}", self.0));
        dirs.iter()
            .map(|d| {
                format!("{} {}", d["hierarchy"].as_str().unwrap_or_default(), d["dir"].as_str().unwrap_or_default())
            })
            .collect()
    }

    /// The file capabilities the installed binary lacks.
    pub fn capabilities_missing(&self) -> Vec<String> {
        Self::strings(&self.0["capabilities"]["missing"], "capabilities.missing", &self.0)
    }

    /// Where `[rollout]` puts the account (`contained`, `uncontained
    /// (rollout): why`).
    pub fn placement(&self) -> String {
        let p = &self.0["placement"];
        let state = p["state"].as_str().unwrap_or_else(|| panic!("no placement.state in {}", self.0));
        match p["why"].as_str() {
            Some(why) => format!("{state}: {why}"),
            None => state.to_owned(),
        }
    }

    /// The `[rollout] contain` setting and where it was read.
    pub fn rollout(&self) -> String {
        let r = &self.0["config"]["rollout"];
        let contain = match &r["contain"] {
            Value::String(all) => format!("contain = {all:?}"),
            names => format!(
                "contain = [{}]",
                Self::strings(names, "config.rollout.contain", &self.0)
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        match r["line"].as_u64() {
            Some(line) => format!("{contain} (/etc/cagepipe/cagepipe.toml line {line})"),
            None => contain,
        }
    }

    /// How many problems the Exim configuration has.
    pub fn exim_problem_count(&self) -> u64 {
        self.0["exim_problems"].as_u64().unwrap_or_else(|| panic!("no exim_problems count in {}", self.0))
    }

    /// The Exim problems, one line each.
    pub fn exim_problems(&self) -> Vec<String> {
        Self::strings(&self.0["exim"]["problems"], "exim.problems", &self.0)
    }

    /// The transports that run cagepipe, each with its judgement.
    pub fn exim_transports(&self) -> Vec<String> {
        Self::strings(&self.0["exim"]["ok"], "exim.ok", &self.0)
    }

    fn strings(list: &Value, key: &str, whole: &Value) -> Vec<String> {
        list.as_array()
            .unwrap_or_else(|| panic!("no list {key:?} in {whole}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_else(|| panic!("{key:?} holds {v}, not text")).to_owned())
            .collect()
    }
}

impl std::fmt::Display for CheckJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
