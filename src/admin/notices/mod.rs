//! `cagepipe survey --notices DIR`: after the survey, one message per
//! account whose pipes need attention, ready for `sendmail -t`: what was
//! found, why it matters, what to do. Everything taken from a customer's
//! files is escaped ([`crate::escape`]) before it is placed, and headers are
//! built by [`message`], so no file can add a header or a MIME part.
//!
//! Who gets a notice: the owner of each pipe that needs attention (for an
//! alias pipe, the domain's owner, as the survey found it), except pipes
//! without an owner and pipes of system accounts, which are the
//! administrator's. Where it goes: `--contacts FILE`, else USER@DOMAIN,
//! DOMAIN from `--mail-domain`, /etc/mailname, or the host's fully
//! qualified name.
#![forbid(unsafe_code)]

pub(crate) mod message;
pub(crate) mod template;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::admin::survey::{Entry, Source};
use crate::cli::NoticeOptions;
use crate::deliver::lookahead::Verdict;
use crate::error::{Error, Result};
use crate::escape::escape;
use message::Kind;
use template::{Field, Template, Values};

/// The notice sent when no `--template` is given.
pub(crate) const DEFAULT_TEMPLATE: &str = include_str!("default.txt");

/// Largest template or contacts file read.
const MAX_INPUT_BYTES: u64 = 1 << 20;

/// Everything a notice needs besides the survey, checked before it runs.
pub(crate) struct Setup {
    opts: NoticeOptions,
    template: Template,
    pub(crate) domain: String,
    /// Where the domain came from, for the summary line.
    pub(crate) domain_from: String,
    contacts: HashMap<String, String>,
}

/// One notice written.
pub(crate) struct Written {
    pub(crate) account: String,
    pub(crate) contact: String,
    pub(crate) file: PathBuf,
    pub(crate) pipes: usize,
}

/// What `write` did, for the summary line and the JSON.
pub(crate) struct Report {
    pub(crate) dir: PathBuf,
    pub(crate) written: Vec<Written>,
    /// Pipes needing attention that no customer owns (no owner, or a
    /// system account): in no notice.
    pub(crate) unaddressed: usize,
    pub(crate) domain: String,
    pub(crate) domain_from: String,
}

impl Report {
    pub(crate) fn pipes(&self) -> usize {
        self.written.iter().map(|w| w.pipes).sum()
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "{} notices written to {} for {} pipes ({} not addressed to a customer: no owner or a system account); \
             default address USER@{} ({})",
            self.written.len(),
            escape(self.dir.as_os_str().as_bytes()),
            self.pipes(),
            self.unaddressed,
            self.domain,
            self.domain_from
        )
    }
}

fn read_input(path: &Path, what: &str) -> Result<String> {
    let bad = |problem: String| Error::Template { path: path.to_path_buf(), problem };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read the {what}: {e}")))?;
    if !meta.is_file() || meta.len() > MAX_INPUT_BYTES {
        return Err(bad(format!("the {what} must be a regular file of at most 1 MiB")));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read the {what}: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|e| bad(format!("the {what} is not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// A domain name: letters, digits, `-` and dots between labels.
fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `local@domain` in plain ASCII, nothing that could end a header or add
/// an address.
fn valid_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && local.bytes().all(is_local_byte)
                && !local.starts_with('.')
                && !local.ends_with('.')
                && valid_domain(domain)
        }
        None => false,
    }
}

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b)
}

/// `user: address` lines; `#` starts a comment.
fn parse_contacts(text: &str, path: &Path) -> Result<HashMap<String, String>> {
    let bad = |n: usize, problem: String| Error::Template {
        path: path.to_path_buf(),
        problem: format!("line {n}: {problem}"),
    };
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((user, address)) = line.split_once(':') else {
            return Err(bad(i + 1, "a line is `user: address`".into()));
        };
        let (user, address) = (user.trim(), address.trim());
        crate::config::account::check_user_name(user).map_err(|e| bad(i + 1, e))?;
        if !valid_address(address) {
            return Err(bad(i + 1, format!("`{}` is not a plain address (local@domain)", escape(address.as_bytes()))));
        }
        if map.insert(user.to_string(), address.to_string()).is_some() {
            return Err(bad(i + 1, format!("{user} is listed twice")));
        }
    }
    Ok(map)
}

