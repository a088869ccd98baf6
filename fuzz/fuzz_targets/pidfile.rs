//! A pidfile's contents: only one positive decimal pid, surrounded by
//! nothing but white space, is ever accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pid) = cagepipe::parse::procfs::parse_pidfile(data) {
        assert!(pid > 0, "pid {pid} from {data:?}");
        let text = std::str::from_utf8(data).expect("an accepted pidfile is ASCII");
        let digits = text.trim_matches(|c: char| c.is_ascii_whitespace());
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{data:?}");
        assert_eq!(digits.parse::<i64>().ok(), Some(i64::from(pid)), "{data:?}");
    }
});
