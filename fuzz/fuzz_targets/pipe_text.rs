//! Exim pipe text from a user's .forward: splitting never panics, and every
//! word it yields survives quote → split unchanged (what `check` and
//! `--dry-run` print can be pasted back).
#![no_main]

use cagepipe::parse::pipe_text::{quote_word, split_pipe_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(words) = split_pipe_text(data) else { return };
    assert!(!words.is_empty(), "a successful split has a command");
    for w in &words {
        assert!(!w.contains(&0), "no argument may contain NUL: {w:?}");
    }
    let mut joined = Vec::new();
    for w in &words {
        joined.extend_from_slice(&quote_word(w));
        joined.push(b' ');
    }
    let again = split_pipe_text(&joined).expect("quoted words split again");
    assert_eq!(again, words, "quote → split round trip of {data:?}");
});
