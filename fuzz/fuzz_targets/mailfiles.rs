//! The redirection-file parsers (`.forward`, lsearch aliases, domain owners)
//! never panic on any bytes, and what they return is consistent: every pipe
//! starts with `|`, every line number is within the input.
#![no_main]

use cagepipe::parse::mailfiles::{looks_binary, parse_aliases, parse_forward, parse_owners, Forward, Listing};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8], listing: &Listing, has_key: bool) {
    let lines = data.split(|&b| b == b'\n').count();
    for pipe in &listing.pipes {
        assert_eq!(pipe.text.first(), Some(&b'|'), "pipe text of {data:?}");
        assert!((1..=lines).contains(&pipe.line), "pipe line of {data:?}");
        assert_eq!(pipe.key.is_some(), has_key);
    }
    for problem in &listing.problems {
        assert!((1..=lines).contains(&problem.line), "problem line of {data:?}");
    }
    for include in &listing.includes {
        assert!((1..=lines).contains(&include.line), "include line of {data:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Forward::List(listing) = parse_forward(data) {
        check(data, &listing, false);
    }
    check(data, &parse_aliases(data), true);
    for (domain, user) in parse_owners(data) {
        assert!(!domain.is_empty() && !user.is_empty());
        assert_eq!(domain, domain.to_ascii_lowercase());
    }
    if data.contains(&0) {
        assert!(looks_binary(data));
    }
});
