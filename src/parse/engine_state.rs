//! The container engines' own state files, parsed: what the init's pid is
//! and when it started, as the engine recorded it. Everything here comes
//! from files that only root can write, but is still parsed as hostile
//! text: bounded, and every field checked.
#![forbid(unsafe_code)]

use serde::Deserialize;

/// What an engine recorded about a container's init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRecord {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat when the engine started it, if the engine
    /// records it (runc, crun); youki and Podman's pidfile do not.
    pub start_ticks: Option<u64>,
}

/// Engines write their records as JSON objects. serde's derived readers
/// would also take an array of the fields in order; only an object (for
/// containers.json, an array of objects) is read as one.
fn opens_with(text: &[u8], bracket: u8) -> bool {
    text.iter().find(|b| !b" \t\r\n".contains(b)) == Some(&bracket)
}

fn positive_pid(pid: i64, what: &str) -> Result<i32, String> {
    match i32::try_from(pid) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{what} {pid} is not a process id (the container is not running)")),
    }
}

/// An OCI runtime's state file: runc's `state.json` (`init_process_pid`,
/// `init_process_start`), crun's `status` (`pid`, `process-start-time`) or
/// youki's `state.json` (`pid`, no start time).
pub fn parse_oci_state(text: &[u8]) -> Result<InitRecord, String> {
    #[derive(Deserialize)]
    struct Raw {
        init_process_pid: Option<i64>,
        init_process_start: Option<u64>,
        pid: Option<i64>,
        #[serde(rename = "process-start-time")]
        process_start_time: Option<u64>,
    }
    if !opens_with(text, b'{') {
        return Err("is not an OCI runtime state: not a JSON object".into());
    }
    let raw: Raw = serde_json::from_slice(text).map_err(|e| format!("is not an OCI runtime state: {e}"))?;
    match (raw.init_process_pid, raw.pid) {
        (Some(pid), _) => {
            Ok(InitRecord { pid: positive_pid(pid, "init_process_pid")?, start_ticks: raw.init_process_start })
        }
        (None, Some(pid)) => Ok(InitRecord { pid: positive_pid(pid, "pid")?, start_ticks: raw.process_start_time }),
        (None, None) => Err("names no process (neither init_process_pid nor pid)".into()),
    }
}

/// Docker's `config.v2.json`: the container's name ("/alice") and whether
/// Docker thinks it runs.
pub fn parse_docker_config(text: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "Name")]
        name: String,
    }
    if !opens_with(text, b'{') {
        return Err("is not a Docker container config: not a JSON object".into());
    }
    let raw: Raw = serde_json::from_slice(text).map_err(|e| format!("is not a Docker container config: {e}"))?;
    Ok(raw.name.strip_prefix('/').unwrap_or(&raw.name).to_string())
}

/// Podman's (containers/storage's) `containers.json`: the ids of the
/// containers that carry `name`.
pub fn podman_ids_named(text: &[u8], name: &str) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Raw {
        id: String,
        #[serde(default)]
        names: Vec<String>,
        // A flattened field makes serde read each entry as an object only.
        #[serde(flatten)]
        _rest: serde::de::IgnoredAny,
    }
    if !opens_with(text, b'[') {
        return Err("is not a containers.json: not a JSON array".into());
    }
    let raw: Vec<Raw> = serde_json::from_slice(text).map_err(|e| format!("is not a containers.json: {e}"))?;
    Ok(raw.into_iter().filter(|c| c.names.iter().any(|n| n == name)).map(|c| c.id).collect())
}

/// A machined machine file (`/run/systemd/machines/NAME`): `LEADER=` and
/// `REALTIME=` (µs since the epoch when the machine was registered).
pub fn parse_machine_file(text: &[u8]) -> Result<(i32, Option<i128>), String> {
    let text = std::str::from_utf8(text).map_err(|_| "is not UTF-8".to_string())?;
    let (mut leader, mut realtime) = (None, None);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("LEADER=") {
            let pid: i64 = v.parse().map_err(|_| format!("LEADER={v:?} is not a number"))?;
            leader = Some(positive_pid(pid, "LEADER")?);
        } else if let Some(v) = line.strip_prefix("REALTIME=") {
            // systemd writes a usec_t (u64): read as one, it cannot
            // overflow in nanoseconds.
            let us: u64 = v.parse().map_err(|_| format!("REALTIME={v:?} is not a number of microseconds"))?;
            realtime = Some(i128::from(us) * 1000);
        }
    }
    Ok((leader.ok_or("has no LEADER= line (the machine has no running leader)")?, realtime))
}

