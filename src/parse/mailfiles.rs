#![forbid(unsafe_code)]
//! Find the pipe items in the files that configure Exim redirection: a user's
//! `~/.forward`, lsearch alias files (DirectAdmin `/etc/virtual/<domain>/aliases`,
//! cPanel `/etc/valiases/<domain>`, `/etc/aliases`) and the "domain: user"
//! owner files that say whose alias file is whose.
//!
//! `cagepipe survey` uses this to list every command Exim would run through the
//! pipe transport, so each rule here follows what Exim itself does, read from
//! its source (not guessed); no I/O happens here. The input is hostile: any
//! bytes, any length. Every function is total (never panics) and does a
//! bounded amount of work per input byte.
//!
//! # Rules implemented, and where in Exim they come from
//!
//! **Filter or list** (`rda_is_filter` and `match_tag` in rda.c): after any
//! leading white space (blank lines included), data that begins with
//! `# Exim filter` or `# Sieve filter` is a filter program. Letter case does
//! not matter, and each space in those tags stands for any number (zero
//! included) of spaces and tabs, so `#Exim filter` and `# exim   FILTER`
//! count too. Anything may follow the tag.
//!
//! **A file is a C string**: Exim reads the whole `.forward` and then handles
//! it as a NUL-terminated string (`rda_get_file_contents` in rda.c), so a NUL
//! byte hides everything after it. lsearch reads lines with `fgets` and
//! measures them with `strlen`, so there a NUL cuts its own line short.
//!
//! **Items in a list** (`parse_forward_list` and `parse_find_address_end` in
//! parse.c):
//! - White space and commas between items are skipped; a `#` where an item
//!   would start makes the rest of that line a comment (only there: a `#`
//!   inside an item is part of it).
//! - An item ends at a newline, or at a comma that is not inside a double
//!   quoted string, a parenthesised comment or angle brackets. A backslash
//!   takes the next byte literally, even a newline or a quote; a quoted string
//!   or a comment that is still open at the end of the line ends with it.
//! - Trailing white space is dropped. An item that both starts and ends with
//!   `"` loses those quotes and the white space just inside them, and then, if
//!   it is a pipe or file, each backslash is removed and the byte after it kept
//!   as is (no `\n`-style escapes); the result is `$address_pipe`.
//! - `:unknown:` (and, as Exim compares only the item's length, any prefix of
//!   it) is ignored. `:defer:`, `:blackhole:` and `:fail:` end the whole list:
//!   everything after them is their message, not items. `:include:` names a
//!   file whose items are added; this module reports it without reading it.
//! - Anything else is first parsed as an RFC 822 address (`parse_extract_address`
//!   in parse.c, ported below with Exim's default options). An item that starts
//!   with `|` (or `/`) is a pipe (or a file) unless it parses as an address
//!   with a domain: `|x@example.com` and `|prog <a@example.com>` are mail
//!   addresses to Exim, not pipes. An item that is no address and no pipe or
//!   file is a syntax error, which makes Exim fail the whole list unless the
//!   router has `skip_syntax_errors`; an empty address (only a comment, or `""`)
//!   is silently ignored.
//!
//! **lsearch files** (`internal_lsearch_find` in lookups/lsearch.c):
//! - Trailing white space (CR included) is removed from every line. Empty
//!   lines, lines starting with `#` and lines starting with white space are
//!   never keys.
//! - A key is a double-quoted string (with `\` escapes as in
//!   `string_interpret_escape`, string.c) or runs to the first colon or white
//!   space. After it come optional white space, an optional colon and more
//!   optional white space; the rest of the line is the data.
//! - Following lines that start with white space continue the data, their
//!   leading white space becoming one space, so a quoted item may go on across
//!   them. The first empty or `#` line ends the data for good: continuation
//!   lines after it belong to no key and Exim never reads them.
//! - The first line with a key wins (keys compare without letter case), so a
//!   later line with the same key is dead.
//! - The data is then redirection data like a `.forward` (redirect router,
//!   `rda_interpret` in rda.c), but joined into one line: a `#` at the start
//!   of an item comments out the rest of the key's data, continuation lines
//!   included.

use std::collections::HashSet;
use std::fmt;

/// One pipe item: what Exim would put in `$address_pipe` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipe {
    /// 1-based line on which the item starts.
    pub line: usize,
    /// For alias files: the key (local part, or local@domain, or "*") the item belongs to; None for .forward.
    pub key: Option<Vec<u8>>,
    /// The pipe text starting with '|', with the surrounding double quotes of a quoted item removed and
    /// backslash escapes inside such quotes resolved, exactly as Exim passes it in $address_pipe.
    pub text: Vec<u8>,
}

/// An `:include:` item: more items live in another file, which Exim reads at
/// delivery time and which the caller may want to survey too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// 1-based line on which the item starts.
    pub line: usize,
    /// As in [`Pipe::key`].
    pub key: Option<Vec<u8>>,
    /// The file name after `:include:`, white space around it removed.
    pub path: Vec<u8>,
}

/// Something in the file that is not a usable item, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what Exim makes of it; never contains bytes of the file.
    pub what: String,
    /// Exim rejects the whole redirection list over this (without
    /// `skip_syntax_errors`), so none of its pipes runs either.
    pub fails_list: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// Everything found in a redirection list (or in all the lists of an alias file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub pipes: Vec<Pipe>,
    pub problems: Vec<Problem>,
    /// Items that are not pipes (addresses, /file deliveries, :include:, :fail:, :blackhole:, \\user ...).
    pub other_items: usize,
    /// The `:include:` items among `other_items`, with their file names.
    pub includes: Vec<Include>,
    /// Pipes, problems and includes beyond [`MAX_LISTED`] of each, counted
    /// but not kept: what a file may cost to hold is bounded, whatever it
    /// holds.
    pub omitted: usize,
}

/// The most pipes, problems and includes (each) a [`Listing`] keeps; a
/// problem that fails the whole list is kept even beyond it.
pub const MAX_LISTED: usize = 1000;

impl Listing {
    fn add_pipe(&mut self, pipe: Pipe) {
        if self.pipes.len() < MAX_LISTED {
            self.pipes.push(pipe);
        } else {
            self.omitted += 1;
        }
    }

    fn add_problem(&mut self, problem: Problem) {
        let first_fatal = problem.fails_list && !self.problems.iter().any(|p| p.fails_list);
        if self.problems.len() < MAX_LISTED || first_fatal {
            self.problems.push(problem);
        } else {
            self.omitted += 1;
        }
    }

