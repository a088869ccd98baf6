//! Making hostile text safe to show: every string a container, a user file
//! or a caller controls is escaped before it reaches a terminal, a log or a
//! report, so that it cannot move the cursor, retitle the terminal, forge a
//! line or display differently from what it is.
#![forbid(unsafe_code)]

/// Escape control characters, backslashes, non-UTF-8 bytes and the Unicode
/// format characters that change how text displays (bidirectional
/// overrides and isolates, zero-width characters, the BOM). No length cap:
/// the syslog sink caps its lines itself.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if is_format(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Text already put together for a terminal or a log, made safe as the
/// last step before it is written: every control character but the
/// newline, and the format characters [`escape`] escapes, become `\xHH`
/// and `\u{...}`. Backslashes are left alone, so text escaped before comes
/// out unchanged; what was not (a value a renderer forgot) cannot reach the
/// terminal raw.
pub(crate) fn for_terminal(text: &str) -> String {
    if !text.chars().any(|c| (c.is_control() && c != '\n') || is_format(c)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_format(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Unicode format characters (category Cf) that reorder or hide text.
pub(crate) fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x061C | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bad_bytes_are_escaped() {
        assert_eq!(escape(b"a\nb\tc\x1b[31m\\"), "a\\nb\\tc\\x1b[31m\\\\");
        assert_eq!(escape(b"caf\xc3\xa9 \xff"), "caf\u{e9} \\xff");
        assert_eq!(escape("\u{7}\u{9b}".as_bytes()), "\\x07\\x9b", "BEL and the 8-bit CSI");
    }

    #[test]
    fn text_that_would_display_differently_is_escaped() {
        assert_eq!(escape("ab\u{202e}txt.exe".as_bytes()), "ab\\u{202e}txt.exe");
        assert_eq!(escape("a\u{200b}b\u{2067}c\u{feff}".as_bytes()), "a\\u{200b}b\\u{2067}c\\u{feff}");
    }

    #[test]
    fn the_last_step_before_a_terminal_leaves_escaped_text_alone() {
        let escaped = escape("a\u{1b}]0;x\u{7}\u{202e}\\".as_bytes());
        assert_eq!(for_terminal(&escaped), escaped);
        assert_eq!(for_terminal("a\u{1b}[2J\u{7}\u{202e}b\\n\nc"), "a\\x1b[2J\\x07\\u{202e}b\\n\nc");
        assert_eq!(for_terminal("\u{9b}"), "\\x9b");
    }

    #[test]
    fn long_text_is_not_cut() {
        assert_eq!(escape(&vec![b'x'; 5000]).len(), 5000);
    }
}