/// The `NSpid:` line of /proc/PID/status: the process's pid in each pid
/// namespace it is in, outermost first; empty if the kernel has no such
/// line (before 4.1) or the line is malformed.
pub fn parse_nspid(status: &[u8]) -> Vec<i32> {
    for line in status.split(|&b| b == b'\n') {
        if let Some(value) = line.strip_prefix(b"NSpid:") {
            let words = value.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
            let pids: Option<Vec<i32>> =
                words.map(|w| std::str::from_utf8(w).ok()?.parse::<i32>().ok().filter(|p| *p > 0)).collect();
            return pids.unwrap_or_default();
        }
    }
    Vec::new()
}

/// An OCI container id or engine container id: what may name a directory.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_crun_and_youki_states_give_the_pid_and_the_start_time_they_have() {
        let runc =
            br#"{"id":"alice","init_process_pid":4711,"init_process_start":123456,"created":"x","config":{"pid":1}}"#;
        assert_eq!(parse_oci_state(runc), Ok(InitRecord { pid: 4711, start_ticks: Some(123456) }));
        let crun = br#"{"pid":812,"process-start-time":999,"cgroup-path":"/x","rootfs":"/r"}"#;
        assert_eq!(parse_oci_state(crun), Ok(InitRecord { pid: 812, start_ticks: Some(999) }));
        let youki = br#"{"ociVersion":"1.0.2","id":"a","status":"running","pid":77,"bundle":"/b"}"#;
        assert_eq!(parse_oci_state(youki), Ok(InitRecord { pid: 77, start_ticks: None }));
    }

    #[test]
    fn a_state_without_a_live_pid_or_that_is_not_json_is_refused() {
        assert!(parse_oci_state(br#"{"init_process_pid":0}"#).unwrap_err().contains("not a process id"));
        assert!(parse_oci_state(br#"{"pid":-1}"#).is_err());
        assert!(parse_oci_state(br#"{"pid":99999999999}"#).is_err());
        assert!(parse_oci_state(br#"{"id":"a"}"#).unwrap_err().contains("names no process"));
        assert!(parse_oci_state(b"\xff{").is_err());
        assert!(parse_oci_state(br#"{"pid":"12"}"#).is_err());
    }

    #[test]
    fn docker_podman_and_machined_records() {
        assert_eq!(parse_docker_config(br#"{"ID":"abc","Name":"/alice","State":{"Pid":5}}"#).unwrap(), "alice");
        assert!(parse_docker_config(b"{}").is_err());
        // serde would read an array as the fields in order; engines write objects.
        assert!(parse_docker_config(br#"["/alice"]"#).is_err());
        assert!(parse_oci_state(b" [4711, 123, null, null]").is_err());
        assert!(podman_ids_named(br#"[["aa", ["alice"]]]"#, "alice").is_err());
        assert!(podman_ids_named(br#"{"id":"aa","names":["alice"]}"#, "alice").is_err());
        let json = br#"[{"id":"aa","names":["alice"]},{"id":"bb","names":["bob","x"]},{"id":"cc"}]"#;
        assert_eq!(podman_ids_named(json, "bob").unwrap(), ["bb"]);
        assert!(podman_ids_named(json, "carol").unwrap().is_empty());
        let m =
            b"# This is private data. Do not parse.\nNAME=alice\nLEADER=4242\nREALTIME=1700000000123456\nMONOTONIC=5\n";
        assert_eq!(parse_machine_file(m).unwrap(), (4242, Some(1_700_000_000_123_456_000)));
        assert!(parse_machine_file(b"NAME=alice\n").unwrap_err().contains("LEADER"));
        assert!(parse_machine_file(b"LEADER=x\n").is_err());
        // Found by fuzz/engine_state: an i128 this large overflowed in ns.
        assert!(parse_machine_file(b"LEADER=1\nREALTIME=170141183460469231731687303715884105727\n").is_err());
        assert!(parse_machine_file(b"LEADER=1\nREALTIME=-5\n").is_err());
    }

    #[test]
    fn nspid_lists_the_pid_in_each_namespace() {
        assert_eq!(parse_nspid(b"Name:\tsh\nNSpid:\t4242\t17\t1\nThreads:\t1\n"), [4242, 17, 1]);
        assert!(parse_nspid(b"Name:\tsh\n").is_empty());
        assert!(parse_nspid(b"NSpid:\t5\t0\n").is_empty());
        assert!(parse_nspid(b"NSpid:\tx\n").is_empty());
    }

    #[test]
    fn plain_ids_name_one_directory() {
        for ok in ["alice", "a.b-c_d", "0123abcdef"] {
            assert!(is_plain_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a\0b", "a b", &"x".repeat(129)] {
            assert!(!is_plain_id(bad), "{bad:?}");
        }
    }
}
