//! The container engines' state files (runc/crun/youki state, Docker's
//! config.v2.json, Podman's containers.json, machined's machine files,
//! /proc/PID/status's NSpid line) and the container-id check. They are
//! root-owned, but the parsers promise to treat them as hostile: no input
//! makes one panic, every pid they accept is a positive pid_t, each value
//! is the one the file names (checked against a generic JSON reading), and
//! an id they call plain names exactly one directory entry.
#![no_main]

use std::path::{Component, Path};

use cagepipe::parse::engine_state::{self, InitRecord};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The first byte that is not JSON white space.
fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter().copied().find(|b| !b" \t\r\n".contains(b))
}

/// An accepted record as a generic JSON object. It must be an object (a
/// typed reading would also take an array of the fields in order); `None`
/// where serde_json's generic reading refuses what the typed one skipped
/// (a number such as 1e999 in a field nobody reads).
fn json_object(text: &[u8]) -> Option<serde_json::Map<String, Value>> {
    assert_eq!(first_byte(text), Some(b'{'), "an accepted record is a JSON object: {text:?}");
    match serde_json::from_slice(text) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// A field of a JSON object as a pid_t, if it is one.
fn pid_field(object: &serde_json::Map<String, Value>, key: &str) -> Option<i64> {
    object.get(key).and_then(Value::as_i64)
}

fn oci_state(text: &[u8]) {
    let Ok(InitRecord { pid, start_ticks }) = engine_state::parse_oci_state(text) else { return };
    assert!(pid > 0, "pid {pid} from {text:?}");
    // What was accepted is one JSON object, and runc's field wins over
    // crun's and youki's, each with its own start time.
    let Some(object) = json_object(text) else { return };
    let start = |key| object.get(key).and_then(Value::as_u64);
    if let Some(runc) = pid_field(&object, "init_process_pid") {
        assert_eq!(i64::from(pid), runc, "{text:?}");
        assert_eq!(start_ticks, start("init_process_start"), "{text:?}");
    } else {
        assert_eq!(Some(i64::from(pid)), pid_field(&object, "pid"), "{text:?}");
        assert_eq!(start_ticks, start("process-start-time"), "{text:?}");
    }
}

fn docker_config(text: &[u8]) {
    let Ok(name) = engine_state::parse_docker_config(text) else { return };
    let Some(object) = json_object(text) else { return };
    let recorded = object.get("Name").and_then(Value::as_str).expect("an accepted config has a Name");
    // Docker writes "/NAME"; the name is what follows the one slash.
    assert!(recorded == name || recorded.strip_prefix('/') == Some(name.as_str()), "{recorded:?} gave {name:?}");
}

fn podman_containers(data: &[u8]) {
    // The name asked for, then the file.
    let (name, text) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let Ok(name) = std::str::from_utf8(name) else { return };
    let Ok(ids) = engine_state::podman_ids_named(text, name) else { return };
    assert_eq!(first_byte(text), Some(b'['), "an accepted containers.json is an array: {text:?}");
    // serde_json's generic reading refuses some numbers the typed one
    // skips (1e999 in a field nobody reads): nothing to compare then.
    let Ok(Value::Array(entries)) = serde_json::from_slice(text) else { return };
    // Exactly the ids of the entries that carry the name, in file order.
    let expected: Vec<&str> = entries
        .iter()
        .filter(|e| {
            let names = e.get("names").and_then(Value::as_array);
            names.is_some_and(|n| n.iter().any(|n| n.as_str() == Some(name)))
        })
        .map(|e| e.get("id").and_then(Value::as_str).expect("an accepted entry has an id"))
        .collect();
    assert_eq!(ids, expected, "{name:?} in {text:?}");
}

fn machine_file(text: &[u8]) {
    let Ok((leader, realtime_ns)) = engine_state::parse_machine_file(text) else { return };
    assert!(leader > 0, "leader {leader} from {text:?}");
    let text = std::str::from_utf8(text).expect("an accepted machine file is UTF-8");
    // The last LEADER= and REALTIME= lines count, as in systemd's reader.
    let last = |key: &str| text.lines().filter_map(|l| l.strip_prefix(key)).last();
    assert_eq!(last("LEADER=").and_then(|v| v.parse::<i32>().ok()), Some(leader), "{text:?}");
    match last("REALTIME=") {
        Some(v) => assert_eq!(realtime_ns, v.parse::<u64>().ok().map(|us| i128::from(us) * 1000), "{text:?}"),
        None => assert_eq!(realtime_ns, None, "{text:?}"),
    }
}

fn nspid(status: &[u8]) {
    let pids = engine_state::parse_nspid(status);
    assert!(pids.iter().all(|&p| p > 0), "{pids:?} from {status:?}");
    // One pid per namespace, and no line means no pids.
    if !pids.is_empty() {
        let line = status.split(|&b| b == b'\n').find(|l| l.starts_with(b"NSpid:")).expect("an NSpid: line");
        let words = line[6..].split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).count();
        assert_eq!(words, pids.len(), "{status:?}");
    }
}

fn plain_id(data: &[u8]) {
    let Ok(id) = std::str::from_utf8(data) else { return };
    if engine_state::is_plain_id(id) {
        // Joined to a state root it names one entry in that directory:
        // no separator, no NUL, no "." or "..", short enough for a name.
        let mut components = Path::new(id).components();
        assert!(matches!(components.next(), Some(Component::Normal(c)) if c == id), "{id:?}");
        assert!(components.next().is_none(), "{id:?}");
        assert!(!id.contains('\0') && id.len() <= 128, "{id:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 6 {
        0 => oci_state(rest),
        1 => docker_config(rest),
        2 => podman_containers(rest),
        3 => machine_file(rest),
        4 => nspid(rest),
        _ => plain_id(rest),
    }
});
