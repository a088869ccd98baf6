//! OCI runtimes: runc (`<root>/<id>/state.json`), crun (`<root>/<id>/status`)
//! and youki (`<root>/<id>/state.json`). Docker, containerd and Podman run
//! their containers with one of these, so their state is read here too.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use super::{bad_state, read_state, shown, Found, Lookup};
use crate::error::Result;
use crate::parse::engine_state;
use crate::platform::kernel::Kernel;

/// The state files of one container id, the runtime's name for messages.
const STATE_FILES: &[(&str, &str)] = &[("state.json", "runc"), ("status", "crun")];

/// At most this much state is read (runc's state.json holds the whole OCI
/// config: a few tens of KiB).
pub(crate) const MAX_STATE: usize = 1 << 20;

pub(crate) fn find(k: &mut impl Kernel, roots: &[PathBuf], id: &str) -> Result<Lookup> {
    match state_of(k, "oci", roots, id)? {
        Some(mut found) => {
            found.source = format!("oci {id}");
            Ok(Lookup::Found(found))
        }
        None => Ok(Lookup::Absent(format!("no OCI runtime has a container {id:?} (looked in {})", shown(roots)))),
    }
}

/// The runtime state of container `id` in the first of `roots` that has it.
pub(crate) fn state_of(
    k: &mut impl Kernel,
    engine: &'static str,
    roots: &[PathBuf],
    id: &str,
) -> Result<Option<Found>> {
    for root in roots {
        for (file, runtime) in STATE_FILES {
            let path = root.join(id).join(file);
            let Some(state) = read_state(k, engine, &path, MAX_STATE)? else { continue };
            let init = engine_state::parse_oci_state(&state.contents).map_err(|e| bad_state(engine, &path, e))?;
            let guard = match init.start_ticks {
                Some(t) => format!("start time {t} ticks after boot, checked against /proc/{}/stat", init.pid),
                None => "no start time; written after the process started, checked".into(),
            };
            return Ok(Some(Found {
                pid: init.pid,
                written_ns: Some(state.written_ns),
                start_ticks: init.start_ticks,
                source: String::new(),
                evidence: vec![format!("{runtime} state {}: pid {}, {guard}", path.display(), init.pid)],
                cgroup: None,
            }));
        }
    }
    Ok(None)
}
