//! `cagepipe survey`: before Exim is switched to cagepipe, find every pipe
//! delivery configured on the server and dry-run each one, so that the
//! administrator ends with two lists: the pipes that will work contained
//! (READY) and the ones whose owner needs a message (NEEDS ATTENTION, one
//! reason each, worded for that message).
//!
//! Nothing is delivered, entered or executed. Containers are resolved by
//! the same code a delivery uses; the command is looked for through the
//! container's root directory from the host ([`crate::deliver::inroot`]). Every file
//! read here is hostile (users write their ~/.forward; a compromised site
//! writes its own alias file): opened without following a final symbolic
//! link, without blocking, size-capped, and parsed by code that takes any
//! bytes ([`crate::parse::mailfiles`]). A file that cannot be surveyed becomes an
//! entry or a skipped line with the reason, never a failure of the survey.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::platform::fs::{fstat, open, openat, FileStat, Mode, OFlag, SFlag};
use crate::platform::Errno;

use crate::admin::notices;
use crate::cli::{Owners, SurveyOptions};
use crate::config::account::{self, Account, Database};
use crate::config::rollout;
use crate::config::Config;
use crate::deliver::inroot::Budget;
use crate::deliver::lookahead::{attention, judge_in_container, Inside, Looks, Verdict};
use crate::error::{Finding, Result};
use crate::escape::escape;
use crate::parse::mailfiles::{self, Forward, Listing};
use crate::parse::pipe_text;
use crate::platform::kernel::Linux;

pub(crate) mod stream;
use stream::{Format, Stream, Tally};

/// Largest file read. A .forward or a domain's alias file is a few hundred
/// bytes; a bigger one is reported, not read.
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 20;

/// The most pipes judged for one account; the rest get one entry that
/// says so. With [`mailfiles::MAX_LISTED`] a file and the walker's budget
/// ([`crate::deliver::inroot::Budget`]) this bounds what one account can
/// make the survey spend, in time and memory, whatever its files hold.
pub(crate) const MAX_PIPES_PER_ACCOUNT: usize = 2000;

/// Where a pipe was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Forward,
    DirectAdmin,
    Cpanel,
    Aliases,
}

impl Source {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::Forward => "forward",
            Source::DirectAdmin => "directadmin",
            Source::Cpanel => "cpanel",
            Source::Aliases => "aliases",
        }
    }
}

/// Whose pipe it is, as far as the file and its owner map say.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Name(String),
    Uid(u32),
    /// Nobody known: why, in a sentence.
    Unknown(String),
}

/// Who owns a file and who may write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileFacts {
    uid: u32,
    gid: u32,
    mode: u32,
}

impl From<&FileStat> for FileFacts {
    fn from(st: &FileStat) -> FileFacts {
        FileFacts { uid: st.st_uid, gid: st.st_gid, mode: st.st_mode & 0o7777 }
    }
}

/// One pipe found, before it is judged; `text` is None when the file
/// itself could not be read (then `trouble` says why).
#[derive(Debug, Clone)]
struct Found {
    source: Source,
    file: PathBuf,
    line: usize,
    key: Option<Vec<u8>>,
    text: Option<Vec<u8>>,
    owner: Owner,
    /// The file cannot be read, or is not safe: (code, reason).
    trouble: Option<(&'static str, String)>,
    /// An alias file's facts: whether it is safe depends on the pipe's
    /// owner, known only when the pipe is judged.
    alias_file: Option<FileFacts>,
}

/// One pipe, judged.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) source: Source,
    pub(crate) file: PathBuf,
    /// 0 when the whole file is meant.
    pub(crate) line: usize,
    /// The alias the pipe belongs to (alias files).
    pub(crate) key: Option<Vec<u8>>,
    /// The pipe text as Exim passes it (None: the file was unreadable).
    pub(crate) pipe: Option<Vec<u8>>,
    pub(crate) owner: Option<String>,
    pub(crate) uid: Option<u32>,
    pub(crate) argv: Option<Vec<Vec<u8>>>,
    /// "contained" or "uncontained (rollout)".
    pub(crate) rollout: Option<&'static str>,
    /// "pidfile /run/cagepipe/alice.pid" and the pid, when it runs.
    pub(crate) container: Option<(String, i32)>,
    /// Where the program was found inside, and its #! interpreter.
    pub(crate) command: Option<Vec<u8>>,
    pub(crate) interpreter: Option<Vec<u8>>,
    pub(crate) file_safe: bool,
    pub(crate) verdict: Verdict,
}

