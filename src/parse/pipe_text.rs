#![forbid(unsafe_code)]
//! Split the text of a `.forward` pipe (`$address_pipe`) into argv exactly as
//! Exim's pipe transport would.
//!
//! Exim runs a pipe without a shell by splitting the command in
//! `transport_set_up_command` (transport.c): single-quoted words are verbatim,
//! double-quoted words go through `string_dequote`, which interprets escapes
//! with `string_interpret_escape` (string.c), and any other word runs to the
//! next white space. The user's text reaches cagepipe unsplit, so cagepipe must
//! build the very argv Exim would have built: no shell, no expansion, nothing
//! more and nothing less. Everything works on bytes because argv is bytes.

use std::fmt;

/// Why pipe text cannot become an argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// Nothing but white space (and the optional leading `|`).
    Empty,
    /// A raw NUL byte, which no argv string can contain.
    NulByte,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitError::Empty => "the pipe command is empty",
            SplitError::NulByte => "the pipe command contains a NUL byte",
        })
    }
}

impl std::error::Error for SplitError {}

/// C `isspace` in the C locale, which is what Exim uses to separate words.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_space(text: &[u8]) -> &[u8] {
    let start = text.iter().position(|&b| !is_c_space(b)).unwrap_or(text.len());
    &text[start..]
}

/// Split Exim pipe text (verbatim `$address_pipe`, leading `|` optional) into argv.
///
/// An argument that an escape makes contain NUL is cut at that NUL, because
/// Exim keeps each argument as a C string.
pub fn split_pipe_text(text: &[u8]) -> Result<Vec<Vec<u8>>, SplitError> {
    if text.contains(&0) {
        return Err(SplitError::NulByte);
    }
    let mut rest = skip_space(text);
    if let Some(after_bar) = rest.strip_prefix(b"|") {
        rest = skip_space(after_bar);
    }
    let mut words = Vec::new();
    while let Some(&first) = rest.first() {
        let (word, after) = match first {
            b'\'' => take_single_quoted(&rest[1..]),
            b'"' => take_double_quoted(&rest[1..]),
            _ => {
                let end = rest.iter().position(|&b| is_c_space(b)).unwrap_or(rest.len());
                (rest[..end].to_vec(), &rest[end..])
            }
        };
        words.push(word);
        rest = skip_space(after);
    }
    if words.is_empty() {
        Err(SplitError::Empty)
    } else {
        Ok(words)
    }
}

/// `body` follows the opening `'`. Exim copies up to the next `'` with no
/// escapes at all, or to the end of the text when it is unterminated.
fn take_single_quoted(body: &[u8]) -> (Vec<u8>, &[u8]) {
    match body.iter().position(|&b| b == b'\'') {
        Some(end) => (body[..end].to_vec(), &body[end + 1..]),
        None => (body.to_vec(), &[]),
    }
}

/// `body` follows the opening `"`. Returns the word and the text after the
/// closing quote (empty when unterminated, as in Exim).
fn take_double_quoted(body: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut word = Vec::new();
    let mut rest = body;
    let after = loop {
        match rest.split_first() {
            None => break rest,
            Some((b'"', after)) => break after,
            Some((b'\\', after)) => {
                let (byte, after_escape) = interpret_escape(after);
                word.push(byte);
                rest = after_escape;
            }
            Some((&byte, after)) => {
                word.push(byte);
                rest = after;
            }
        }
    };
    // Exim stores the word as a C string: a NUL from `\0` or `\x` ends it.
    if let Some(nul) = word.iter().position(|&b| b == 0) {
        word.truncate(nul);
    }
    (word, after)
}

/// Exim's `string_interpret_escape`; `after` follows the backslash. Returns
/// the byte and the text after the escape.
fn interpret_escape(after: &[u8]) -> (u8, &[u8]) {
    let Some((&first, rest)) = after.split_first() else {
        // Current Exim keeps a trailing backslash as itself; older releases
        // read past the end of the string here.
        return (b'\\', after);
    };
    let is_octal = |b: &u8| (b'0'..=b'7').contains(b);
    match first {
        b'0'..=b'7' => {
            let digits = 1 + rest.iter().take(2).take_while(|b| is_octal(b)).count();
            let value = after[..digits].iter().fold(0u32, |acc, &d| acc * 8 + u32::from(d - b'0'));
            // Up to \777 = 511: Exim stores it in an unsigned char, keeping
            // the low 8 bits.
            (value as u8, &after[digits..])
        }
        b'x' => {
            let digits = rest.iter().take(2).take_while(|b| b.is_ascii_hexdigit()).count();
            let value = rest[..digits].iter().fold(0u8, |acc, &d| {
                // Both digits are hex, so this is at most 0xff.
                acc * 16 + char::from(d).to_digit(16).unwrap_or(0) as u8
            });
            (value, &rest[digits..])
        }
        b'b' => (0x08, rest),
        b'f' => (0x0c, rest),
        b'n' => (b'\n', rest),
        b'r' => (b'\r', rest),
        b't' => (b'\t', rest),
        b'v' => (0x0b, rest),
        other => (other, rest),
    }
}

