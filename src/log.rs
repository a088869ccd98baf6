//! Two sinks with one fixed format: the audit line to syslog (facility mail,
//! program `cagepipe`), the human sentence to stderr.
//!
//! The syslog socket is connected before any namespace is entered and the
//! line is formatted without reading any file (no time zone database), so
//! logging after entering the container reads nothing the container owns.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::net::UnixDatagram;

/// Longest audit line sent, after escaping.
pub(crate) const MAX_LINE: usize = 1024;

const FACILITY_MAIL: u8 = 2 << 3;
pub(crate) const INFO: u8 = 6;
pub(crate) const WARNING: u8 = 4;
pub(crate) const ERR: u8 = 3;

pub(crate) const DEFAULT_SOCKET: &str = "/dev/log";

/// How long an audit line may wait for room in the syslog daemon's queue
/// (net.unix.max_dgram_qlen lines, 10 by default). A daemon that stopped
/// reading would otherwise hold every delivery after the command has ended,
/// until Exim's timeout kills it and bounces a delivered message.
pub(crate) const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) struct Log {
    socket: Option<UnixDatagram>,
    path: std::path::PathBuf,
    /// Ours, from the /proc/self/status start-up reads anyway; asked of
    /// the kernel only if that did not tell.
    pid: Option<u32>,
}

fn connect(path: &std::path::Path) -> Option<UnixDatagram> {
    let socket = UnixDatagram::unbound().ok()?;
    socket.connect(path).ok()?;
    socket.set_write_timeout(Some(SEND_TIMEOUT)).ok()?;
    Some(socket)
}

impl Log {
    /// Connect to /dev/log now; without it, lines go to stderr.
    pub(crate) fn open() -> Log {
        let path = std::path::PathBuf::from(DEFAULT_SOCKET);
        Log { socket: connect(&path), path, pid: None }
    }

    /// Our process id, as our own pid namespace numbers it (NSpid's last).
    pub(crate) fn know_pid(&mut self, pid: u32) {
        self.pid = Some(pid);
    }

    /// Use the configured socket instead (called before anything is entered).
    pub(crate) fn use_socket(&mut self, path: &std::path::Path) {
        if path != self.path {
            self.socket = connect(path);
            self.path = path.to_path_buf();
        }
    }

    /// Send the audit line. If syslog is unavailable (or its queue stays
    /// full for [`SEND_TIMEOUT`]) it goes to stderr, except for a
    /// successful delivery: Exim's `return_output` turns any
    /// output into a failure, and a working delivery must not bounce
    /// because the syslog daemon is down.
    /// `quiet`: nothing on stderr if syslog cannot take the line (a
    /// success, or a failure already explained there).
    pub(crate) fn audit(&self, severity: u8, line: &str, quiet: bool) {
        let line = audit_text(line);
        let sent = self.socket.as_ref().is_some_and(|s| {
            let msg = format!(
                "<{}>cagepipe[{}]: {}",
                FACILITY_MAIL | severity,
                self.pid.unwrap_or_else(std::process::id),
                line
            );
            s.send(msg.as_bytes()).is_ok()
        });
        if !sent && !quiet {
            let _ = writeln!(std::io::stderr(), "cagepipe: {line}");
        }
    }
}

/// Tell a person what went wrong and what to fix, in one line.
pub(crate) fn to_stderr(message: &str) {
    let _ = writeln!(std::io::stderr(), "cagepipe: {}", escape(message.as_bytes()));
}

/// [`escape`](crate::escape::escape)d, and capped so that a hostile
/// argument cannot flood the log.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(4 * MAX_LINE)];
    cap(crate::escape::escape(cut))
}

/// At most [`MAX_LINE`] bytes, cut at a character boundary and marked "...".
fn cap(mut out: String) -> String {
    if out.len() > MAX_LINE {
        let mut cut = MAX_LINE - 3;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// Quote a value for a `key=value` audit field when it needs it: inside
/// the quotes `\\` and `\"` stand for themselves and control characters
/// are `\n`, `\t` or `\xHH`, so a line splits into its fields unambiguously.
pub(crate) fn field(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\')) {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if crate::escape::is_format(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The audit line as sent: its fields are already quoted and escaped by
/// [`field`] (escaping the whole line again would double every backslash
/// they wrote), so only stray control characters are escaped here, and the
/// length is capped.
fn audit_text(line: &str) -> String {
    let mut out = String::new();
    for c in line.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else if crate::escape::is_format(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
        if out.len() > MAX_LINE {
            break;
        }
    }
    cap(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_capped() {
        let long = vec![b'x'; 10 * MAX_LINE];
        let e = escape(&long);
        assert_eq!(e.len(), MAX_LINE);
        assert!(e.ends_with("..."));
        let wide = "\u{e9}".repeat(MAX_LINE);
        assert!(escape(wide.as_bytes()).len() <= MAX_LINE);
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("no such file"), "\"no such file\"");
        assert_eq!(field("a\"b"), "\"a\\\"b\"");
        assert_eq!(field("a\\b"), "\"a\\\\b\"");
        assert_eq!(field("x\ny\u{1b}"), "\"x\\ny\\x1b\"");
        assert_eq!(field(""), "\"\"");
        assert_eq!(field("a\u{202e}b"), "\"a\\u{202e}b\"");
        assert_eq!(audit_text("x=\u{202e}\u{1b}"), "x=\\u{202e}\\x1b");
    }

    #[test]
    fn a_quoted_field_reaches_syslog_escaped_once() {
        let line = format!("user=alice reason={}", field("user name \"bad/name\" at C:\\x"));
        assert_eq!(audit_text(&line), "user=alice reason=\"user name \\\"bad/name\\\" at C:\\\\x\"");
        assert_eq!(audit_text("a\u{1b}b"), "a\\x1bb", "a control character outside a field");
        let long = "x".repeat(3 * MAX_LINE);
        assert_eq!(audit_text(&long).len(), MAX_LINE);
    }
}