/// The domain of USER@DOMAIN, and where it came from: `--mail-domain`,
/// the first line of /etc/mailname (Debian's mail name), the host name if
/// it has a dot, else the name the resolver gives it (`hostname -f`).
fn mail_domain(given: Option<&str>, mailname: &Path) -> Result<(String, String)> {
    if let Some(d) = given {
        if !valid_domain(d) {
            return Err(Error::Usage(format!("--mail-domain {}: not a domain name", escape(d.as_bytes()))));
        }
        return Ok((d.to_ascii_lowercase(), "--mail-domain".into()));
    }
    if let Ok(text) = std::fs::read_to_string(mailname) {
        let first = text.lines().next().unwrap_or("").trim();
        if valid_domain(first) {
            return Ok((first.to_ascii_lowercase(), mailname.display().to_string()));
        }
    }
    let host = crate::platform::host::name().unwrap_or_default();
    if host.contains('.') && valid_domain(&host) {
        return Ok((host.to_ascii_lowercase(), "the host name".into()));
    }
    if let Some(fqdn) = crate::platform::host::canonical_name(&host).filter(|f| f.contains('.') && valid_domain(f)) {
        return Ok((fqdn.to_ascii_lowercase(), "the host's fully qualified name".into()));
    }
    Err(Error::Usage(format!(
        "no mail domain for the notices: {} has none and the host name {} has no domain part; give --mail-domain DOMAIN",
        mailname.display(),
        escape(host.as_bytes())
    )))
}

/// Read and check the template, the contacts and the domain: every
/// mistake shows before the survey runs.
pub(crate) fn prepare(opts: &NoticeOptions) -> Result<Setup> {
    prepare_with(opts, Path::new("/etc/mailname"))
}

fn prepare_with(opts: &NoticeOptions, mailname: &Path) -> Result<Setup> {
    let template = match &opts.template {
        Some(path) => Template::parse(&read_input(path, "template")?)
            .map_err(|problem| Error::Template { path: path.clone(), problem })?,
        None => Template::parse(DEFAULT_TEMPLATE).expect("the built-in template parses"),
    };
    let contacts = match &opts.contacts {
        Some(path) => parse_contacts(&read_input(path, "contacts file")?, path)?,
        None => HashMap::new(),
    };
    let (domain, domain_from) = mail_domain(opts.domain.as_deref(), mailname)?;
    Ok(Setup { opts: opts.clone(), template, domain, domain_from, contacts })
}

/// What to do about a pipe, in plain words, by the survey's code.
fn advice(e: &Entry, code: &str) -> &'static str {
    match code {
        "no-container" => {
            "Make sure your container is running. While it is stopped, mail for this pipe waits in our queue \
             and is delivered once it runs again; if it stays stopped for days, the mail is returned to its senders."
        }
        "not-found" => {
            "Install the program inside your container at that path, or change the pipe to name a program \
             your container has."
        }
        "not-executable" => {
            "Make the program executable for your account inside your container (chmod u+x), and check that \
             you may enter every directory on its path."
        }
        "interpreter-missing" => {
            "Install the interpreter named on the script's first line (#!) inside your container, or change \
             that line to one your container has."
        }
        "interpreter-not-executable" => {
            "Make the interpreter named on the script's first line (#!) executable for your account inside \
             your container."
        }
        "argument-missing" => {
            "Copy the file named in the pipe into your container at the same path, or change the pipe to a \
             path inside your container."
        }
        "sandbox-execute" => {
            "Move the program (and its interpreter) into a directory from which mail programs may run, or \
             reply to this message and we will find a place for it together."
        }
        "syntax-error" => {
            "Correct the line the problem names; until then none of the pipes in that file receives mail."
        }
        "unsafe-file" if e.source == Source::Forward => {
            "Make the file yours and writable only by you: chmod 600 ~/.forward (or chmod 644)."
        }
        "unreadable-file" if e.source == Source::Forward => {
            "Make ~/.forward a plain text file of your own (not a link, at most 4 MiB), or remove it if you \
             no longer use it."
        }
        _ => "This needs a change on our side: reply to this message and we will take care of it with you.",
    }
}

fn where_of(e: &Entry) -> String {
    let file = escape(e.file.as_os_str().as_bytes());
    if e.line > 0 {
        format!("{file}, line {}", e.line)
    } else {
        format!("{file} (the whole file)")
    }
}