/// Quote one argument so that `split_pipe_text` returns it unchanged (used by
/// dry-run output and by round-trip tests).
///
/// Bare when the word is non-empty printable ASCII without quotes, backslash
/// or a leading `|` (which the splitter would strip as the pipe marker);
/// otherwise double-quoted with `\\`, `\"` and three-digit octal escapes for
/// everything outside printable ASCII, so the output is always printable
/// ASCII and a following digit is never absorbed into an escape.
///
/// Exim cannot pass an argument containing NUL (its arguments are C
/// strings), so the word is truncated at its first NUL, just as Exim would.
pub fn quote_word(word: &[u8]) -> Vec<u8> {
    let end = word.iter().position(|&b| b == 0).unwrap_or(word.len());
    let word = &word[..end];
    let is_bare = |b: &u8| b.is_ascii_graphic() && !matches!(b, b'\'' | b'"' | b'\\');
    if !word.is_empty() && word[0] != b'|' && word.iter().all(is_bare) {
        return word.to_vec();
    }
    let mut quoted = Vec::with_capacity(word.len() + 2);
    quoted.push(b'"');
    for &byte in word {
        match byte {
            b'"' | b'\\' => quoted.extend_from_slice(&[b'\\', byte]),
            b' '..=b'~' => quoted.push(byte),
            _ => quoted.extend_from_slice(&[b'\\', b'0' + (byte >> 6), b'0' + ((byte >> 3) & 7), b'0' + (byte & 7)]),
        }
    }
    quoted.push(b'"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &[u8]) -> Vec<Vec<u8>> {
        split_pipe_text(text).unwrap()
    }

    fn words(list: &[&[u8]]) -> Vec<Vec<u8>> {
        list.iter().map(|w| w.to_vec()).collect()
    }

    fn join_quoted(list: &[Vec<u8>]) -> Vec<u8> {
        let quoted: Vec<Vec<u8>> = list.iter().map(|w| quote_word(w)).collect();
        quoted.join(&b' ')
    }

    #[test]
    fn exim_documented_example_keeps_order() {
        assert_eq!(split(b"|/usr/bin/cmd 'a b' \"c d\" e"), words(&[b"/usr/bin/cmd", b"a b", b"c d", b"e"]));
    }

    #[test]
    fn leading_bar_is_optional_and_stripped_once() {
        assert_eq!(split(b"|cmd"), words(&[b"cmd"]));
        assert_eq!(split(b"cmd"), words(&[b"cmd"]));
        assert_eq!(split(b" \t| \tcmd arg"), words(&[b"cmd", b"arg"]));
        assert_eq!(split(b"||cmd"), words(&[b"|cmd"]));
        assert_eq!(split(b"| |cmd"), words(&[b"|cmd"]));
        assert_eq!(split(b"cmd |"), words(&[b"cmd", b"|"]));
    }

    #[test]
    fn white_space_is_c_isspace_only() {
        assert_eq!(split(b"a\tb\nc\x0bd\x0ce\rf g"), words(&[b"a", b"b", b"c", b"d", b"e", b"f", b"g"]));
        // NBSP (0xa0), NEL (0x85) and other bytes do not separate words.
        assert_eq!(split(b"a\xa0b\x85c\x1fd"), words(&[b"a\xa0b\x85c\x1fd"]));
        assert_eq!(split(b"  a   b  \n"), words(&[b"a", b"b"]));
    }

    #[test]
    fn empty_text_is_an_error() {
        for text in [&b""[..], b"|", b"|   ", b"  \t\n", b" | \r\n"] {
            assert_eq!(split_pipe_text(text), Err(SplitError::Empty), "{text:?}");
        }
    }

    #[test]
    fn raw_nul_byte_is_an_error() {
        assert_eq!(split_pipe_text(b"|cmd\0arg"), Err(SplitError::NulByte));
        assert_eq!(split_pipe_text(b"\0"), Err(SplitError::NulByte));
    }

    #[test]
    fn empty_quoted_words_are_arguments() {
        assert_eq!(split(b"|cmd ''"), words(&[b"cmd", b""]));
        assert_eq!(split(b"|cmd \"\" x"), words(&[b"cmd", b"", b"x"]));
        assert_eq!(split(b"''"), words(&[b""]));
    }

    #[test]
    fn single_quotes_are_verbatim() {
        assert_eq!(split(b"'a \"b\" \\n $x'"), words(&[b"a \"b\" \\n $x"]));
        // No escape for the quote itself: `'a\'` ends the word.
        assert_eq!(split(b"'a\\'b'"), words(&[b"a\\", b"b'"]));
        assert_eq!(split(b"cmd 'open ended"), words(&[b"cmd", b"open ended"]));
        assert_eq!(split(b"'"), words(&[b""]));
    }

    #[test]
    fn double_quotes_run_to_the_next_unescaped_quote() {
        assert_eq!(split(b"\"a \\\" b\" c"), words(&[b"a \" b", b"c"]));
        assert_eq!(split(b"cmd \"open  ended"), words(&[b"cmd", b"open  ended"]));
        assert_eq!(split(b"\"it's\""), words(&[b"it's"]));
    }

    #[test]
    fn bare_words_are_literal() {
        assert_eq!(split(b"a\"b c\""), words(&[b"a\"b", b"c\""]));
        assert_eq!(split(b"x'y z'"), words(&[b"x'y", b"z'"]));
        assert_eq!(split(b"a\\tb \\\"q"), words(&[b"a\\tb", b"\\\"q"]));
    }

    #[test]
    fn next_word_starts_right_after_a_closing_quote() {
        assert_eq!(split(b"\"a\"b"), words(&[b"a", b"b"]));
        assert_eq!(split(b"'x'\"y\""), words(&[b"x", b"y"]));
        assert_eq!(split(b"'a''b'"), words(&[b"a", b"b"]));
        assert_eq!(split(b"\"\"\"\""), words(&[b"", b""]));
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(split(b"\"\\101\""), words(&[b"A"]));
        assert_eq!(split(b"\"\\7\\12\""), words(&[b"\x07\n"]));
        // At most three digits: the fourth is an ordinary byte.
        assert_eq!(split(b"\"\\1011\""), words(&[b"A1"]));
        assert_eq!(split(b"\"\\0101\""), words(&[b"\x081"]));
        // \777 = 511 keeps its low byte.
        assert_eq!(split(b"\"\\777\""), words(&[b"\xff"]));
        assert_eq!(split(b"\"\\501\""), words(&[b"A"]));
        // 8 and 9 are not octal digits.
        assert_eq!(split(b"\"\\8\\19\""), words(&[b"8\x019"]));
    }

    #[test]
    fn letter_escapes() {
        assert_eq!(split(b"\"\\b\\f\\n\\r\\t\\v\""), words(&[b"\x08\x0c\n\r\t\x0b"]));
    }

    #[test]
    fn hex_escapes() {
        assert_eq!(split(b"\"\\x41\\x4a\\x4A\""), words(&[b"AJJ"]));
        assert_eq!(split(b"\"\\x414\""), words(&[b"A4"]));
        assert_eq!(split(b"\"\\x7\\xfF\""), words(&[b"\x07\xff"]));
        assert_eq!(split(b"\"\\x7g\""), words(&[b"\x07g"]));
    }

    #[test]
    fn other_escapes_give_the_byte_itself() {
        assert_eq!(split(b"\"\\\\ \\\" \\q \\$ \\'\""), words(&[b"\\ \" q $ '"]));
        assert_eq!(split(b"\"\\\xe9\""), words(&[b"\xe9"]));
    }

    #[test]
    fn trailing_backslash_stays_literal() {
        assert_eq!(split(b"\"ab\\"), words(&[b"ab\\"]));
        assert_eq!(split(b"\"\\"), words(&[b"\\"]));
        assert_eq!(split(b"cmd \\"), words(&[b"cmd", b"\\"]));
    }

    #[test]
    fn escaped_nul_truncates_the_word_but_not_the_parse() {
        assert_eq!(split(b"\"ab\\0cd\" e"), words(&[b"ab", b"e"]));
        assert_eq!(split(b"\"ab\\x00cd\""), words(&[b"ab"]));
        // `\x` without a hex digit is NUL too; the `g` after it is lost.
        assert_eq!(split(b"\"a\\xg\" z"), words(&[b"a", b"z"]));
        // \400 = 256 truncates to NUL.
        assert_eq!(split(b"\"\\400x\" y"), words(&[b"", b"y"]));
        // The quote after an escaped NUL still closes the word.
        assert_eq!(split(b"\"\\0 \\\" \" w"), words(&[b"", b"w"]));
    }

    #[test]
    fn exim_expansions_and_variables_are_literal() {
        assert_eq!(
            split(b"|/bin/echo ${run{/usr/bin/id}} $HOME \"$USER\""),
            words(&[b"/bin/echo", b"${run{/usr/bin/id}}", b"$HOME", b"$USER"])
        );
    }

    #[test]
    fn option_like_first_word_passes_through() {
        assert_eq!(split(b"|-oFoo --x"), words(&[b"-oFoo", b"--x"]));
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        assert_eq!(split(b"|cmd \xff\xfe \"\xc3(\" '\x80'"), words(&[b"cmd", b"\xff\xfe", b"\xc3(", b"\x80"]));
    }

    #[test]
    fn error_messages() {
        assert_eq!(SplitError::Empty.to_string(), "the pipe command is empty");
        assert_eq!(SplitError::NulByte.to_string(), "the pipe command contains a NUL byte");
    }

    #[test]
    fn quote_word_leaves_plain_words_bare() {
        assert_eq!(quote_word(b"/usr/bin/procmail"), b"/usr/bin/procmail");
        assert_eq!(quote_word(b"-f"), b"-f");
        assert_eq!(quote_word(b"${run{x}}$HOME"), b"${run{x}}$HOME");
        assert_eq!(quote_word(b"a|b"), b"a|b");
    }

    #[test]
    fn quote_word_quotes_what_needs_it() {
        assert_eq!(quote_word(b""), b"\"\"");
        assert_eq!(quote_word(b"a b"), b"\"a b\"");
        assert_eq!(quote_word(b"|x"), b"\"|x\"");
        assert_eq!(quote_word(b"it's"), b"\"it's\"");
        assert_eq!(quote_word(b"a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(quote_word(b"\x01\t"), b"\"\\001\\011\"");
        assert_eq!(quote_word(b"\xff9"), b"\"\\3779\"");
        assert_eq!(quote_word(b"\x7f"), b"\"\\177\"");
    }

    #[test]
    fn quote_word_truncates_at_nul_like_exim() {
        assert_eq!(quote_word(b"ab\0cd"), b"ab");
        assert_eq!(quote_word(b"\0x"), b"\"\"");
    }

    #[test]
    fn round_trip_tricky_words() {
        let tricky = words(&[
            b"/usr/bin/cmd",
            b"",
            b" ",
            b"a b",
            b"  lead and trail  ",
            b"'",
            b"\"",
            b"''",
            b"\"\"",
            b"'a'\"b\"",
            b"\\",
            b"\\\\",
            b"a\\",
            b"\\0",
            b"\\x41",
            b"\t\n\r\x0b\x0c",
            b"\x01\x1f\x7f",
            b"\x80\xff\xc3\xa9",
            b"\xff1",
            b"\x017",
            b"$HOME",
            b"${run{/usr/bin/id}}",
            b"|",
            b"|cmd",
            b"||",
            b"-",
            b"--",
        ]);
        let joined = join_quoted(&tricky);
        assert_eq!(split(&joined), tricky);
        let mut with_bar = b"|".to_vec();
        with_bar.extend_from_slice(&joined);
        assert_eq!(split(&with_bar), tricky);
        for word in &tricky {
            assert_eq!(split(&quote_word(word)), vec![word.clone()], "{word:?}");
        }
    }

    use crate::parse::test_rng::XorShift;

    #[test]
    fn round_trip_pseudo_random_words() {
        const ALPHABET: &[u8] = b" \t\n\r\x0b\x0c'\"\\|$01789abx\x00\x01\x7f\x80\xff";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..4000 {
            let count = 1 + rng.below(5);
            let list: Vec<Vec<u8>> =
                (0..count)
                    .map(|_| {
                        let len = rng.below(9);
                        (0..len)
                            .map(|_| {
                                if rng.below(4) == 0 {
                                    rng.below(256) as u8
                                } else {
                                    ALPHABET[rng.below(ALPHABET.len())]
                                }
                            })
                            .collect()
                    })
                    .collect();
            let expected: Vec<Vec<u8>> =
                list.iter().map(|w| w.split(|&b| b == 0).next().unwrap_or_default().to_vec()).collect();
            let joined = join_quoted(&list);
            assert_eq!(split(&joined), expected, "words {list:?}");
        }
    }
}
