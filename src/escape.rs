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

/// Unicode format characters (category Cf) that reorder or hide text.
fn is_format(c: char) -> bool {
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
    fn long_text_is_not_cut() {
        assert_eq!(escape(&vec![b'x'; 5000]).len(), 5000);
    }
}