/// A file or line that holds no pipe the survey can judge, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub(crate) file: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) reason: String,
}

/// `cagepipe survey`: run it with a progress line on a terminal, writing
/// to standard output as it goes, and return the exit code. A survey that
/// cannot run (or whose output cannot be written) is not a delivery: the
/// reason goes to the administrator, not to the mail log as a deferral.
pub(crate) fn run_and_print(config_path: &Path, opts: &SurveyOptions, json: bool) -> i32 {
    use std::io::IsTerminal;
    let on_terminal = std::io::stderr().is_terminal();
    let mut shown = Instant::now();
    let mut progress = |done: usize, total: usize| {
        if on_terminal && (done == total || shown.elapsed().as_millis() >= 100) {
            shown = Instant::now();
            eprint!("\rcagepipe survey: {done}/{total} accounts and alias files surveyed\x1b[K");
            if done == total {
                eprint!("\r\x1b[K");
            }
        }
    };
    let format = if json { Format::Json } else { Format::Text };
    let result = crate::config::load(config_path).and_then(|config| {
        // A broken template or contacts file shows before the survey runs.
        let notices = opts.notices.as_ref().map(notices::prepare).transpose()?;
        // Only when the lists go to the terminal the progress line is on.
        let shares_terminal = on_terminal && std::io::stdout().is_terminal();
        let out = ClearProgress { out: std::io::stdout().lock(), shares_terminal };
        run(&config, opts, out, format, notices.as_ref(), &mut progress)
    });
    match result {
        Ok(all_ready) => Finding::Survey { all_ready }.exit_code(),
        Err(e) => {
            if on_terminal {
                eprint!("\r\x1b[K");
            }
            crate::log::to_stderr(&e.to_string());
            e.exit_code()
        }
    }
}

/// Standard output that first wipes the progress line, when there is one
/// on the same terminal, so that the two do not share a line.
struct ClearProgress<W: Write> {
    out: W,
    shares_terminal: bool,
}