    fn add_include(&mut self, include: Include) {
        if self.includes.len() < MAX_LISTED {
            self.includes.push(include);
        } else {
            self.omitted += 1;
        }
    }
}

/// Which filter language a `.forward` is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    Exim,
    Sieve,
}

/// What a `.forward` file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// An Exim or Sieve filter: its pipes are decided per message by filter commands, so the survey cannot list them.
    Filter(FilterKind),
    List(Listing),
}

/// A user's ~/.forward (traditional redirect list or a filter).
pub fn parse_forward(data: &[u8]) -> Forward {
    let (visible, nul_at) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(at)),
        None => (data, None),
    };
    if let Some(kind) = filter_kind(visible) {
        return Forward::Filter(kind);
    }
    let mut listing = Listing::default();
    let mut lines = LineCursor::for_text(visible);
    parse_list(visible, None, &mut lines, &mut listing);
    if let Some(at) = nul_at {
        let line = 1 + data[..at].iter().filter(|&&b| b == b'\n').count();
        listing.add_problem(Problem {
            line,
            fails_list: false,
            what: "NUL byte: Exim reads the file as a C string and ignores everything from here on".into(),
        });
    }
    Forward::List(listing)
}

/// An lsearch-style alias file (DirectAdmin /etc/virtual/<domain>/aliases, cPanel /etc/valiases/<domain>,
/// /etc/aliases): "key: item, item" lines, continuation lines starting with white space, # comments.
pub fn parse_aliases(data: &[u8]) -> Listing {
    let mut listing = Listing::default();
    let mut lines = physical_lines(data).peekable();
    // Keys seen, by a keyed hash of their lower case: a million short
    // keys must not cost a million vectors (a collision of a random
    // SipHash key cannot be aimed at from the file).
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen_keys: HashSet<u64> = HashSet::new();
    let nul_problem = |number: usize| Problem {
        line: number,
        fails_list: false,
        what: "NUL byte: Exim reads lines as C strings and ignores the rest of this line".into(),
    };
    while let Some((number, text, nul)) = lines.next() {
        if nul {
            listing.add_problem(nul_problem(number));
        }
        if text.is_empty() || text[0] == b'#' {
            continue;
        }
        if is_c_space(text[0]) {
            // Exim reads continuation lines only right after their key line
            // (or another continuation line); this one follows a blank or
            // comment line, or starts the file, so no key ever gets it.
            listing.add_problem(Problem {
                line: number,
                fails_list: false,
                what: "indented line that continues no key (it follows a blank or comment line): Exim ignores it"
                    .into(),
            });
            continue;
        }
        let (key, rest) = split_lsearch_key(text);
        let mut joined = rest.to_vec();
        let mut starts = vec![(0, number as u32)];
        while let Some(&(next_number, next_text, nul)) = lines.peek() {
            if next_text.is_empty() || next_text[0] == b'#' {
                // Ends the data; later indented lines are orphans (reported above).
                break;
            }
            if !is_c_space(next_text[0]) {
                break;
            }
            lines.next();
            if nul {
                listing.add_problem(nul_problem(next_number));
            }
            let body_at = next_text.iter().position(|&b| !is_c_space(b)).unwrap_or(next_text.len());
            starts.push((joined.len() as u32, next_number as u32));
            joined.push(b' ');
            joined.extend_from_slice(&next_text[body_at..]);
        }
        if !seen_keys.insert(std::hash::BuildHasher::hash_one(&hasher, key.to_ascii_lowercase())) {
            listing.add_problem(Problem {
                line: number,
                fails_list: false,
                what: "this key appeared on an earlier line; Exim uses only the first, so this line is dead".into(),
            });
            continue;
        }
        if filter_kind(&joined).is_some() {
            listing.add_problem(Problem {
                line: number,
                fails_list: false,
                what: "the data is a filter program, run per message (or refused) by Exim; its pipes are not listed"
                    .into(),
            });
            continue;
        }
        let mut cursor = LineCursor::for_lines(starts);
        parse_list(&joined, Some(&key), &mut cursor, &mut listing);
    }
    listing
}

/// "domain: user" files (DirectAdmin /etc/virtual/domainowners, cPanel /etc/userdomains): (domain lowercased, user)
/// in file order; malformed lines are skipped.
///
/// Only entries usable as file names are kept: a domain of letters, digits,
/// `-`, `_` and inner dots, and a user name without white space, control
/// bytes, `/` or `:` that is not `.` or `..`. cPanel's catch-all `*: nobody`
/// names no domain and is skipped too.
pub fn parse_owners(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut owners = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let line = trim_c_space(line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let domain = trim_c_space(&line[..colon]);
        let user = trim_c_space(&line[colon + 1..]);
        if is_plausible_domain(domain) && is_plausible_user(user) {
            owners.push((domain.to_ascii_lowercase(), user.to_vec()));
        }
    }
    owners
}

/// Whether data looks like binary garbage rather than a text file (e.g. contains NUL bytes, or a large share of
/// control bytes); the survey reports such a file instead of parsing it.
///
/// The share is more than one byte in ten being a control byte other than
/// tab, newline, vertical tab, form feed and carriage return. Bytes above
/// 127 do not count: Latin-1 or UTF-8 text is still text.
pub fn looks_binary(data: &[u8]) -> bool {
    if data.contains(&0) {
        return true;
    }
    let controls = data.iter().filter(|&&b| (b < 0x20 && !is_c_space(b)) || b == 0x7f).count();
    controls > data.len() / 10
}

/// C `isspace` in the C locale, which is what Exim's parsers skip.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn trim_c_space(text: &[u8]) -> &[u8] {
    let start = text.iter().position(|&b| !is_c_space(b)).unwrap_or(text.len());
    let end = text.iter().rposition(|&b| !is_c_space(b)).map_or(start, |at| at + 1);
    &text[start..end]
}