/// The fields of one pipe, every one escaped.
fn pipe_values(number: usize, e: &Entry, code: &str, reason: &str) -> Vec<(Field, String)> {
    vec![
        (Field::Number, number.to_string()),
        (Field::File, escape(e.file.as_os_str().as_bytes())),
        (Field::Line, if e.line > 0 { e.line.to_string() } else { String::new() }),
        (Field::Where, where_of(e)),
        (Field::Alias, e.key.as_deref().map(escape).unwrap_or_default()),
        (Field::Pipe, e.pipe.as_deref().map_or_else(|| "(the file could not be read)".to_string(), escape)),
        (Field::Code, code.to_string()),
        (Field::Reason, escape(reason.as_bytes())),
        (Field::Advice, advice(e, code).to_string()),
    ]
}

/// Whose notice a pipe goes into, if any customer's.
fn addressee(e: &Entry) -> Option<(&str, &str, &str)> {
    let Verdict::NeedsAttention { code, reason } = &e.verdict else { return None };
    let owner = e.owner.as_deref()?;
    (*code != "system-account").then_some((owner, code, reason.as_str()))
}

impl Setup {
    /// The messages, by account: (account, contact, pipes, text).
    fn compose(
        &self,
        attention: &[Entry],
        real_names: &HashMap<String, Vec<u8>>,
    ) -> (Vec<(String, String, usize, String)>, usize) {
        let mut by_account: BTreeMap<&str, Vec<(&Entry, &str, &str)>> = BTreeMap::new();
        let mut unaddressed = 0;
        for e in attention {
            match addressee(e) {
                Some((owner, code, reason)) => by_account.entry(owner).or_default().push((e, code, reason)),
                None => unaddressed += 1,
            }
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut out = Vec::new();
        for (n, (account, pipes)) in by_account.into_iter().enumerate() {
            let contact = self.contacts.get(account).cloned().unwrap_or_else(|| format!("{account}@{}", self.domain));
            let real = real_names.get(account).map(|r| escape(r)).unwrap_or_default();
            let name = if real.trim().is_empty() { account.to_string() } else { real.clone() };
            let values = Values {
                account: vec![
                    (Field::User, account.to_string()),
                    (Field::Name, name),
                    (Field::Contact, contact.clone()),
                    (Field::Domain, self.domain.clone()),
                    (Field::Count, pipes.len().to_string()),
                    (Field::S, if pipes.len() == 1 { String::new() } else { "s".into() }),
                ],
                pipes: pipes
                    .iter()
                    .enumerate()
                    .map(|(i, (e, code, reason))| pipe_values(i + 1, e, code, reason))
                    .collect(),
            };
            let mut text = String::new();
            let from = self.template.from.clone().unwrap_or_else(|| format!("postmaster@{}", self.domain));
            text.push_str(&message::field("From", &[from]));
            let mut to = if real.trim().is_empty() { Vec::new() } else { message::tokens(&real, Kind::Phrase) };
            to.push(format!("<{contact}>"));
            text.push_str(&message::field("To", &to));
            if let Some(r) = &self.template.reply_to {
                text.push_str(&message::field("Reply-To", std::slice::from_ref(r)));
            }
            text.push_str(&message::field("Subject", &message::tokens(&self.template.subject(&values), Kind::Text)));
            text.push_str(&message::field("Date", &[message::date(now.as_secs())]));
            let id = format!("<cagepipe-notice.{}.{}.{}@{}>", now.as_secs(), std::process::id(), n + 1, self.domain);
            text.push_str(&message::field("Message-ID", &[id]));
            text.push_str("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n");
            let (encoding, body) = message::body(&self.template.body(&values));
            text.push_str(&format!("Content-Transfer-Encoding: {encoding}\n\n{body}"));
            out.push((account.to_string(), contact, pipes.len(), text));
        }
        (out, unaddressed)
    }

    /// Write the notices into the directory (created 0700 by root); an
    /// existing notice is replaced only with `--force`, and without it
    /// nothing is written if one exists.
    pub(crate) fn write(&self, attention: &[Entry], real_names: &HashMap<String, Vec<u8>>) -> Result<Report> {
        let dir = &self.opts.dir;
        let (notices, unaddressed) = self.compose(attention, real_names);
        prepare_dir(dir)?;
        let name = |account: &str| dir.join(format!("{account}.eml"));
        if !self.opts.force {
            let existing: Vec<String> = notices
                .iter()
                .filter(|(a, ..)| std::fs::symlink_metadata(name(a)).is_ok())
                .map(|(a, ..)| format!("{a}.eml"))
                .collect();
            if !existing.is_empty() {
                return Err(Error::io(
                    format!(
                        "notices: {} already holds {} ({} in all); nothing was written: --force replaces them",
                        dir.display(),
                        existing.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                        existing.len()
                    ),
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                ));
            }
        }
        let mut written = Vec::new();
        for (account, contact, pipes, text) in notices {
            let file = name(&account);
            write_file(dir, &account, &file, text.as_bytes())?;
            written.push(Written { account, contact, file, pipes });
        }
        Ok(Report {
            dir: dir.clone(),
            written,
            unaddressed,
            domain: self.domain.clone(),
            domain_from: self.domain_from.clone(),
        })
    }
}

/// Create `dir` mode 0700, or accept an existing one that is a real
/// directory of root's that nobody else may write.
fn prepare_dir(dir: &Path) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| Error::io(format!("notices: {what} {}", dir.display()), e);
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("cannot set the mode of", e))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail("cannot create", e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| fail("cannot examine", e))?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(fail(
            "refusing",
            std::io::Error::other("it must be a directory (not a link) owned by root and writable by nobody else"),
        ));
    }
    Ok(())
}

