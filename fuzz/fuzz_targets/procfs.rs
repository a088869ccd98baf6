//! Everything cagepipe reads from /proc: a container's processes control
//! their comm (in stat and status) and their mounts (mountinfo); no input
//! makes a parser panic, and what they accept is consistent.
#![no_main]

use cagepipe::parse::procfs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, text)) = data.split_first() else { return };
    match which % 6 {
        0 => {
            if let Ok(s) = procfs::parse_stat(text) {
                assert!(s.pid > 0, "a pid is positive");
            }
        }
        1 => {
            let _ = procfs::parse_status(text);
        }
        2 => {
            let _ = procfs::parse_cgroup(text);
        }
        3 => {
            let _ = procfs::parse_mountinfo(text);
        }
        4 => {
            if let Ok(map) = procfs::parse_id_map(text) {
                for id in [0u32, 1, 1000, 65534, u32::MAX] {
                    let _ = procfs::map_outside_to_inside(&map, id);
                }
            }
        }
        _ => {
            let _ = procfs::parse_btime(text);
        }
    }
});