fn is_plausible_domain(domain: &[u8]) -> bool {
    !domain.is_empty()
        && domain[0] != b'.'
        && domain[domain.len() - 1] != b'.'
        && domain.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_plausible_user(user: &[u8]) -> bool {
    !user.is_empty()
        && user != b"."
        && user != b".."
        && user.iter().all(|&b| b > 0x20 && b != 0x7f && b != b'/' && b != b':')
}

/// `rda_is_filter`: the tag after leading white space, case-insensitively,
/// each space in the tag matching any run of spaces and tabs (even none).
fn filter_kind(data: &[u8]) -> Option<FilterKind> {
    let start = data.iter().position(|&b| !is_c_space(b)).unwrap_or(data.len());
    let text = &data[start..];
    if starts_with_tag(text, b"# exim filter") {
        Some(FilterKind::Exim)
    } else if starts_with_tag(text, b"# sieve filter") {
        Some(FilterKind::Sieve)
    } else {
        None
    }
}

fn starts_with_tag(text: &[u8], tag: &[u8]) -> bool {
    let mut at = 0;
    for &want in tag {
        if want == b' ' {
            while matches!(text.get(at), Some(b' ' | b'\t')) {
                at += 1;
            }
        } else if text.get(at).map(u8::to_ascii_lowercase) == Some(want) {
            at += 1;
        } else {
            return false;
        }
    }
    true
}

/// The lines of an lsearch file as Exim sees them: numbered from 1, cut at a
/// NUL (`strlen` after `fgets`), trailing white space (so also CR) removed;
/// whether a NUL cut it. An iterator: a file of millions of empty lines
/// must not cost a table of them.
fn physical_lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8], bool)> + '_ {
    data.split(|&b| b == b'\n').enumerate().map(|(index, mut line)| {
        let nul = line.iter().position(|&b| b == 0);
        if let Some(nul) = nul {
            line = &line[..nul];
        }
        let end = line.iter().rposition(|&b| !is_c_space(b)).map_or(0, |at| at + 1);
        (index + 1, &line[..end], nul.is_some())
    })
}

/// Split an lsearch line into its key and its data (`internal_lsearch_find`).
fn split_lsearch_key(text: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut at;
    let key = if text.first() == Some(&b'"') {
        let mut key = Vec::new();
        at = 1;
        while at < text.len() && text[at] != b'"' {
            if text[at] == b'\\' {
                let (byte, used) = interpret_escape(&text[at + 1..]);
                key.push(byte);
                at += 1 + used;
            } else {
                key.push(text[at]);
                at += 1;
            }
        }
        if at < text.len() {
            at += 1; // the closing quote
        }
        key
    } else {
        at = text.iter().position(|&b| b == b':' || is_c_space(b)).unwrap_or(text.len());
        text[..at].to_vec()
    };
    while at < text.len() && is_c_space(text[at]) {
        at += 1;
    }
    if text.get(at) == Some(&b':') {
        at += 1;
        while at < text.len() && is_c_space(text[at]) {
            at += 1;
        }
    }
    (key, &text[at..])
}

/// `string_interpret_escape` (string.c) on what follows a backslash: the byte
/// it stands for and how many bytes after the backslash it used. A backslash
/// at the end stands for itself.
fn interpret_escape(after: &[u8]) -> (u8, usize) {
    let is_octal = |b: Option<&u8>| matches!(b, Some(b'0'..=b'7'));
    let hex_value = |b: u8| (b as char).to_digit(16).map(|v| v as u8);
    match after.first() {
        None => (b'\\', 0),
        Some(&first @ b'0'..=b'7') => {
            // Up to three octal digits; the value wraps to a byte as in C.
            let mut value = u32::from(first - b'0');
            let mut used = 1;
            while used < 3 && is_octal(after.get(used)) {
                value = value * 8 + u32::from(after[used] - b'0');
                used += 1;
            }
            (value as u8, used)
        }
        Some(b'b') => (0x08, 1),
        Some(b'f') => (0x0c, 1),
        Some(b'n') => (b'\n', 1),
        Some(b'r') => (b'\r', 1),
        Some(b't') => (b'\t', 1),
        Some(b'v') => (0x0b, 1),
        Some(b'x') => {
            let mut value = 0u8;
            let mut used = 1;
            while used < 3 {
                match after.get(used).copied().and_then(hex_value) {
                    Some(digit) => value = value.wrapping_mul(16).wrapping_add(digit),
                    None => break,
                }
                used += 1;
            }
            (value, used)
        }
        Some(&other) => (other, 1),
    }
}

/// Maps offsets in the parsed data back to file lines. Items are visited in
/// order, so the cursor only moves forward: linear over the whole list.
struct LineCursor<'a> {
    /// (offset in the data where a line's bytes begin, its 1-based line
    /// number), by offset: for the joined lines of an alias. Files are at
    /// most a few MiB, so u32 is enough and halves the table.
    starts: Vec<(u32, u32)>,
    next: usize,
    /// For a whole file: its text, newlines counted as the cursor moves
    /// (no table, whatever the number of lines).
    text: Option<(&'a [u8], usize, usize)>,
}

impl<'a> LineCursor<'a> {
    fn for_text(text: &'a [u8]) -> Self {
        LineCursor { starts: Vec::new(), next: 0, text: Some((text, 0, 1)) }
    }

    fn for_lines(starts: Vec<(u32, u32)>) -> Self {
        LineCursor { starts, next: 0, text: None }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        if let Some((text, counted_to, line)) = &mut self.text {
            let to = offset.min(text.len());
            if to > *counted_to {
                *line += text[*counted_to..to].iter().filter(|&&b| b == b'\n').count();
                *counted_to = to;
            }
            return *line;
        }
        while self.next + 1 < self.starts.len() && self.starts[self.next + 1].0 as usize <= offset {
            self.next += 1;
        }
        self.starts.get(self.next).map_or(1, |&(_, line)| line as usize)
    }
}