/// Write one notice, mode 0600: new files are created exclusively (never
/// through a link); `--force` writes a new file and renames it over.
fn write_file(dir: &Path, account: &str, file: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| Error::io(format!("notices: cannot write {}", file.display()), e);
    let replace = std::fs::symlink_metadata(file).is_ok();
    let target = if replace { dir.join(format!(".{account}.eml.new")) } else { file.to_path_buf() };
    if replace {
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target).map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    if replace {
        std::fs::rename(&target, file).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_template_parses_and_says_what_to_do() {
        let t = Template::parse(DEFAULT_TEMPLATE).unwrap();
        assert!(t.from.is_none());
        assert!(DEFAULT_TEMPLATE.contains("{{advice}}") && DEFAULT_TEMPLATE.contains("{{reason}}"));
    }

    #[test]
    fn contacts_are_plain_addresses_one_per_user() {
        let p = Path::new("/c");
        let m = parse_contacts("# who\nalice: a@example.org\n\nbob:bob.smith+x@mail.example.net # work\n", p).unwrap();
        assert_eq!(m["alice"], "a@example.org");
        assert_eq!(m["bob"], "bob.smith+x@mail.example.net");
        for (bad, words) in [
            ("alice a@b.c\n", "line 1: a line is `user: address`"),
            ("alice: a@b.c\nalice: x@y.z\n", "line 2: alice is listed twice"),
            ("alice: a@b.c, evil@x.y\n", "line 1: `a@b.c, evil@x.y` is not a plain address"),
            ("alice: a@b.c\n../x: evil@x.y\n", "line 2: user name"),
            ("x: \"a b\"@c.d\n", "not a plain address"),
        ] {
            let e = parse_contacts(bad, p).unwrap_err();
            assert!(e.to_string().contains(words), "{bad:?}: {e}");
            assert_eq!(e.exit_code(), 64);
        }
    }

    #[test]
    fn the_domain_comes_from_the_option_then_mailname_then_the_host() {
        let dir = std::env::temp_dir().join(format!("cagepipe-mailname-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mailname = dir.join("mailname");
        std::fs::write(&mailname, "Mail.Example.TEST\n").unwrap();
        assert_eq!(mail_domain(Some("x.test"), &mailname).unwrap(), ("x.test".into(), "--mail-domain".into()));
        assert_eq!(mail_domain(None, &mailname).unwrap().0, "mail.example.test");
        assert_eq!(mail_domain(Some("bad domain\n"), &mailname).unwrap_err().exit_code(), 64);
        std::fs::write(&mailname, "not a domain!\n").unwrap();
        // Falls through to the host's name: a domain, or a clear error.
        match mail_domain(None, &mailname) {
            Ok((d, from)) => assert!(d.contains('.') && from.contains("host"), "{d} {from}"),
            Err(e) => assert!(e.to_string().contains("give --mail-domain"), "{e}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn addresses_cannot_carry_more_than_one_address() {
        assert!(valid_address("a@b.c"));
        for bad in ["a@b.c\nBcc: x@y", "a@b.c,x@y.z", "<a@b.c>", "a b@c.d", "@b.c", "a@", "a@b..c", "ä@b.c"] {
            assert!(!valid_address(bad), "{bad:?}");
        }
    }
}