impl<W: Write> Write for ClearProgress<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.shares_terminal {
            eprint!("\r\x1b[K");
        }
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Survey the server and write what it finds as it goes, in `format`:
/// one file's pipes at a time are read, judged, written out and dropped,
/// so memory does not grow with the number of accounts. `progress(done,
/// total)` is called after each file. With `notices`, the pipes that need
/// attention are kept and the notices written before the summary. Returns
/// whether every pipe was ready.
pub(crate) fn run<W: Write>(
    config: &Config,
    opts: &SurveyOptions,
    out: W,
    format: Format,
    notices: Option<&notices::Setup>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<bool> {
    let started = Instant::now();
    let db = Database { passwd: opts.passwd.clone(), group: opts.group.clone() };
    let (accounts, bad_lines) = account::list(&db)?;
    let groups = match &config.rollout {
        crate::config::Rollout::Listed { groups, .. } => account::group_gids(&db, groups)?,
        crate::config::Rollout::All => Vec::new(),
    };
    let real_names = notices.map(|_| account::real_names(&db)).transpose()?;
    let by_name: HashMap<&str, &Account> = accounts.iter().map(|a| (a.name.as_str(), a)).collect();
    let mut by_uid: HashMap<u32, &Account> = HashMap::new();
    for a in &accounts {
        by_uid.entry(a.uid).or_insert(a);
    }
    // What is read, in the order it is shown: every account's .forward,
    // then the control panels' alias files, then those named with
    // --aliases.
    let mut units: Vec<Unit> = Vec::new();
    if opts.forward {
        units.extend(accounts.iter().map(Unit::Forward));
    }
    units.extend(panel_files(Source::DirectAdmin, &opts.directadmin));
    units.extend(panel_files(Source::Cpanel, &opts.cpanel));
    units.extend(opts.aliases.iter().map(Unit::Extra));

    let mut stream = Stream::new(out, format, &config.rollout.describe(), &std::env::temp_dir())?;
    for (line, reason) in bad_lines {
        stream.skipped(&Skipped { file: opts.passwd.clone(), line: Some(line), reason })?;
    }
    // What each owner has spent so far: the per-account limits hold
    // across its files.
    let mut spent: HashMap<Option<String>, Spent> = HashMap::new();
    let mut kept: Vec<Entry> = Vec::new();
    let mut files = 0;
    let total = units.len();
    for (done, unit) in units.iter().enumerate() {
        let (mut found, mut skipped) = (Vec::new(), Vec::new());
        files += unit.read(&mut found, &mut skipped);
        for s in &skipped {
            stream.skipped(s)?;
        }
        // One owner at a time: its container is resolved once for its
        // pipes in this file, and closed before the next.
        let mut by_owner: BTreeMap<Option<String>, Vec<(usize, Found)>> = BTreeMap::new();
        for (order, f) in found.into_iter().enumerate() {
            let account = match &f.owner {
                Owner::Name(n) => by_name.get(n.as_str()),
                Owner::Uid(u) => by_uid.get(u),
                Owner::Unknown(_) => None,
            };
            by_owner.entry(account.map(|a| a.name.clone())).or_default().push((order, f));
        }
        let mut judged: Vec<(usize, Entry)> = Vec::new();
        for (name, pipes) in by_owner {
            let account = name.as_deref().and_then(|n| by_name.get(n).copied());
            let owner_spent = spent.entry(name).or_default();
            judge_owner(config, account, &groups, pipes, owner_spent, &mut judged);
        }
        judged.sort_by_key(|(order, _)| *order);
        for (_, e) in judged {
            stream.entry(&e)?;
            if notices.is_some() && e.verdict != Verdict::Ready {
                kept.push(e);
            }
        }
        stream.flush()?;
        progress(done + 1, total);
    }
    let written = match (notices, &real_names) {
        (Some(setup), Some(names)) => Some(setup.write(&kept, names)?),
        _ => None,
    };
    let tally = Tally { accounts: accounts.len(), files, elapsed: started.elapsed() };
    stream.finish(&tally, written.as_ref())
}

/// One file the survey reads, in the order it reads them.
enum Unit<'a> {
    Forward(&'a Account),
    /// A control panel's alias file for one domain, and its owner.
    Panel(Source, PathBuf, Owner),
    Extra(&'a crate::cli::ExtraAliases),
}

impl Unit<'_> {
    /// Its pipes and skipped lines; returns the files read (0 or 1).
    fn read(&self, found: &mut Vec<Found>, skipped: &mut Vec<Skipped>) -> usize {
        match self {
            Unit::Forward(a) => forwards_of(a, found, skipped),
            Unit::Panel(source, file, owner) => {
                read_alias_file(*source, file, &|_| owner.clone(), found, skipped);
                1
            }
            Unit::Extra(extra) => {
                extra_aliases(&extra.file, &extra.owners, found, skipped);
                1
            }
        }
    }
}

/// What the survey has spent on one owner so far.
#[derive(Default)]
struct Spent {
    judged: usize,
    budget: Budget,
}

// ---- finding the pipes ----------------------------------------------------

/// Why a file could not be read, as a phrase after its name.
enum Unreadable {
    Missing,
    Other(String),
}

/// Open a file that anyone may have written: never through a final
/// symbolic link, never blocking on a FIFO, only a regular file, at most
/// [`MAX_FILE_BYTES`]. `dir` is the directory to open it in, or None for
/// an absolute path given by the administrator.
fn read_hostile(
    dir: Option<&std::os::fd::OwnedFd>,
    name: &Path,
) -> std::result::Result<(Vec<u8>, FileStat), Unreadable> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let fd = match dir {
        Some(d) => openat(d, name, flags, Mode::empty()),
        None => open(name, flags, Mode::empty()),
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => return Err(Unreadable::Missing),
        Err(Errno::ELOOP) => {
            return Err(Unreadable::Other("is a symbolic link, which the survey does not follow".into()))
        }
        Err(e) => return Err(Unreadable::Other(format!("cannot be opened: {}", e.desc()))),
    };
    let st = fstat(&fd).map_err(|e| Unreadable::Other(format!("cannot be examined: {}", e.desc())))?;
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Err(Unreadable::Other("is not a regular file".into()));
    }
    if st.st_size as u64 > MAX_FILE_BYTES {
        return Err(Unreadable::Other(format!(
            "is {} bytes long, more than the {} MiB a mail file could need; it was not read",
            st.st_size,
            MAX_FILE_BYTES >> 20
        )));
    }
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| Unreadable::Other(format!("cannot be read: {e}")))?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(Unreadable::Other("grew past the size limit while it was read".into()));
    }
    Ok((data, st))
}

