//! RFC 5322 and MIME for the notices: header fields folded at 78 columns,
//! words that are not plain ASCII as RFC 2047 encoded-words, the date, and
//! a body in 7bit, 8bit or quoted-printable, whichever carries it intact.
//! Values reach here escaped (no control characters), and nothing written
//! here can end a header field or start a MIME part.
#![forbid(unsafe_code)]

/// Header lines are kept to this many columns (RFC 5322 2.1.1).
const LINE: usize = 78;
/// Bytes of text per encoded-word: 40 bytes become 56 base64 characters,
/// a 68-character word that fits a folded line.
const WORD_BYTES: usize = 40;
/// A plain word longer than this is encoded too, so that it can be folded.
const LONG_WORD: usize = 60;

/// What a header field holds, which decides what may stay unencoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Subject: any printable ASCII word.
    Text,
    /// A display name: only RFC 5322 atext words.
    Phrase,
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn plain(word: &str, kind: Kind) -> bool {
    let ok = match kind {
        Kind::Text => word.bytes().all(|b| (0x21..0x7f).contains(&b)),
        Kind::Phrase => word.bytes().all(is_atext),
    };
    // A plain word that looks like an encoded-word would be decoded.
    ok && word.len() <= LONG_WORD && !word.contains("=?")
}

/// `text` as header tokens: plain words as they are, runs of other words
/// as encoded-words (the blanks inside a run are encoded with it).
pub(crate) fn tokens(text: &str, kind: Kind) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for word in text.split([' ', '\t']).filter(|w| !w.is_empty()) {
        if plain(word, kind) {
            if !run.is_empty() {
                out.extend(encoded_words(&run.join(" ")));
                run.clear();
            }
            out.push(word.to_string());
        } else {
            run.push(word);
        }
    }
    if !run.is_empty() {
        out.extend(encoded_words(&run.join(" ")));
    }
    out
}

/// `=?utf-8?B?...?=` words of at most [`WORD_BYTES`] bytes of text each,
/// split between characters (RFC 2047 5: each word decodes on its own).
fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + WORD_BYTES).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!("=?utf-8?B?{}?=", base64(&text.as_bytes()[start..end])));
        start = end;
    }
    words
}

/// One header field, folded between tokens at [`LINE`] columns; ends in a
/// newline.
pub(crate) fn field(name: &str, tokens: &[String]) -> String {
    let mut out = format!("{name}:");
    let mut column = out.len();
    for t in tokens {
        if column + 1 + t.len() > LINE && column > name.len() + 1 {
            out.push_str("\n ");
            column = 1;
        } else {
            out.push(' ');
            column += 1;
        }
        out.push_str(t);
        column += t.len();
    }
    out.push('\n');
    out
}

/// The standard base64 alphabet, padded (RFC 2045 6.8).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An RFC 5322 date in UTC: `Wed, 02 Dec 2026 16:57:07 +0000`.
pub(crate) fn date(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Civil date from days since 1970-01-01 (the proleptic Gregorian
    // calendar, eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The body and its Content-Transfer-Encoding: as it is (7bit or 8bit)
/// when every line is short and none could be taken for the end of the
/// input (`.` alone, for `sendmail` without `-oi`) or an mbox separator
/// (`From `); quoted-printable otherwise.
pub(crate) fn body(text: &str) -> (&'static str, String) {
    let risky = text.lines().any(|l| l.len() > 998 || l.starts_with('.') || l.starts_with("From "));
    if !risky {
        return (if text.is_ascii() { "7bit" } else { "8bit" }, text.to_string());
    }
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        quoted_printable_line(line.as_bytes(), &mut out);
        out.push('\n');
    }
    ("quoted-printable", out)
}

/// One line in quoted-printable (RFC 2045 6.7): soft breaks keep lines to
/// 76 characters; a leading `.` or `From ` and trailing blanks are encoded.
fn quoted_printable_line(line: &[u8], out: &mut String) {
    let mut column = 0;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let literal = match b {
            b'=' => false,
            b' ' | b'\t' => !last,
            b'.' | b'F' if i == 0 => false,
            0x21..=0x7e => true,
            _ => false,
        };
        let piece = if literal { (b as char).to_string() } else { format!("={b:02X}") };
        if column + piece.len() > 75 {
            out.push_str("=\n");
            column = 0;
            // A soft break may leave a `.` or `F` at the start of a line.
            if piece == "." || piece == "F" {
                out.push_str(&format!("={b:02X}"));
                column += 3;
                continue;
            }
        }
        out.push_str(&piece);
        column += piece.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_stays_readable_and_folds_between_words() {
        let subject = "Action needed: three mail pipes on your account alice need a change before the move";
        let f = field("Subject", &tokens(subject, Kind::Text));
        assert!(f.lines().all(|l| l.len() <= LINE), "{f}");
        assert_eq!(f.lines().count(), 2, "{f}");
        assert_eq!(f.replace("\n ", " "), format!("Subject: {subject}\n"), "unfolding gives the text back");
    }

    #[test]
    fn other_words_become_encoded_words() {
        assert_eq!(tokens("Hello Jürgen Müller!", Kind::Text), ["Hello", "=?utf-8?B?SsO8cmdlbiBNw7xsbGVyIQ==?="]);
        assert_eq!(tokens("a =?x?Q?y?= b", Kind::Text)[1], format!("=?utf-8?B?{}?=", base64(b"=?x?Q?y?=")));
        // In a display name, specials are encoded too.
        assert_eq!(tokens("Bob \"x\", <evil>", Kind::Phrase).len(), 2);
        assert_eq!(tokens("Bob Smith", Kind::Phrase), ["Bob", "Smith"]);
        // Long text: every word fits a line, split between characters.
        let long = "ü".repeat(100);
        let words = tokens(&long, Kind::Text);
        assert!(words.len() >= 5 && words.iter().all(|w| w.len() <= 75), "{words:?}");
        let f = field("Subject", &words);
        assert!(f.lines().all(|l| l.len() <= LINE), "{f}");
        let plain_long = "x".repeat(500);
        assert!(field("Subject", &tokens(&plain_long, Kind::Text)).lines().all(|l| l.len() <= LINE));
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn dates_are_rfc_5322_in_utc() {
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(date(1_796_230_627), "Wed, 02 Dec 2026 16:57:07 +0000");
    }

    #[test]
    fn bodies_that_could_be_cut_short_are_quoted_printable() {
        assert_eq!(body("hello\n"), ("7bit", "hello\n".to_string()));
        assert_eq!(body("grüße\n").0, "8bit");
        let (cte, text) = body("a\n.\nFrom here\nx = 1 \n");
        assert_eq!(cte, "quoted-printable");
        assert_eq!(text, "a\n=2E\n=46rom here\nx =3D 1=20\n");
        let (cte, text) = body(&format!("{}\n", "ä".repeat(600)));
        assert_eq!(cte, "quoted-printable");
        assert!(text.lines().all(|l| l.len() <= 76), "{text}");
    }
}