/// `parse_forward_list`: sort every item of a redirection list into `listing`.
fn parse_list(data: &[u8], key: Option<&[u8]>, lines: &mut LineCursor, listing: &mut Listing) {
    let mut pos = 0;
    let mut lone_quote_seen = false;
    loop {
        loop {
            while pos < data.len() && (is_c_space(data[pos]) || data[pos] == b',') {
                pos += 1;
            }
            if data.get(pos) == Some(&b'#') {
                while pos < data.len() && data[pos] != b'\n' {
                    pos += 1;
                }
            } else {
                break;
            }
        }
        if pos >= data.len() {
            return;
        }
        let start = pos;
        let (item_end, quote_left_open) = find_item_end(data, start);
        pos = item_end;
        let line = lines.line_at(start);
        let problem = |what: &str| Problem { line, what: what.to_string(), fails_list: false };
        let fatal = |what: &str| Problem { line, what: what.to_string(), fails_list: true };

        // At least one byte here is neither white space nor a comma.
        let mut end = item_end;
        while end > start && is_c_space(data[end - 1]) {
            end -= 1;
        }
        if end - start == 1 && data[start] == b'"' {
            // Exim strips the quote as if it both opened and closed the item;
            // the negative length left is clipped by its string copy to the
            // end of the data, so all the rest of the list is read as one
            // address. Only the first such quote is parsed that way: doing it
            // for every one would take quadratic time.
            let rest = if lone_quote_seen { Err(AddressError::Invalid) } else { parse_address(&data[start + 1..]) };
            let found = match (lone_quote_seen, rest) {
                (false, Err(AddressError::Empty)) => problem("a lone double quote, which Exim ignores"),
                (false, Ok(_)) => problem("a lone double quote: Exim reads the rest of the list as one more address"),
                _ => fatal(
                    "a lone double quote; Exim reads the rest of the list as one address, which usually fails the \
                      whole list (unless skip_syntax_errors)",
                ),
            };
            lone_quote_seen = true;
            listing.add_problem(found);
            continue;
        }
        let mut begin = start;
        let quoted = end - begin >= 2 && data[begin] == b'"' && data[end - 1] == b'"';
        if quoted {
            begin += 1;
            end -= 1;
            while begin < end && is_c_space(data[begin]) {
                begin += 1;
            }
            while end > begin && is_c_space(data[end - 1]) {
                end -= 1;
            }
        }
        let item = &data[begin..end];

        // Exim compares only the item's length: any prefix of it is ignored.
        if b":unknown:".starts_with(item) {
            continue;
        }
        // These three look past the item's end, as Exim's strncmp does, and
        // make the rest of the list their message.
        let from_item = &data[begin..];
        if [&b":defer:"[..], b":blackhole:", b":fail:"].iter().any(|special| from_item.starts_with(special)) {
            listing.other_items += 1;
            return;
        }
        if let Some(after) = item.strip_prefix(b":include:") {
            listing.other_items += 1;
            let path = trim_c_space(after);
            if path.first() == Some(&b'/') {
                listing.add_include(Include { line, key: key.map(<[u8]>::to_vec), path: path.to_vec() });
            } else {
                listing.add_problem(fatal(":include: needs an absolute file name; Exim fails the whole list on this"));
            }
            continue;
        }

        // A leading backslash asks for an unqualified local address (\user).
        let escaped_local = item.first() == Some(&b'\\') && parse_address(&item[1..]) == Ok(false);
        let parsed = if escaped_local { Ok(false) } else { parse_address(item) };
        let is_pipe_or_file = matches!(item.first(), Some(b'|' | b'/')) && parsed != Ok(true);
        if is_pipe_or_file && item[0] == b'|' {
            let (text, lone_backslash) = if quoted { unescape_quoted(item) } else { (item.to_vec(), false) };
            if lone_backslash {
                listing.add_problem(problem(
                    "quoted pipe ends in a lone backslash; what Exim runs is undefined, so it is not listed",
                ));
            } else if text[1..].iter().all(|&b| is_c_space(b)) {
                listing.add_problem(problem("empty pipe: '|' with no command"));
            } else {
                listing.add_pipe(Pipe { line, key: key.map(<[u8]>::to_vec), text });
            }
        } else if is_pipe_or_file || parsed.is_ok() {
            listing.other_items += 1;
        } else if parsed == Err(AddressError::Empty) {
            // Exim lets people write empty addresses as comments.
        } else if quote_left_open || (data[start] == b'"' && !quoted) {
            listing.add_problem(fatal(
                "unterminated double quote; Exim fails the whole list on this (unless skip_syntax_errors)",
            ));
        } else {
            listing.add_problem(fatal(
                "neither an address nor a pipe or file; Exim fails the whole list on this (unless skip_syntax_errors)",
            ));
        }
    }
}

/// `parse_find_address_end` with newlines ending items: where the item that
/// starts at `start` ends (a comma, a newline or the end), and whether a
/// double-quoted string was still open there.
fn find_item_end(data: &[u8], start: usize) -> (usize, bool) {
    let mut source_routing = data.get(start) == Some(&b'@');
    // Positive while commas belong to the item: inside <...> or a source route.
    let mut comma_shield: isize = if source_routing { 1 } else { 0 };
    let mut quote_open = false;
    let mut at = start;
    while at < data.len() && (data[at] != b',' || comma_shield > 0) && data[at] != b'\n' {
        match data[at] {
            b'\\' if at + 1 < data.len() => at += 2,
            b'"' => {
                quote_open = true;
                at += 1;
                while at < data.len() && data[at] != b'\n' {
                    if data[at] == b'\\' && at + 1 < data.len() {
                        at += 2;
                    } else if data[at] == b'"' {
                        at += 1;
                        quote_open = false;
                        break;
                    } else {
                        at += 1;
                    }
                }
            }
            b'(' => {
                let mut depth = 1usize;
                at += 1;
                while at < data.len() && data[at] != b'\n' {
                    match data[at] {
                        b'\\' if at + 1 < data.len() => at += 2,
                        b'(' => {
                            depth += 1;
                            at += 1;
                        }
                        b')' => {
                            depth -= 1;
                            at += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => at += 1,
                    }
                }
            }
            byte => {
                if byte == b'<' {
                    source_routing = data.get(at + 1) == Some(&b'@');
                    comma_shield = if source_routing { 2 } else { 1 };
                } else if byte == b'>' || (source_routing && byte == b':') {
                    comma_shield -= 1;
                }
                at += 1;
            }
        }
    }
    (at, quote_open)
}

/// What `parse_forward_list` does to a quoted pipe or file: every backslash
/// goes and the byte after it stays. The flag says a lone backslash was left at
/// the end, where Exim reads past the item (undefined).
fn unescape_quoted(item: &[u8]) -> (Vec<u8>, bool) {
    let mut text = Vec::with_capacity(item.len());
    let mut at = 0;
    while at < item.len() {
        if item[at] == b'\\' {
            match item.get(at + 1) {
                Some(&next) => text.push(next),
                None => return (text, true),
            }
            at += 2;
        } else {
            text.push(item[at]);
            at += 1;
        }
    }
    (text, false)
}

/// Why an item is not an RFC 822 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressError {
    /// Nothing but comments or white space: Exim skips such items quietly.
    Empty,
    Invalid,
}

/// RFC 5321's limit on an address, which Exim enforces (`EXIM_EMAILADDR_MAX`).
const ADDRESS_MAX: usize = 256;