/// Why a .forward is not safe, if it is not: Exim trusts one only when its
/// owner is the user or root and nobody else can write it (a group that is
/// not the user's own counts as somebody else).
fn forward_unsafe(f: FileFacts, account: &Account) -> Option<String> {
    if f.uid != account.uid && f.uid != 0 {
        return Some(format!("is owned by uid {}, not by {} or root", f.uid, account.name));
    }
    if f.mode & 0o002 != 0 {
        return Some(format!("is writable by everyone (mode {:04o})", f.mode));
    }
    if f.mode & 0o020 != 0 && f.gid != account.gid {
        return Some(format!("is writable by group {} (mode {:04o})", f.gid, f.mode));
    }
    None
}

/// An alias file is the MTA's or the panel's: root, a system account
/// (mail, diradmin) or the pipe owner may own it; only system groups may
/// write it besides.
fn alias_file_unsafe(f: FileFacts, owner_uid: u32, min_uid: u32) -> Option<String> {
    if f.uid >= min_uid && f.uid != owner_uid {
        return Some(format!("is owned by uid {}, which is neither a system account nor the pipe's owner", f.uid));
    }
    if f.mode & 0o002 != 0 {
        return Some(format!("is writable by everyone (mode {:04o})", f.mode));
    }
    if f.mode & 0o020 != 0 && f.gid >= min_uid {
        return Some(format!("is writable by group {} (mode {:04o})", f.gid, f.mode));
    }
    None
}

