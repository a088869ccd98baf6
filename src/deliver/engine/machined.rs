//! systemd-nspawn (and any VM or container) registered with machined:
//! `/run/systemd/machines/<name>` (root 0644) has the leader's pid and the
//! registration time.
#![forbid(unsafe_code)]

use std::path::Path;

use super::{bad_state, read_state, Found, Lookup};
use crate::error::Result;
use crate::parse::engine_state;
use crate::platform::kernel::Kernel;

const MACHINES: &str = "/run/systemd/machines";

pub(crate) fn find(k: &mut impl Kernel, name: &str) -> Result<Lookup> {
    let path = Path::new(MACHINES).join(name);
    let Some(file) = read_state(k, "machined", &path, 64 * 1024)? else {
        return Ok(Lookup::Absent(format!("machined has no machine {name:?} (no {})", path.display())));
    };
    let (pid, registered) =
        engine_state::parse_machine_file(&file.contents).map_err(|e| bad_state("machined", &path, e))?;
    // The leader started before machined registered it; the file's own
    // write time is later still (machined rewrites it), so REALTIME is the
    // stricter bound.
    let written_ns = registered.unwrap_or(file.written_ns).min(file.written_ns);
    Ok(Lookup::Found(Found {
        pid,
        written_ns: Some(written_ns),
        start_ticks: None,
        source: format!("machined {name}"),
        evidence: vec![format!("machine file {}: leader {pid}, registered after it started", path.display())],
        cgroup: None,
    }))
}