/// `parse_extract_address` with Exim's default options (no domain literals
/// except where Exim lets message-id style ones through, no UTF-8 domains, no
/// group syntax, no excess angle brackets): Ok(true) for an address with a
/// domain, Ok(false) for a bare local part.
fn parse_address(item: &[u8]) -> Result<bool, AddressError> {
    use AddressError::{Empty, Invalid};
    let mut p = Rfc822 { text: item, last_comment: 0 };
    let mut at = p.skip_comment(0);
    let mut begin = at;
    let (after, local_len) = p.read_local_part(at, true).map_err(|_| Invalid)?;
    at = after;
    let end;
    let has_domain;
    if p.byte(at) != b'@' && p.byte(at) != b'<' {
        if p.byte(at) == 0 || p.byte(at) == b';' {
            if local_len == 0 {
                return Err(Empty);
            }
            return p.finish(at, begin, p.last_comment, false);
        }
        // A phrase before <route-addr>; each word read consumes bytes or fails.
        while p.byte(at) != b'<' {
            at = p.read_local_part(at, false).map_err(|_| Invalid)?.0;
        }
    }
    if p.byte(at) == b'<' {
        at += 1;
        begin = at;
        at = p.skip_comment(at);
        let mut source_routed = false;
        if p.byte(at) == b'@' {
            at = p.read_route(at)?;
            source_routed = true;
        }
        let (after, domain) = p.read_addr_spec(at, b'>')?;
        if source_routed && !domain {
            return Err(Invalid);
        }
        end = after;
        if p.byte(after) != b'>' {
            return Err(Invalid);
        }
        at = p.skip_comment(after + 1);
        has_domain = domain;
    } else if local_len == 0 {
        // "@route:local@domain" without angle brackets.
        at = p.read_route(at)?;
        let (after, domain) = p.read_addr_spec(at, 0)?;
        if !domain {
            return Err(Invalid);
        }
        at = after;
        end = p.last_comment;
        has_domain = true;
    } else {
        at = p.read_domain(at + 1, true)?;
        end = p.last_comment;
        has_domain = true;
    }
    p.finish(at, begin, end, has_domain)
}

/// The state of one `parse_address` run over an item (read as a C string:
/// past its end every byte is 0).
struct Rfc822<'a> {
    text: &'a [u8],
    /// Where the latest comment skip began: the end of the last token, as Exim
    /// uses it to measure the address.
    last_comment: usize,
}

impl Rfc822<'_> {
    fn byte(&self, at: usize) -> u8 {
        self.text.get(at).copied().unwrap_or(0)
    }

    /// The end checks: nothing may follow, and the address is not too long.
    fn finish(&self, at: usize, begin: usize, end: usize, has_domain: bool) -> Result<bool, AddressError> {
        if self.byte(at) != 0 {
            return Err(AddressError::Invalid);
        }
        let mut end = end.min(self.text.len());
        while end > 0 && is_c_space(self.text[end - 1]) {
            end -= 1;
        }
        if end.saturating_sub(begin) > ADDRESS_MAX {
            return Err(AddressError::Invalid);
        }
        Ok(has_domain)
    }

    /// `skip_comment`: white space and (nested, backslash-escaped) parenthesised comments.
    fn skip_comment(&mut self, mut at: usize) -> usize {
        self.last_comment = at;
        loop {
            while is_c_space(self.byte(at)) {
                at += 1;
            }
            if self.byte(at) != b'(' {
                return at;
            }
            let mut depth = 1usize;
            loop {
                at += 1;
                match self.byte(at) {
                    0 => break,
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            at += 1;
                            break;
                        }
                    }
                    b'\\' if self.byte(at + 1) != 0 => at += 1,
                    _ => {}
                }
            }
            if self.byte(at) == 0 {
                return at;
            }
        }
    }

    /// `read_local_part`: dot-separated words (quoted strings or atoms that may
    /// hold backslash pairs). Returns the position after it and how many bytes
    /// the local part has.
    fn read_local_part(&mut self, mut at: usize, allow_empty: bool) -> Result<(usize, usize), ()> {
        let mut length = 0;
        loop {
            let word_start = length;
            at = self.skip_comment(at);
            if self.byte(at) == b'"' {
                length += 1;
                loop {
                    at += 1;
                    match self.byte(at) {
                        0 => return Err(()), // unmatched double quote
                        b'"' => break,
                        b'\\' if self.byte(at + 1) != 0 => {
                            at += 1;
                            length += 2;
                        }
                        _ => length += 1,
                    }
                }
                at += 1;
                length += 1;
            } else {
                while !is_control_or_special(self.byte(at)) || self.byte(at) == b'\\' {
                    let was_backslash = self.byte(at) == b'\\';
                    at += 1;
                    length += 1;
                    if was_backslash && self.byte(at) != 0 {
                        at += 1;
                        length += 1;
                    }
                }
            }
            at = self.skip_comment(at);
            if length == word_start && self.byte(at) != b'.' {
                if length == 0 && !allow_empty {
                    return Err(()); // missing or malformed local part
                }
                return Ok((at, length));
            }
            if self.byte(at) != b'.' {
                return Ok((at, length));
            }
            while self.byte(at) == b'.' {
                at += 1;
                length += 1;
            }
        }
    }

    /// `read_domain`: `at` is just after the `@`.
    fn read_domain(&mut self, at: usize, message_id_literals: bool) -> Result<usize, AddressError> {
        let mut at = self.skip_comment(at);
        if self.byte(at) == b'[' {
            at += 1;
            let tag = self.text.get(at..at + 5).unwrap_or_default();
            if tag.eq_ignore_ascii_case(b"IPv6:") || tag.eq_ignore_ascii_case(b"IPv4:") {
                at += 5;
            }
            if message_id_literals {
                while matches!(self.byte(at), 33..=90 | 94..=126) {
                    at += 1;
                }
            } else {
                while self.byte(at) == b'.' || self.byte(at) == b':' || self.byte(at).is_ascii_hexdigit() {
                    at += 1;
                }
            }
            // allow_domain_literals is off by default: only the message-id
            // style literal of a plain local@domain gets through.
            if self.byte(at) != b']' || !message_id_literals {
                return Err(AddressError::Invalid);
            }
            return Ok(self.skip_comment(at + 1));
        }
        loop {
            let label_start = at;
            if self.byte(at) != b'-' {
                while self.byte(at).is_ascii_alphanumeric() || self.byte(at) == b'-' {
                    at += 1;
                }
            }
            let label_len = at - label_start;
            at = self.skip_comment(at);
            if label_len == 0 {
                return Err(AddressError::Invalid); // domain missing or malformed
            }
            if self.byte(at) != b'.' {
                return Ok(at);
            }
            at = self.skip_comment(at + 1);
        }
    }

    /// `read_route`: "@domain,@domain:" before a source-routed address.
    fn read_route(&mut self, mut at: usize) -> Result<usize, AddressError> {
        while self.byte(at) == b'@' {
            at = self.read_domain(at + 1, false)?;
            if self.byte(at) != b',' {
                break;
            }
            at = self.skip_comment(at + 1);
        }
        if self.byte(at) != b':' {
            return Err(AddressError::Invalid);
        }
        Ok(self.skip_comment(at + 1))
    }

    /// `read_addr_spec`: local-part, then `@domain` unless `terminator` comes first.
    fn read_addr_spec(&mut self, at: usize, terminator: u8) -> Result<(usize, bool), AddressError> {
        let (at, _) = self.read_local_part(at, false).map_err(|_| AddressError::Invalid)?;
        if self.byte(at) == terminator {
            return Ok((at, false));
        }
        if self.byte(at) != b'@' {
            return Err(AddressError::Invalid);
        }
        Ok((self.read_domain(at + 1, false)?, true))
    }
}

