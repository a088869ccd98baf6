//! The survey's output, written while the survey runs: a server of 10,000
//! accounts shows its first READY lines at once, and what the survey keeps
//! in memory is one file's pipes, not the whole server's.
//!
//! Both forms keep their two lists in the order they always had, READY
//! first. READY entries go out as they are judged; NEEDS ATTENTION entries
//! and skipped lines are spooled to an unlinked file (`O_TMPFILE` in the
//! temporary directory, mode 0600: nobody else can open it) and copied
//! out after the last READY entry. So the counts of those two lists can
//! still head them, READY's cannot (the summary line gives it), and in
//! JSON `summary` comes after the lists: the document is still one object,
//! written element by element.
//!
//! Everything is escaped where it is put together ([`escape`]) and passed
//! through [`for_terminal`] as it is written. A write that fails (EPIPE
//! from `| head`, ENOSPC) ends the survey with an [`Error::Io`] saying
//! which stream could not be written: exit 75, never a panic.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use crate::admin::notices;
use crate::deliver::lookahead::Verdict;
use crate::error::{Error, Result};
use crate::escape::{escape, for_terminal};
use crate::platform::fs::{open, Mode, OFlag};

use super::{entry_json, entry_line, json_bytes, notices_json, Entry, Skipped};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

/// What is known only at the end, for the summary.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) accounts: usize,
    pub(crate) files: usize,
    pub(crate) elapsed: Duration,
}

/// One list spooled until the READY list is complete.
struct Spool {
    file: BufWriter<File>,
    count: usize,
}

impl Spool {
    fn new(dir: &Path) -> Result<Spool> {
        let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
        let fd = open(dir, flags, Mode::from_bits_truncate(0o600)).map_err(|e| {
            Error::io(format!("survey: cannot create a spool file in {}", dir.display()), io::Error::from(e))
        })?;
        Ok(Spool { file: BufWriter::new(File::from(fd)), count: 0 })
    }

    fn push(&mut self, text: &str) -> Result<()> {
        self.count += 1;
        self.file.write_all(text.as_bytes()).map_err(spool_failed)
    }

    /// Everything spooled, onto `out`.
    fn copy_to(self, out: &mut dyn Write) -> Result<()> {
        let mut file = self.file.into_inner().map_err(|e| spool_failed(e.into_error()))?;
        file.rewind().map_err(spool_failed)?;
        // Copied through a fixed buffer: the spool may be large.
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match io::Read::read(&mut file, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(spool_failed(e)),
            };
            out.write_all(&buf[..n]).map_err(output_failed)?;
        }
    }
}

fn spool_failed(e: io::Error) -> Error {
    Error::io("survey: cannot write or read back its spool file in the temporary directory", e)
}

/// The message for a survey whose output stops: `| head` closed the pipe,
/// the disk filled up.
pub(crate) fn output_failed(e: io::Error) -> Error {
    Error::io("survey: cannot write its output; the survey stopped", e)
}

/// The survey's output, from the heading to the summary.
pub(crate) struct Stream<W: Write> {
    format: Format,
    out: BufWriter<W>,
    ready: usize,
    attention: Spool,
    skipped: Spool,
    rollout: String,
}

impl<W: Write> Stream<W> {
    /// Start the output (the heading goes out at once); the spools are
    /// made in `spool_dir`.
    pub(crate) fn new(out: W, format: Format, rollout: &str, spool_dir: &Path) -> Result<Stream<W>> {
        let mut stream = Stream {
            format,
            out: BufWriter::new(out),
            ready: 0,
            attention: Spool::new(spool_dir)?,
            skipped: Spool::new(spool_dir)?,
            rollout: rollout.to_string(),
        };
        let head = match format {
            Format::Text => format!("cagepipe survey ([rollout] {rollout})\n\nREADY\n"),
            Format::Json => "{\"ready\":[".to_string(),
        };
        stream.write(&head)?;
        stream.flush()?;
        Ok(stream)
    }

