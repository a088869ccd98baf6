//! /etc/cagepipe/cagepipe.toml: any text is parsed or refused with a reason,
//! never a panic; a TOML syntax error names its line and column.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = cagepipe::parse_config(text, Path::new("/etc/cagepipe/cagepipe.toml")) {
        let message = e.to_string();
        assert!(message.starts_with("configuration /etc/cagepipe/cagepipe.toml: "), "{message}");
        assert_eq!(e.exit_code(), 75, "a bad configuration defers: {message}");
    }
});
