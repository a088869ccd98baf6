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
        self.text("user").split(' ').next().unwrap_or_default()
    }

    /// The pid of the process the delivery would enter.
    pub fn target_pid(&self) -> Option<i32> {
        self.text("target").strip_prefix("pid ")?.split(' ').next()?.parse().ok()
    }

    /// The cgroups the command would join, one per hierarchy.
    pub fn cgroups_to_join(&self) -> Vec<String> {
        self.list("cgroup_to_join")
    }

    /// The file capabilities the installed binary lacks.
    pub fn capabilities_missing(&self) -> Vec<String> {
        match self.text("capabilities_missing") {
            "none" => Vec::new(),
            some => some.split(", ").map(str::to_owned).collect(),
        }
    }

    /// Where `[rollout]` puts the account (`contained`, `uncontained
    /// (rollout): why`).
    pub fn placement(&self) -> &str {
        self.text("placement")
    }

    /// The `[rollout] contain` setting and where it was read.
    pub fn rollout(&self) -> &str {
        self.text("rollout")
    }

    /// How many problems the Exim configuration has.
    pub fn exim_problem_count(&self) -> u64 {
        self.0["exim_problems"].as_u64().unwrap_or_else(|| panic!("no exim_problems count in {}", self.0))
    }

    /// The Exim problems, one line each.
    pub fn exim_problems(&self) -> Vec<String> {
        self.list("exim_problem")
    }

    /// The transports that run cagepipe, each with its judgement.
    pub fn exim_transports(&self) -> Vec<String> {
        self.list("exim_transport")
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.0[key]
            .as_array()
            .unwrap_or_else(|| panic!("no list {key:?} in {}", self.0))
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