    fn write(&mut self, text: &str) -> Result<()> {
        self.out.write_all(for_terminal(text).as_bytes()).map_err(output_failed)
    }

    /// One judged pipe: a READY one goes out now, the others at the end.
    pub(crate) fn entry(&mut self, e: &Entry) -> Result<()> {
        let comma = |n: usize| if n == 0 { "" } else { "," };
        match (&e.verdict, self.format) {
            (Verdict::Ready, Format::Text) => self.write(&format!("  {}\n", entry_line(e)))?,
            (Verdict::Ready, Format::Json) => self.write(&format!("{}{}", comma(self.ready), entry_json(e)))?,
            (Verdict::NeedsAttention { code, reason }, Format::Text) => {
                let text = format!("  {}\n      {code}: {}\n", entry_line(e), escape(reason.as_bytes()));
                self.attention.push(&for_terminal(&text))?
            }
            (Verdict::NeedsAttention { .. }, Format::Json) => {
                let text = format!("{}{}", comma(self.attention.count), entry_json(e));
                self.attention.push(&for_terminal(&text))?
            }
        }
        if e.verdict == Verdict::Ready {
            self.ready += 1;
        }
        Ok(())
    }

    /// A file or line without a pipe the survey can judge.
    pub(crate) fn skipped(&mut self, s: &Skipped) -> Result<()> {
        let text = match self.format {
            Format::Text => {
                let at = s.line.map(|l| format!(" line {l}")).unwrap_or_default();
                format!("  {}{at}: {}\n", escape(s.file.as_os_str().as_bytes()), escape(s.reason.as_bytes()))
            }
            Format::Json => format!(
                "{}{{\"file\":{},\"line\":{},\"reason\":{}}}",
                if self.skipped.count == 0 { "" } else { "," },
                json_bytes(s.file.as_os_str().as_bytes()),
                s.line.map_or("null".into(), |l| l.to_string()),
                json_bytes(s.reason.as_bytes())
            ),
        };
        self.skipped.push(&for_terminal(&text))
    }