/// Exim's `mac_iscntrl_or_special`: what ends an RFC 822 atom (the end of the
/// string, as 0, included).
fn is_control_or_special(byte: u8) -> bool {
    byte < 0x20 || b" ()<>@,;:\\\".[]\x7f".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(forward: &[u8]) -> Listing {
        match parse_forward(forward) {
            Forward::List(listing) => listing,
            Forward::Filter(kind) => panic!("unexpectedly a {kind:?} filter"),
        }
    }

    /// (line, text) of every pipe, for compact assertions.
    fn pipes(listing: &Listing) -> Vec<(usize, &[u8])> {
        listing.pipes.iter().map(|p| (p.line, p.text.as_slice())).collect()
    }

    fn problem_lines(listing: &Listing) -> Vec<usize> {
        listing.problems.iter().map(|p| p.line).collect()
    }

    #[test]
    fn forward_plain_pipe() {
        let l = list(b"|/home/alice/bin/ticket.php\n");
        assert_eq!(pipes(&l), [(1, &b"|/home/alice/bin/ticket.php"[..])]);
        assert_eq!(l.pipes[0].key, None);
        assert!(l.problems.is_empty());
        assert_eq!(l.other_items, 0);
    }

    #[test]
    fn forward_quoted_pipe_keeps_spaces_and_commas() {
        let l = list(b"\"|/usr/bin/php -q /home/a/x.php\"\n");
        assert_eq!(pipes(&l), [(1, &b"|/usr/bin/php -q /home/a/x.php"[..])]);
        let l = list(b"\"|/x a,b\", bob\n");
        assert_eq!(pipes(&l), [(1, &b"|/x a,b"[..])]);
        assert_eq!(l.other_items, 1);
    }

    #[test]
    fn forward_unquoted_pipe_ends_at_comma() {
        let l = list(b"|/x a, b");
        assert_eq!(pipes(&l), [(1, &b"|/x a"[..])]);
        assert_eq!(l.other_items, 1);
    }

    #[test]
    fn forward_address_then_pipe() {
        let l = list(b"alice@example.com, \"|/x y\"\n");
        assert_eq!(pipes(&l), [(1, &b"|/x y"[..])]);
        assert_eq!(l.other_items, 1);
    }

    #[test]
    fn forward_backslash_user_and_procmail() {
        let l = list(b"\\alice, |/usr/bin/procmail\n");
        assert_eq!(pipes(&l), [(1, &b"|/usr/bin/procmail"[..])]);
        assert_eq!(l.other_items, 1);
        assert!(l.problems.is_empty());
    }

    #[test]
    fn forward_comments_and_line_numbers() {
        let l = list(b"# my forward\n\nalice@example.com\n  |/bin/a # not a comment here\n# |/bin/commented\n|/bin/b");
        assert_eq!(pipes(&l), [(4, &b"|/bin/a # not a comment here"[..]), (6, &b"|/bin/b"[..])]);
        assert_eq!(l.other_items, 1);
    }

    #[test]
    fn forward_crlf() {
        let l = list(b"alice\r\n|/bin/a\r\n\"|/bin/b c\"\r\n");
        assert_eq!(pipes(&l), [(2, &b"|/bin/a"[..]), (3, &b"|/bin/b c"[..])]);
        assert!(l.problems.is_empty());
    }

    #[test]
    fn forward_filters_are_recognised() {
        for (text, kind) in [
            (&b"# Exim filter\nif $h_subject: contains x then pipe /x endif"[..], FilterKind::Exim),
            (b"#Exim filter\n", FilterKind::Exim),
            (b"# exim FILTER", FilterKind::Exim),
            (b"\n\n  #\t Exim  \tfilter -- mine\n", FilterKind::Exim),
            (b"# Eximfilter\n", FilterKind::Exim),
            (b"# Sieve filter\nrequire \"fileinto\";", FilterKind::Sieve),
            (b"#SIEVE FILTER\r\n", FilterKind::Sieve),
        ] {
            assert_eq!(parse_forward(text), Forward::Filter(kind), "{text:?}");
        }
        for text in [&b"# Exim filte\n|/x"[..], b"x\n# Exim filter\n", b"## Exim filter\n"] {
            assert!(matches!(parse_forward(text), Forward::List(_)), "{text:?}");
        }
    }

    #[test]
    fn forward_quote_escapes_are_resolved() {
        let l = list(br#""|/bin/echo \"hi\" a\\b \x""#);
        assert_eq!(pipes(&l), [(1, &br#"|/bin/echo "hi" a\b x"#[..])]);
        // Unquoted, backslashes stay: the pipe transport deals with them.
        let l = list(br"|/bin/echo a\ b");
        assert_eq!(pipes(&l), [(1, &br"|/bin/echo a\ b"[..])]);
    }

    #[test]
    fn forward_white_space_inside_quotes_is_dropped() {
        let l = list(b"  \"  |/bin/x y  \"  ");
        assert_eq!(pipes(&l), [(1, &b"|/bin/x y"[..])]);
    }

    #[test]
    fn forward_unterminated_quote_is_a_problem() {
        let l = list(b"alice\n\"|/usr/bin/php -q x.php\n|/bin/ok\n");
        assert_eq!(pipes(&l), [(3, &b"|/bin/ok"[..])]);
        assert_eq!(problem_lines(&l), [2]);
        assert!(l.problems[0].what.contains("unterminated"), "{}", l.problems[0]);
        let l = list(b"\"");
        assert_eq!(problem_lines(&l), [1]);
        assert!(l.pipes.is_empty());
        // A lone quote makes Exim read all the rest as one address.
        let l = list(b"|/bin/a\n\" \n|/bin/b\n\"\n");
        assert_eq!(pipes(&l), [(1, &b"|/bin/a"[..]), (3, &b"|/bin/b"[..])]);
        assert_eq!(problem_lines(&l), [2, 4]);
        assert!(l.problems[0].what.contains("fails the whole list"), "{}", l.problems[0]);
        assert!(l.problems[1].what.contains("reads the rest"), "{}", l.problems[1]);
        let l = list(b"\"\r\n  (comment)\n");
        assert!(l.problems[0].what.contains("ignores"), "{}", l.problems[0]);
    }

    #[test]
    fn only_problems_that_make_exim_reject_the_list_say_so() {
        let l = list(b"\"|/bin/x\n");
        assert!(l.problems.iter().all(|p| p.fails_list), "unterminated quote: {l:?}");
        let l = list(b"|\n:include:relative\n");
        assert_eq!(l.problems.iter().map(|p| p.fails_list).collect::<Vec<_>>(), [false, true], "{l:?}");
        assert!(parse_aliases(b"a: x\nb: x\nA: y\n").problems.iter().all(|p| !p.fails_list));
    }

    #[test]
    fn forward_empty_pipe_is_a_problem() {
        for text in [&b"|"[..], b"| \n", b"\"|  \"", b"bob, |  ,"] {
            let l = list(text);
            assert!(l.pipes.is_empty(), "{text:?}");
            assert_eq!(problem_lines(&l), [1], "{text:?}");
            assert!(l.problems[0].what.contains("empty pipe"));
        }
    }

    #[test]
    fn forward_nul_hides_the_rest() {
        let l = list(b"|/bin/a\n|/bin/b\0|/bin/c\n|/bin/d\n");
        assert_eq!(pipes(&l), [(1, &b"|/bin/a"[..]), (2, &b"|/bin/b"[..])]);
        assert_eq!(problem_lines(&l), [2]);
        assert!(l.problems[0].what.contains("NUL"));
    }

    #[test]
    fn forward_pipe_like_addresses_are_addresses() {
        // Exim takes these as mail addresses because they have a domain.
        for text in [&b"|x@example.com"[..], b"|/bin/x@example.com", b"|prog <a@example.com>", b"\"|x@example.com\""] {
            let l = list(text);
            assert!(l.pipes.is_empty(), "{text:?}");
            assert_eq!(l.other_items, 1, "{text:?}");
        }
        // Not addresses: words before an @ without <>, or a bad domain.
        for text in [&b"|/bin/mail user@example.com"[..], b"|/bin/x@", b"|/bin/x@-bad", b"|a@[1.2.3.4"] {
            assert_eq!(list(text).pipes.len(), 1, "{text:?}");
        }
    }

    #[test]
    fn forward_comma_inside_parens_or_angles_does_not_split() {
        let l = list(b"|/bin/x (a, b), |/bin/y <c, d, |/bin/z\n|/bin/w");
        assert_eq!(pipes(&l), [(1, &b"|/bin/x (a, b)"[..]), (1, &b"|/bin/y <c, d, |/bin/z"[..]), (2, &b"|/bin/w"[..])]);
    }

    #[test]
    fn forward_backslash_newline_continues_an_item() {
        let l = list(b"\"|/bin/x a\\\nb\"\n|/bin/y");
        assert_eq!(pipes(&l), [(1, &b"|/bin/x a\nb"[..]), (3, &b"|/bin/y"[..])]);
    }

    #[test]
    fn forward_specials_end_the_list() {
        let l = list(b"|/bin/a, :fail: go away, |/bin/not-a-pipe\n|/bin/nor-this");
        assert_eq!(pipes(&l), [(1, &b"|/bin/a"[..])]);
        assert_eq!(l.other_items, 1);
        for special in [&b":blackhole:"[..], b":defer: later", b"\":fail: x\""] {
            let mut text = special.to_vec();
            text.extend_from_slice(b"\n|/bin/x");
            let l = list(&text);
            assert!(l.pipes.is_empty(), "{special:?}");
            assert_eq!(l.other_items, 1);
        }
        let l = list(b":unknown:, :unk, |/bin/a");
        assert_eq!(pipes(&l), [(1, &b"|/bin/a"[..])]);
        assert_eq!(l.other_items, 0);
    }

    #[test]
    fn forward_files_includes_and_junk() {
        let l = list(b"/var/mail/alice, :include: /etc/lists/staff\n:include:relative\n  (only a comment)\nfoo bar\n");
        assert!(l.pipes.is_empty());
        assert_eq!(l.other_items, 3);
        assert_eq!(l.includes, [Include { line: 1, key: None, path: b"/etc/lists/staff".to_vec() }]);
        assert_eq!(problem_lines(&l), [2, 4]);
    }

    #[test]
    fn forward_quoted_pipe_ending_in_backslash_is_a_problem() {
        let l = list(b"\"|/bin/x\\\"\n|/bin/y");
        assert_eq!(pipes(&l), [(2, &b"|/bin/y"[..])]);
        assert_eq!(problem_lines(&l), [1]);
    }

    #[test]
    fn aliases_directadmin() {
        let l = parse_aliases(
            b"support: \"|/usr/local/bin/php -q /home/bob/domains/example.com/public_html/pipe.php\"\n\
              info: bob,\"|/home/bob/x\"\nbob: bob\n",
        );
        assert_eq!(
            pipes(&l),
            [
                (1, &b"|/usr/local/bin/php -q /home/bob/domains/example.com/public_html/pipe.php"[..]),
                (2, b"|/home/bob/x")
            ]
        );
        assert_eq!(l.pipes[0].key.as_deref(), Some(&b"support"[..]));
        assert_eq!(l.pipes[1].key.as_deref(), Some(&b"info"[..]));
        assert_eq!(l.other_items, 2);
        assert!(l.problems.is_empty());
    }

    #[test]
    fn aliases_cpanel() {
        let l = parse_aliases(
            b"tickets@example.com: \"|/home/carol/public_html/support/pipe.php\"\r\n*: :fail: No Such User Here\r\n",
        );
        assert_eq!(pipes(&l), [(1, &b"|/home/carol/public_html/support/pipe.php"[..])]);
        assert_eq!(l.pipes[0].key.as_deref(), Some(&b"tickets@example.com"[..]));
        assert_eq!(l.other_items, 1);
        let l = parse_aliases(b"*: carol\n");
        assert_eq!((l.pipes.len(), l.other_items), (0, 1));
    }

    #[test]
    fn aliases_continuation_lines() {
        let l = parse_aliases(b"# list\nstaff: alice,\n  |/bin/a,\n\t\"|/bin/b\n  c\"\nnext: |/bin/n\n");
        assert_eq!(pipes(&l), [(3, &b"|/bin/a"[..]), (4, &b"|/bin/b c"[..]), (6, &b"|/bin/n"[..])]);
        assert_eq!(l.pipes[2].key.as_deref(), Some(&b"next"[..]));
        assert_eq!(l.other_items, 1);
    }

    #[test]
    fn aliases_blank_or_comment_line_ends_the_data() {
        let l = parse_aliases(b"a: |/bin/a\n\n  |/bin/orphan\nb: x\n# c\n  |/bin/orphan2\n  more\n");
        assert_eq!(pipes(&l), [(1, &b"|/bin/a"[..])]);
        assert_eq!(problem_lines(&l), [3, 6, 7]);
    }

    #[test]
    fn aliases_hash_item_comments_out_the_rest_of_the_data() {
        // lsearch joins the lines, so the comment runs to the end of the data.
        let l = parse_aliases(b"info: bob, # old\n  |/bin/dead\nother: |/bin/live\n");
        assert_eq!(pipes(&l), [(3, &b"|/bin/live"[..])]);
    }

    #[test]
    fn aliases_keys() {
        let l = parse_aliases(b"\"odd key\\x41\": |/bin/a\nplain |/bin/b\nsp  :  |/bin/c\nPlain: |/bin/dead\n");
        let keys: Vec<_> = l.pipes.iter().map(|p| p.key.clone().unwrap()).collect();
        assert_eq!(keys, [b"odd keyA".to_vec(), b"plain".to_vec(), b"sp".to_vec()]);
        assert_eq!(pipes(&l)[1], (2, &b"|/bin/b"[..]));
        assert_eq!(problem_lines(&l), [4]);
    }

    #[test]
    fn aliases_problems() {
        let l = parse_aliases(b"a: \"|/bin/x\nb: |\nc: |/bin/ok\0junk\nd: |/bin/d\n");
        assert_eq!(pipes(&l), [(3, &b"|/bin/ok"[..]), (4, &b"|/bin/d"[..])]);
        assert_eq!(problem_lines(&l), [1, 2, 3], "in line order");
    }

    #[test]
    fn a_listing_keeps_a_bounded_number_of_items_and_counts_the_rest() {
        let l = list(&b"|x,".repeat(5000));
        assert_eq!(l.pipes.len(), MAX_LISTED);
        assert_eq!(l.omitted, 5000 - MAX_LISTED);
        // A problem that fails the list is kept even past the limit.
        let mut data = b"|\n".repeat(MAX_LISTED + 10);
        data.extend_from_slice(b"\"open\n");
        let forward = list(&data);
        assert_eq!(forward.problems.len(), MAX_LISTED + 1);
        assert!(forward.problems.last().unwrap().fails_list);
        let aliases = parse_aliases(&b"  orphan\n".repeat(MAX_LISTED + 5));
        assert_eq!((aliases.problems.len(), aliases.omitted), (MAX_LISTED, 5));
    }

    #[test]
    fn owners() {
        let owners = parse_owners(b"example.com: bob\n\nEXAMPLE.org:carol\r\n*: nobody\ngarbage\n: x\nx:\n# c: d\na b: c\nev/il: x\n.. : x\nok.net: ..\n");
        assert_eq!(owners, [(b"example.com".to_vec(), b"bob".to_vec()), (b"example.org".to_vec(), b"carol".to_vec())]);
        assert!(parse_owners(b"").is_empty());
        assert!(parse_owners(b"\xff\xfe\x00:\x00").is_empty());
    }

    #[test]
    fn binary_detection() {
        assert!(!looks_binary(b""));
        assert!(!looks_binary(b"|/bin/x\r\n\tmore\x0c\n"));
        assert!(!looks_binary("café: |/bin/ü\n".as_bytes()));
        assert!(looks_binary(b"|/bin/x\0"));
        assert!(looks_binary(b"\x7fELF\x02\x01\x01\x03\x04\x05"));
    }

    #[test]
    fn problems_display_their_line() {
        let l = list(b"a\n\"|x");
        assert_eq!(l.problems[0].to_string(), format!("line 2: {}", l.problems[0].what));
    }

    #[test]
    fn huge_inputs_stay_fast() {
        // Each of these would take quadratic time if a scan restarted per item.
        for unit in
            [&b"("[..], b"<", b"\"", b"\\", b"a.", b",", b"|x (", b"@a,", b"a ", b"\n  x,", b"\"\n", b"\"\n\"x\"\n"]
        {
            let data = unit.repeat(200_000);
            let _ = parse_forward(&data);
            let _ = parse_aliases(&[&b"k: "[..], &data].concat());
            let _ = parse_owners(&data);
            let _ = looks_binary(&data);
        }
    }

    use crate::parse::test_rng::XorShift;

    fn check_invariants(data: &[u8]) {
        let line_count = data.split(|&b| b == b'\n').count();
        let check = |listing: &Listing, key_expected: bool| {
            for pipe in &listing.pipes {
                assert_eq!(pipe.text.first(), Some(&b'|'), "{data:?}");
                assert!((1..=line_count).contains(&pipe.line), "{data:?}");
                assert_eq!(pipe.key.is_some(), key_expected);
            }
            for problem in &listing.problems {
                assert!((1..=line_count).contains(&problem.line), "{data:?}");
            }
            for include in &listing.includes {
                assert!((1..=line_count).contains(&include.line), "{data:?}");
            }
        };
        if let Forward::List(listing) = parse_forward(data) {
            check(&listing, false);
        }
        check(&parse_aliases(data), true);
        for (domain, user) in parse_owners(data) {
            assert!(!domain.is_empty() && !user.is_empty());
            assert_eq!(domain, domain.to_ascii_lowercase());
        }
        let _ = looks_binary(data);
    }

    #[test]
    fn random_bytes_never_break_the_invariants() {
        const INTERESTING: &[u8] = b"|\"\\,\n\r\t :#@<>().;[]/-xa0\0";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = rng.below(120);
            let data: Vec<u8> = (0..len)
                .map(|_| if rng.below(4) == 0 { rng.next() as u8 } else { INTERESTING[rng.below(INTERESTING.len())] })
                .collect();
            check_invariants(&data);
        }
    }

    #[test]
    fn every_prefix_of_the_examples_keeps_the_invariants() {
        let sample: &[u8] = b"# c\r\nsupport: \"|/usr/bin/php -q /x.php\"\ninfo: bob,\"|/home/bob/x\"\n  \\alice, |/bin/y (a,b)\n*: :fail: No\n\"k\\\"ey\": <a@b>, @r,@s:u@v, |a@[1.2]\n";
        for end in 0..=sample.len() {
            check_invariants(&sample[..end]);
        }
    }
}