/// The pipes of one listing as `Found`s, its problems as skipped lines;
/// with what is already wrong with the file, or the facts that decide it
/// once each pipe's owner is known (alias files).
fn listing_to_found(
    listing: Listing,
    source: Source,
    file: &Path,
    owner_of: &dyn Fn(Option<&[u8]>) -> Owner,
    (trouble, alias_file): (Option<(&'static str, String)>, Option<FileFacts>),
    found: &mut Vec<Found>,
    skipped: &mut Vec<Skipped>,
) {
    skip_problems_and_includes(&listing, file, skipped);
    if listing.omitted > 0 {
        let why = format!(
            "The file {} holds more than the {} pipes, problems or :include: items the survey reads in one file; {} \
             more were not judged. Check it by hand.",
            file.display(),
            mailfiles::MAX_LISTED,
            listing.omitted
        );
        found.push(whole_file(source, file, owner_of(None), "survey-limit", why));
    }
    for pipe in listing.pipes {
        found.push(Found {
            source,
            file: file.to_path_buf(),
            line: pipe.line,
            owner: owner_of(pipe.key.as_deref()),
            key: pipe.key,
            text: Some(pipe.text),
            trouble: trouble.clone(),
            alias_file,
        });
    }
}

/// Lines that hold no usable item, and `:include:` files (their pipes
/// would run too, but the survey reads only the files it was given).
fn skip_problems_and_includes(listing: &Listing, file: &Path, skipped: &mut Vec<Skipped>) {
    for p in &listing.problems {
        skipped.push(Skipped { file: file.to_path_buf(), line: Some(p.line), reason: p.what.clone() });
    }
    for i in &listing.includes {
        skipped.push(Skipped {
            file: file.to_path_buf(),
            line: Some(i.line),
            reason: format!(":include:{} is not surveyed; name it with --aliases to survey it", escape(&i.path)),
        });
    }
}

/// A file that could not be read at all, as one entry (a pipe may hide in
/// it) for `owner`.
fn unreadable_file(source: Source, file: &Path, owner: Owner, why: String, found: &mut Vec<Found>) {
    let why = format!("The file {} {why}.", file.display());
    found.push(whole_file(source, file, owner, "unreadable-file", why));
}

/// An entry for a whole file (line 0, no pipe text) that needs attention
/// for `code`.
fn whole_file(source: Source, file: &Path, owner: Owner, code: &'static str, why: String) -> Found {
    Found {
        source,
        file: file.to_path_buf(),
        line: 0,
        key: None,
        text: None,
        owner,
        trouble: Some((code, why)),
        alias_file: None,
    }
}

/// The account's ~/.forward; returns 1 if it has one.
fn forwards_of(a: &Account, found: &mut Vec<Found>, skipped: &mut Vec<Skipped>) -> usize {
    let file = a.home.join(".forward");
    // The home path comes from the root-owned passwd file; only the last
    // component, which the user controls, is opened without following.
    let owner = Owner::Name(a.name.clone());
    let home = match open(&a.home, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(home) => home,
        // No home, or not a directory: no .forward Exim could read either.
        Err(Errno::ENOENT | Errno::ENOTDIR) => return 0,
        // Anything else (EACCES from a FUSE mount over the home, which
        // even root may not enter; EIO) hides a .forward that may hold
        // pipes: the account is not silently left out.
        Err(e) => {
            let why = format!(
                "cannot be looked for: the home directory {} cannot be opened by the survey ({}; a FUSE mount?)",
                a.home.display(),
                e.desc()
            );
            unreadable_file(Source::Forward, &file, owner, why, found);
            return 1;
        }
    };
    let (data, st) = match read_hostile(Some(&home), Path::new(".forward")) {
        Ok(read) => read,
        Err(Unreadable::Missing) => return 0,
        Err(Unreadable::Other(why)) => {
            unreadable_file(Source::Forward, &file, owner, why, found);
            return 1;
        }
    };
    if mailfiles::looks_binary(&data) {
        unreadable_file(Source::Forward, &file, owner, "is not a text file (binary data)".into(), found);
        return 1;
    }
    let listing_fails = |listing: &Listing| {
        listing.problems.iter().find(|p| p.fails_list).map(|p| {
            (
                "syntax-error",
                format!(
                    "The file {} has an error on line {} ({}), so Exim rejects the whole file and this pipe would not run either.",
                    file.display(),
                    p.line,
                    p.what
                ),
            )
        })
    };
    let unsafe_file = forward_unsafe(FileFacts::from(&st), a).map(|why| {
        (
            "unsafe-file",
            format!(
                "The file {} {why}, so Exim will not use it; it must be writable only by its owner.",
                file.display()
            ),
        )
    });
    match mailfiles::parse_forward(&data) {
        Forward::Filter(kind) => skipped.push(Skipped {
            file,
            line: None,
            reason: format!(
                "an {} filter: its pipes are chosen for each message, so the survey cannot list them",
                match kind {
                    mailfiles::FilterKind::Exim => "Exim",
                    mailfiles::FilterKind::Sieve => "Sieve",
                }
            ),
        }),
        Forward::List(listing) => {
            let trouble = unsafe_file.or_else(|| listing_fails(&listing));
            listing_to_found(listing, Source::Forward, &file, &|_| owner.clone(), (trouble, None), found, skipped)
        }
    }
    1
}

/// "domain: user" pairs of an owners file, or the reason it is unusable.
fn owners_map(path: &Path) -> std::result::Result<HashMap<Vec<u8>, String>, String> {
    let (data, _) = match read_hostile(None, path) {
        Ok(read) => read,
        Err(Unreadable::Missing) => return Err(format!("{} does not exist", path.display())),
        Err(Unreadable::Other(why)) => return Err(format!("{} {why}", path.display())),
    };
    let mut map = HashMap::new();
    for (domain, user) in mailfiles::parse_owners(&data) {
        if let Ok(user) = String::from_utf8(user) {
            map.entry(domain).or_insert(user);
        }
    }
    Ok(map)
}

fn owner_from(map: &std::result::Result<HashMap<Vec<u8>, String>, String>, domain: &[u8], owners: &Path) -> Owner {
    match map {
        Err(why) => Owner::Unknown(format!("The owner of {} is not known: {why}.", escape(domain))),
        Ok(map) => match map.get(&domain.to_ascii_lowercase()) {
            Some(user) => Owner::Name(user.clone()),
            None => Owner::Unknown(format!(
                "The domain {} has no owner in {}, so its pipes have no account to run as.",
                escape(domain),
                owners.display()
            )),
        },
    }
}

/// DirectAdmin (`DIR/<domain>/aliases`, `DIR/domainowners`) or cPanel
/// (`DIR/valiases/<domain>`, `DIR/userdomains`): each domain's alias file
/// and its owner.
fn panel_files(source: Source, dir: &Path) -> Vec<Unit<'static>> {
    let (listing_dir, owners) = match source {
        Source::DirectAdmin => (dir.to_path_buf(), dir.join("domainowners")),
        _ => (dir.join("valiases"), dir.join("userdomains")),
    };
    let Ok(entries) = std::fs::read_dir(&listing_dir) else { return Vec::new() };
    let mut domains: Vec<OsString> = entries.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    domains.sort();
    let alias_file = |d: &OsString| match source {
        Source::DirectAdmin => listing_dir.join(d).join("aliases"),
        _ => listing_dir.join(d),
    };
    // DirectAdmin keeps other files next to the domain directories.
    domains.retain(|d| source != Source::DirectAdmin || alias_file(d).exists());
    if domains.is_empty() {
        return Vec::new();
    }
    let map = owners_map(&owners);
    domains.iter().map(|d| Unit::Panel(source, alias_file(d), owner_from(&map, d.as_bytes(), &owners))).collect()
}

/// An alias file named with `--aliases`.
fn extra_aliases(file: &Path, owners: &Owners, found: &mut Vec<Found>, skipped: &mut Vec<Skipped>) {
    match owners {
        Owners::User(user) => read_alias_file(Source::Aliases, file, &|_| Owner::Name(user.clone()), found, skipped),
        Owners::Domains(path) => {
            let map = owners_map(path);
            let owner_of = |key: Option<&[u8]>| match key.and_then(|k| k.iter().rposition(|&b| b == b'@')) {
                Some(at) => owner_from(&map, &key.unwrap_or_default()[at + 1..], path),
                None => Owner::Unknown(format!(
                    "The alias {} names no domain, so {} cannot say who owns it; name the user with --aliases {}:USER.",
                    escape(key.unwrap_or_default()),
                    path.display(),
                    file.display()
                )),
            };
            read_alias_file(Source::Aliases, file, &owner_of, found, skipped)
        }
        Owners::FileOwner => {
            // A root-owned file (/etc/aliases) says nothing about whose its
            // pipes are: Exim runs them as its router's `user`.
            let owner = match std::fs::symlink_metadata(file).map(|m| std::os::unix::fs::MetadataExt::uid(&m)) {
                Ok(0) | Err(_) => Owner::Unknown(format!(
                    "The file {} is owned by root, so it does not say whose pipes these are; name the user with \
                     --aliases {}:USER.",
                    file.display(),
                    file.display()
                )),
                Ok(uid) => Owner::Uid(uid),
            };
            read_alias_file(Source::Aliases, file, &|_| owner.clone(), found, skipped)
        }
    }
}

fn read_alias_file(
    source: Source,
    file: &Path,
    owner_of: &dyn Fn(Option<&[u8]>) -> Owner,
    found: &mut Vec<Found>,
    skipped: &mut Vec<Skipped>,
) {
    let (data, st) = match read_hostile(None, file) {
        Ok(read) => read,
        Err(Unreadable::Missing) => {
            skipped.push(Skipped { file: file.to_path_buf(), line: None, reason: "does not exist".into() });
            return;
        }
        Err(Unreadable::Other(why)) => return unreadable_file(source, file, owner_of(None), why, found),
    };
    if mailfiles::looks_binary(&data) {
        return unreadable_file(source, file, owner_of(None), "is not a text file (binary data)".into(), found);
    }
    let listing = mailfiles::parse_aliases(&data);
    listing_to_found(listing, source, file, owner_of, (None, Some(FileFacts::from(&st))), found, skipped);
}

// ---- judging them -----------------------------------------------------------

fn judge_owner(
    config: &Config,
    account: Option<&Account>,
    rollout_groups: &[(String, u32)],
    pipes: Vec<(usize, Found)>,
    spent: &mut Spent,
    out: &mut Vec<(usize, Entry)>,
) {
    // A system account is refused before rollout is asked.
    let placement = account
        .filter(|a| a.uid != 0 && a.uid >= config.min_uid)
        .map(|a| rollout::place_with(&config.rollout, a, rollout_groups).state());
    // Its container, resolved only when some pipe of the account gets
    // that far, the budget of its walks (what is left of it from the
    // account's other files), and what was found already.
    let mut looks = Looks::default();
    looks.budget = std::mem::take(&mut spent.budget);
    let mut pipes = pipes.into_iter();
    while let Some((order, f)) = pipes.next() {
        if spent.judged >= MAX_PIPES_PER_ACCOUNT || looks.budget.exhausted() {
            // One entry for the rest, in place of the first not judged.
            let why = if spent.judged >= MAX_PIPES_PER_ACCOUNT {
                format!("more than the {MAX_PIPES_PER_ACCOUNT} pipes the survey judges for one account")
            } else {
                "paths that cost all the look-ups the survey spends on one account".to_string()
            };
            let rest = 1 + pipes.len();
            let mut e = entry_for(account, placement, &f);
            e.pipe = None;
            e.line = 0;
            e.verdict = attention(
                "survey-limit",
                format!(
                    "The account has {why}; {rest} more of its pipes (from {} on) were not judged. Check them by hand.",
                    f.file.display()
                ),
            );
            out.push((order, e));
            break;
        }
        spent.judged += 1;
        let mut e = entry_for(account, placement, &f);
        e.verdict = judge_pipe(config, account, &f, &mut e, &mut looks);
        out.push((order, e));
    }
    spent.budget = looks.budget;
}

fn entry_for(account: Option<&Account>, placement: Option<&'static str>, f: &Found) -> Entry {
    Entry {
        source: f.source,
        file: f.file.clone(),
        line: f.line,
        key: f.key.clone(),
        pipe: f.text.clone(),
        owner: account.map(|a| a.name.clone()),
        uid: account.map(|a| a.uid),
        argv: None,
        rollout: placement,
        container: None,
        command: None,
        interpreter: None,
        file_safe: true,
        verdict: Verdict::Ready,
    }
}

fn judge_pipe(config: &Config, account: Option<&Account>, f: &Found, e: &mut Entry, looks: &mut Looks) -> Verdict {
    let Some(account) = account else {
        return attention(
            "unknown-owner",
            match &f.owner {
                Owner::Unknown(why) => why.clone(),
                Owner::Name(n) => format!("The pipe belongs to user {n}, who no longer exists on this server."),
                Owner::Uid(u) => format!("The pipe belongs to uid {u}, which has no account on this server."),
            },
        );
    };
    if account.uid == 0 || account.uid < config.min_uid {
        return attention(
            "system-account",
            format!(
                "The pipe runs as the system account {} (uid {}), below min_uid {}; cagepipe refuses such deliveries, so the message would bounce.",
                account.name, account.uid, config.min_uid
            ),
        );
    }
    if let Some((code, reason)) = &f.trouble {
        e.file_safe = *code != "unsafe-file";
        return attention(code, reason.clone());
    }
    if let Some(why) = f.alias_file.and_then(|facts| alias_file_unsafe(facts, account.uid, config.min_uid)) {
        e.file_safe = false;
        return attention(
            "unsafe-file",
            format!(
                "The file {} {why}, so others could change which program runs as {}.",
                f.file.display(),
                account.name
            ),
        );
    }
    let Some(text) = &f.text else { return attention("unreadable-file", "The file could not be read.".into()) };
    // mailfiles reports empty pipes and NUL bytes itself, so the splitter
    // accepts every pipe it hands over; should that ever change, the pipe
    // gets an entry rather than the survey a failure.
    let argv = match pipe_text::split_pipe_text(text) {
        Ok(argv) => argv,
        Err(err) => {
            return attention(
                "unparsable",
                format!(
                "The pipe {} cannot be split into a program and its arguments ({err}), so the delivery would bounce.",
                escape(text)
            ),
            )
        }
    };
    e.argv = Some(argv.clone());
    let mut inside = Inside::default();
    let verdict = judge_in_container(&mut Linux::default(), config, account, &argv, looks, &mut inside);
    (e.container, e.command, e.interpreter) = (inside.container, inside.command, inside.interpreter);
    verdict
}

// ---- showing them ------------------------------------------------------------

/// `,"notices":{...}`: where they went, their counts, and per account its
/// notice's file, address and number of pipes.
pub(crate) fn notices_json(r: &notices::Report) -> String {
    let accounts: Vec<String> = r
        .written
        .iter()
        .map(|w| {
            format!(
                "{{\"account\":{},\"contact\":{},\"file\":{},\"pipes\":{}}}",
                json_bytes(w.account.as_bytes()),
                json_bytes(w.contact.as_bytes()),
                json_bytes(w.file.as_os_str().as_bytes()),
                w.pipes
            )
        })
        .collect();
    format!(
        ",\"notices\":{{\"dir\":{},\"written\":{},\"pipes\":{},\"unaddressed\":{},\"domain\":{},\"domain_from\":{},\"accounts\":[{}]}}",
        json_bytes(r.dir.as_os_str().as_bytes()),
        r.written.len(),
        r.pipes(),
        r.unaddressed,
        json_bytes(r.domain.as_bytes()),
        json_bytes(r.domain_from.as_bytes()),
        accounts.join(",")
    )
}

pub(super) fn entry_line(e: &Entry) -> String {
    let owner = e.owner.as_deref().unwrap_or("?");
    let rollout = e.rollout.unwrap_or("-");
    let at = if e.line > 0 { format!(":{}", e.line) } else { String::new() };
    let key = e.key.as_ref().map(|k| format!(" ({})", escape(k))).unwrap_or_default();
    let pipe = e.pipe.as_ref().map(|p| escape(p)).unwrap_or_default();
    format!("{owner:<16} {rollout:<21} {}{at}{key}  {pipe}", escape(e.file.as_os_str().as_bytes()))
}

pub(super) fn entry_json(e: &Entry) -> String {
    let opt = |v: Option<&[u8]>| v.map_or("null".to_string(), json_bytes);
    let (code, reason) = match &e.verdict {
        Verdict::Ready => ("null".to_string(), "null".to_string()),
        Verdict::NeedsAttention { code, reason } => (json_bytes(code.as_bytes()), json_bytes(reason.as_bytes())),
    };
    let argv = e
        .argv
        .as_ref()
        .map_or("null".to_string(), |a| format!("[{}]", a.iter().map(|w| json_bytes(w)).collect::<Vec<_>>().join(",")));
    let container = e.container.as_ref().map_or("null".to_string(), |(source, pid)| {
        format!("{{\"source\":{},\"pid\":{pid}}}", json_bytes(source.as_bytes()))
    });
    format!(
        "{{\"owner\":{},\"uid\":{},\"source\":\"{}\",\"file\":{},\"line\":{},\"key\":{},\"pipe\":{},\"argv\":{argv},\"rollout\":{},\"container\":{container},\"running\":{},\"command\":{},\"interpreter\":{},\"file_safe\":{},\"code\":{code},\"reason\":{reason}}}",
        opt(e.owner.as_deref().map(str::as_bytes)),
        e.uid.map_or("null".into(), |u| u.to_string()),
        e.source.name(),
        json_bytes(e.file.as_os_str().as_bytes()),
        e.line,
        opt(e.key.as_deref()),
        opt(e.pipe.as_deref()),
        opt(e.rollout.map(str::as_bytes)),
        e.container.is_some(),
        opt(e.command.as_deref()),
        opt(e.interpreter.as_deref()),
        e.file_safe,
    )
}

/// A JSON string of bytes: escaped as for the logs first, so non-UTF-8 and
/// control bytes show as `\xHH`.
pub(super) fn json_bytes(bytes: &[u8]) -> String {
    crate::admin::check::json_string(&escape(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_with(uid: u32, gid: u32, mode: u32) -> FileFacts {
        FileFacts { uid, gid, mode: mode & 0o7777 }
    }

    fn bob() -> Account {
        Account {
            name: "bob".into(),
            uid: 1002,
            gid: 1002,
            groups: vec![1002],
            home: "/home/bob".into(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn a_forward_must_be_the_users_or_roots_and_writable_by_nobody_else() {
        assert_eq!(forward_unsafe(stat_with(1002, 1002, 0o100644), &bob()), None);
        assert_eq!(forward_unsafe(stat_with(0, 0, 0o100600), &bob()), None);
        assert_eq!(forward_unsafe(stat_with(1002, 1002, 0o100664), &bob()), None, "the user's own group");
        assert!(forward_unsafe(stat_with(1003, 1002, 0o100644), &bob()).unwrap().contains("owned by uid 1003"));
        assert!(forward_unsafe(stat_with(1002, 1002, 0o100646), &bob()).unwrap().contains("everyone (mode 0646)"));
        assert!(forward_unsafe(stat_with(1002, 100, 0o100664), &bob()).unwrap().contains("group 100"));
    }

    #[test]
    fn an_alias_file_may_belong_to_the_system_or_the_pipes_owner() {
        let min = 1000;
        assert_eq!(alias_file_unsafe(stat_with(8, 12, 0o100600), 1002, min), None, "DirectAdmin: mail:mail");
        assert_eq!(alias_file_unsafe(stat_with(1002, 12, 0o100640), 1002, min), None, "cPanel: user:mail");
        assert_eq!(alias_file_unsafe(stat_with(0, 12, 0o100664), 1002, min), None, "a system group");
        assert!(alias_file_unsafe(stat_with(1003, 12, 0o100640), 1002, min).is_some());
        assert!(alias_file_unsafe(stat_with(0, 0, 0o100666), 1002, min).is_some());
        assert!(alias_file_unsafe(stat_with(0, 1500, 0o100664), 1002, min).is_some());
    }

    #[test]
    fn json_bytes_escape_what_json_and_logs_cannot_hold() {
        assert_eq!(json_bytes(b"a\"b\xff\n"), "\"a\\\"b\\\\xff\\\\n\"");
    }
}