    /// Let what was written so far be seen (after each file).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(output_failed)
    }

    /// Whether every pipe so far is ready: the exit status, as it goes.
    pub(crate) fn all_ready(&self) -> bool {
        self.attention.count == 0
    }

    /// The summary line: counts and the share that is ready.
    fn summary(&self, tally: &Tally) -> String {
        let (ready, attention) = (self.ready, self.attention.count);
        let total = ready + attention;
        let share = if total == 0 { 100.0 } else { ready as f64 * 100.0 / total as f64 };
        match self.format {
            Format::Text => format!(
                "{ready} of {total} pipes ready ({share:.1}%), {attention} need attention, {} skipped; {} accounts, {} files, {:.2} s",
                self.skipped.count,
                tally.accounts,
                tally.files,
                tally.elapsed.as_secs_f64()
            ),
            Format::Json => format!(
                "{{\"pipes\":{total},\"ready\":{ready},\"needs_attention\":{attention},\"skipped\":{},\"ready_percent\":{share:.1},\"accounts\":{},\"files\":{},\"seconds\":{:.3},\"rollout\":{}}}",
                self.skipped.count,
                tally.accounts,
                tally.files,
                tally.elapsed.as_secs_f64(),
                json_bytes(self.rollout.as_bytes())
            ),
        }
    }

    /// The spooled lists, the summary and, with `--notices`, what was
    /// written; then everything is flushed. Returns whether every pipe
    /// was ready.
    pub(crate) fn finish(self, tally: &Tally, notices: Option<&notices::Report>) -> Result<bool> {
        let all_ready = self.all_ready();
        let summary = self.summary(tally);
        let Stream { format, mut out, attention, skipped, .. } = self;
        let put =
            |out: &mut BufWriter<W>, text: &str| out.write_all(for_terminal(text).as_bytes()).map_err(output_failed);
        match format {
            Format::Text => {
                put(&mut out, &format!("\nNEEDS ATTENTION ({})\n", attention.count))?;
                attention.copy_to(&mut out)?;
                if skipped.count > 0 {
                    put(&mut out, &format!("\nSKIPPED ({})\n", skipped.count))?;
                    skipped.copy_to(&mut out)?;
                }
                put(&mut out, &format!("\n{summary}\n"))?;
                if let Some(r) = notices {
                    put(&mut out, &format!("{}\n", r.summary()))?;
                }
            }
            Format::Json => {
                put(&mut out, "],\"needs_attention\":[")?;
                attention.copy_to(&mut out)?;
                put(&mut out, "],\"skipped\":[")?;
                skipped.copy_to(&mut out)?;
                put(
                    &mut out,
                    &format!("],\"summary\":{summary}{}}}\n", notices.map(notices_json).unwrap_or_default()),
                )?;
            }
        }
        out.flush().map_err(output_failed)?;
        Ok(all_ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::survey::Source;
    use crate::deliver::lookahead::attention;
    use std::path::PathBuf;

    fn entry(line: usize, pipe: &[u8], verdict: Verdict) -> Entry {
        Entry {
            source: Source::Forward,
            file: PathBuf::from("/home/bob/.forward"),
            line,
            key: None,
            pipe: Some(pipe.to_vec()),
            owner: Some("bob".into()),
            uid: Some(1002),
            argv: None,
            rollout: Some("contained"),
            container: None,
            command: None,
            interpreter: None,
            file_safe: true,
            verdict,
        }
    }

    fn tally() -> Tally {
        Tally { accounts: 3, files: 2, elapsed: Duration::from_millis(10) }
    }

    fn skip() -> Skipped {
        Skipped { file: PathBuf::from("/etc/passwd"), line: Some(4), reason: "not an account".into() }
    }

    /// A writer whose every write fails as a pipe closed by `head` does.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(crate::platform::Errno::EPIPE as i32))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn ready_entries_go_out_before_the_survey_ends_and_the_rest_follow_in_order() {
        let mut s = Stream::new(Vec::new(), Format::Text, "contain = \"all\"", &std::env::temp_dir()).unwrap();
        s.entry(&entry(1, b"|/bin/a", Verdict::Ready)).unwrap();
        s.entry(&entry(2, b"|/bin/b", attention("not-found", "The program is missing.".into()))).unwrap();
        s.skipped(&skip()).unwrap();
        s.entry(&entry(3, b"|/bin/c", Verdict::Ready)).unwrap();
        s.flush().unwrap();
        let so_far = String::from_utf8(s.out.get_ref().clone()).unwrap();
        assert_eq!(
            so_far,
            "cagepipe survey ([rollout] contain = \"all\")\n\nREADY\n\
             \x20 bob              contained             /home/bob/.forward:1  |/bin/a\n\
             \x20 bob              contained             /home/bob/.forward:3  |/bin/c\n"
        );
        assert!(!s.all_ready(), "the exit status is known as it goes");
    }

    #[test]
    fn the_text_form_ends_with_the_lists_that_were_spooled_and_the_summary() {
        let mut out = Vec::new();
        let mut s = Stream::new(&mut out, Format::Text, "contain = \"all\"", &std::env::temp_dir()).unwrap();
        s.entry(&entry(1, b"|/bin/a", Verdict::Ready)).unwrap();
        s.entry(&entry(2, b"|/bin/b", attention("not-found", "The program is missing.".into()))).unwrap();
        s.skipped(&skip()).unwrap();
        assert!(!s.finish(&tally(), None).unwrap(), "not all ready");
        let text = String::from_utf8(out).unwrap();
        let want = "cagepipe survey ([rollout] contain = \"all\")\n\nREADY\n\
                    \x20 bob              contained             /home/bob/.forward:1  |/bin/a\n\
                    \nNEEDS ATTENTION (1)\n\
                    \x20 bob              contained             /home/bob/.forward:2  |/bin/b\n\
                    \x20     not-found: The program is missing.\n\
                    \nSKIPPED (1)\n\
                    \x20 /etc/passwd line 4: not an account\n\
                    \n1 of 2 pipes ready (50.0%), 1 need attention, 1 skipped; 3 accounts, 2 files, 0.01 s\n";
        assert_eq!(text, want);
    }

    #[test]
    fn the_json_form_is_one_document_written_element_by_element() {
        let mut out = Vec::new();
        let mut s = Stream::new(&mut out, Format::Json, "contain = \"all\"", &std::env::temp_dir()).unwrap();
        for line in 1..=3 {
            s.entry(&entry(line, b"|/bin/a", Verdict::Ready)).unwrap();
            s.entry(&entry(10 + line, b"|/bin/b", attention("not-found", "Missing.".into()))).unwrap();
            s.skipped(&skip()).unwrap();
        }
        assert!(!s.finish(&tally(), None).unwrap());
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(j["ready"].as_array().unwrap().len(), 3);
        assert_eq!(j["needs_attention"].as_array().unwrap().len(), 3);
        assert_eq!(j["needs_attention"][2]["line"], 13);
        assert_eq!(j["needs_attention"][0]["code"], "not-found");
        assert_eq!(j["skipped"].as_array().unwrap().len(), 3);
        assert_eq!(j["summary"]["pipes"], 6);
        assert_eq!(j["summary"]["ready_percent"].as_f64(), Some(50.0));
        assert_eq!(j["summary"]["rollout"], "contain = \"all\"");
        assert!(out.ends_with(b"}\n"));

        // Nothing at all is still a document, and all ready.
        let mut out = Vec::new();
        let s = Stream::new(&mut out, Format::Json, "contain = \"all\"", &std::env::temp_dir()).unwrap();
        assert!(s.finish(&tally(), None).unwrap());
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(j["summary"]["pipes"], 0);
        assert_eq!(j["ready"], serde_json::json!([]));
    }

    #[test]
    fn hostile_text_is_escaped_in_the_streamed_and_the_spooled_lists() {
        for format in [Format::Text, Format::Json] {
            let mut out = Vec::new();
            let mut s = Stream::new(&mut out, format, "contain = \"all\"", &std::env::temp_dir()).unwrap();
            let evil = b"|/bin/a \x1b]0;owned\x07 \xe2\x80\xae \x9b2J";
            s.entry(&entry(1, evil, Verdict::Ready)).unwrap();
            s.entry(&entry(2, evil, attention("not-found", "Why \x1b[2J\u{202e}.".into()))).unwrap();
            let mut bad = skip();
            bad.reason = "line \x1b[1A\r forged".into();
            s.skipped(&bad).unwrap();
            s.finish(&tally(), None).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(
                !text.chars().any(|c| (c.is_control() && c != '\n') || crate::escape::is_format(c)),
                "{format:?}: {text:?}"
            );
            assert!(text.contains("x1b]0;owned"), "{format:?}: {text}");
        }
    }

    #[test]
    fn a_closed_pipe_or_a_full_disk_is_an_error_with_a_message_not_a_panic() {
        let err = match Stream::new(Closed, Format::Text, "all", &std::env::temp_dir()) {
            Err(e) => e,
            Ok(_) => panic!("the heading is flushed at once"),
        };
        assert_eq!(err.exit_code(), crate::error::exit::TEMPFAIL);
        let message = err.to_string();
        assert!(message.contains("cannot write its output") && message.contains("Broken pipe"), "{message}");

        // /dev/full: ENOSPC, at the latest when the end is flushed.
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let err = Stream::new(full, Format::Json, "all", &std::env::temp_dir())
            .and_then(|s| s.finish(&tally(), None))
            .unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::TEMPFAIL);
        assert!(err.to_string().contains("No space left on device"), "{err}");

        // A temporary directory that cannot hold the spool says so.
        let err = match Stream::new(Vec::new(), Format::Text, "all", Path::new("/nonexistent-cagepipe-spool")) {
            Err(e) => e,
            Ok(_) => panic!("no spool directory"),
        };
        assert!(err.to_string().contains("cannot create a spool file in /nonexistent-cagepipe-spool"), "{err}");
    }
}
