//! Build-time tasks, kept out of the privileged binary:
//!
//! ```text
//! cargo run -p xtask -- man DIR            write cagepipe.8 and cagepipe.toml.5 into DIR
//! cargo run -p xtask -- man --check DIR    fail if DIR's pages differ from freshly generated ones
//! cargo run -p xtask -- completions [--check] DIR
//!                                          write (or check) bash, zsh and fish completions in DIR
//! ```
//!
//! cagepipe(8) comes from the clap definition (`cagepipe::cli::command`)
//! plus the sections clap cannot know (exit status, files, examples);
//! cagepipe.toml(5) comes from the commented example configuration that the
//! packages install, so neither page can drift from what ships.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The date the pages carry: fixed, so that generation is reproducible.
const DATE: &str = "2026-11-23";
const EXAMPLE_CONFIG: &str = include_str!("../../packaging/cagepipe.toml");
/// The notice `survey --notices` writes without --template.
const DEFAULT_NOTICE: &str = include_str!("../../src/admin/notices/default.txt");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["man", dir] => write_all(Path::new(dir), &pages()),
        ["man", "--check", dir] => check_all(Path::new(dir), &pages()),
        ["completions", dir] => write_all(Path::new(dir), &completions()),
        ["completions", "--check", dir] => check_all(Path::new(dir), &completions()),
        _ => Err("usage: xtask man [--check] DIR | xtask completions [--check] DIR".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn check_all(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let stale: Vec<PathBuf> = files
        .iter()
        .map(|(name, bytes)| (dir.join(name), bytes))
        .filter(|(path, bytes)| std::fs::read(path).ok().as_ref() != Some(*bytes))
        .map(|(path, _)| path)
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "out of date (regenerate with `cargo run -p xtask -- ...` into {}): {}",
        dir.display(),
        names.join(", ")
    ))
}

fn pages() -> Vec<(String, Vec<u8>)> {
    vec![("cagepipe.8".into(), cagepipe_8()), ("cagepipe.toml.5".into(), cagepipe_toml_5())]
}

fn completions() -> Vec<(String, Vec<u8>)> {
    use clap_complete::Shell;
    [(Shell::Bash, "cagepipe.bash"), (Shell::Zsh, "_cagepipe"), (Shell::Fish, "cagepipe.fish")]
        .into_iter()
        .map(|(shell, name)| {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cagepipe::cli::command(), "cagepipe", &mut out);
            (name.to_string(), out)
        })
        .collect()
}

/// Escape text for roff: backslashes, and a leading dot or quote.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, ".SH {title}");
}

fn para(out: &mut String, text: &str) {
    let _ = writeln!(out, ".PP\n{}", roff_lines(text));
}

/// [`roff`], with [`LINE_BREAK`]s made into line breaks.
fn roff_lines(text: &str) -> String {
    roff(text).replace(LINE_BREAK, "\n.br\n\\&")
}

/// Stands for a line break in a comment: an indented comment line (a list
/// such as landlock's "off", "best-effort", "required") starts on a line
/// of its own instead of running into the paragraph.
const LINE_BREAK: char = '\u{1}';

/// A tagged paragraph: term in bold, then its description.
fn item(out: &mut String, term: &str, text: &str) {
    let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(term), roff_lines(text));
}

/// A literal example block.
fn example(out: &mut String, lines: &[&str]) {
    out.push_str(".PP\n.nf\n.RS 4\n");
    for l in lines {
        let _ = writeln!(out, "{}", roff(l));
    }
    out.push_str(".RE\n.fi\n");
}

fn cagepipe_8() -> Vec<u8> {
    let man = clap_mangen::Man::new(cagepipe::cli::command())
        .section("8")
        .date(DATE)
        .source(format!("cagepipe {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let mut out = Vec::new();
    man.render_title(&mut out).expect("render");
    man.render_name_section(&mut out).expect("render");
    let mut text = String::new();
    // The usage forms cli.rs spells out, one per line.
    section(&mut text, "SYNOPSIS");
    let usage = cagepipe::cli::command().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage:").trim();
    text.push_str(".nf\n");
    for form in usage.lines() {
        let _ = writeln!(text, "{}", roff(form.trim()));
    }
    text.push_str(".fi\n");
    section(&mut text, "DESCRIPTION");
    para(
        &mut text,
        "cagepipe runs a mail pipe delivery inside the running container of the user it is for. Exim's pipe \
         transport runs it for every pipe delivery (force_command, command = /usr/sbin/cagepipe \
         --raw-pipe=$address_pipe); Postfix runs it as local_command_shell with -c. It finds the calling user's \
         container from /etc/cagepipe/cagepipe.toml, joins its cgroups, enters its namespaces, drops every \
         privilege and executes the user's command inside, with the message on standard input.",
    );
    para(
        &mut text,
        "It is installed root:cagepipe 0750 with file capabilities in the permitted set only, never setuid. Its \
         identity is the caller's real uid: Exim's USER and LOGNAME name the local part, not the account.",
    );
    out.extend_from_slice(text.as_bytes());
    man.render_options_section(&mut out).expect("render");
    let mut text = String::new();
    section(&mut text, "COMMANDS");
    for sub in cagepipe::cli::command().get_subcommands() {
        let args: Vec<String> = sub.get_positionals().map(|a| format!("[{}]", a.get_id())).collect();
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        item(&mut text, &format!("{} {}", sub.get_name(), args.join(" ")), &about);
        // The subcommand's own options, as clap_mangen renders them, under
        // this heading instead of a section of their own.
        let mut options = Vec::new();
        clap_mangen::Man::new(sub.clone()).render_options_section(&mut options).expect("render");
        let options = String::from_utf8(options).expect("roff is text");
        text.push_str(".RS\n");
        for line in options.lines().filter(|l| !l.starts_with(".SH ")) {
            let _ = writeln!(text, "{line}");
        }
        text.push_str(".RE\n");
    }

    section(&mut text, "NOTICES");
    para(
        &mut text,
        "survey --notices DIR writes DIR/USER.eml for each account with pipes that need attention: a complete \
         message (From, To, Subject, Date, Message-ID, MIME-Version, Content-Type text/plain; charset=utf-8, \
         Content-Transfer-Encoding) ready for sendmail -t. It goes to the address --contacts FILE gives for USER \
         (lines \"user: address\", # comments), else to USER@DOMAIN, DOMAIN from --mail-domain, else the first \
         line of /etc/mailname, else the host's fully qualified name. An alias pipe counts as the domain owner's. \
         Pipes without an owner and pipes of system accounts are in no notice; the summary line counts them. \
         Text from customers' files (paths, pipe texts, real names) is escaped: control and Unicode format \
         characters as \\xHH and \\u{...}; headers are folded and RFC 2047-encoded where not ASCII; the body is \
         quoted-printable when a line is too long or starts with . or From. Existing notices are kept unless \
         --force; DIR is created mode 0700.",
    );
    section(&mut text, "TEMPLATES");
    para(
        &mut text,
        "--template FILE replaces the built-in notice. A template is header lines, an empty line, and the body. \
         It may set Subject (required; may hold placeholders), From and Reply-To (plain ASCII addresses, no \
         placeholders); cagepipe writes To, Date, Message-ID and the MIME headers itself, and any other header is \
         an error. In the body, {{field}} is replaced by a value; {{#pipes}} ... {{/pipes}} repeats its text for \
         each pipe of the account; {{?field}} ... {{/field}} shows its text only when the field is not empty; \
         {{open}} is a literal {{. A line holding only a {{#...}}, {{?...}} or {{/...}} tag disappears whole. \
         There is nothing else: no expressions, no file inclusion, no commands. An unknown placeholder, a pipe \
         field outside the loop, or an unclosed section is an error naming the line and column (exit 64), found \
         before the survey runs.",
    );
    for (field, meaning) in [
        ("user", "the account name"),
        ("name", "the real name from the passwd GECOS field, else the account name"),
        ("contact", "the address the notice goes to"),
        ("domain", "the mail domain"),
        ("count, s", "how many pipes the notice lists; s is \"s\" unless there is one"),
        ("number", "in the loop: 1, 2, 3..."),
        ("file, line", "in the loop: the file the pipe is in, and its line (empty when the whole file is meant)"),
        ("where", "in the loop: \"FILE, line N\" or \"FILE (the whole file)\""),
        ("alias", "in the loop: the alias the pipe belongs to (alias files), else empty"),
        ("pipe", "in the loop: the pipe text, escaped"),
        ("code", "in the loop: the survey's code (not-found, no-container, ...)"),
        ("reason, advice", "in the loop: why it will not work, and what to do, as sentences; wrapped at 72 columns under the column they start in"),
    ] {
        let term: Vec<String> = field.split(", ").map(|f| format!("{{{{{f}}}}}")).collect();
        item(&mut text, &term.join(", "), meaning);
    }
    para(&mut text, "The built-in template:");
    example(&mut text, &DEFAULT_NOTICE.lines().collect::<Vec<_>>());

    section(&mut text, "EXIT STATUS");
    para(&mut text, "Exim acts on the status: 0 delivers, the temp_errors list (75:73) defers, anything else bounces.");
    for (code, meaning) in [
        ("the command's own status", "passed on unchanged; if the command was killed by a signal, cagepipe dies from the same signal, so Exim logs \"terminated by signal N\" as without cagepipe."),
        ("75", "EX_TEMPFAIL: anything an administrator can fix: no container running, a missing, unsafe or invalid configuration or pidfile, a cgroup or namespace that cannot be joined, a capability missing. Exim keeps the message and retries; nothing is lost. The reason is on standard error and in syslog."),
        ("77", "EX_NOPERM: the caller may not do this: uid below min_uid, root without --user, --user or --config from a user other than root, or no container with missing = \"refuse\"."),
        ("78", "EX_CONFIG: check found problems in Exim's transports that name cagepipe, while the delivery itself would work."),
        ("64", "EX_USAGE: the command line was not understood."),
        ("126, 127", "the command exists but cannot be executed, or does not exist, inside the container (Exim logs 127 as \"unable to exec or command does not exist\")."),
        ("0, 1", "survey only: every pipe found is ready / some pipe needs attention. The survey writes its lists as it goes (READY first; NEEDS ATTENTION and SKIPPED, held in an unlinked file in $TMPDIR or /tmp, follow it; the summary comes last, in JSON too); if its output cannot be written (a pipe closed by head, a full disk) it stops with a message and exits 75."),
    ] {
        item(&mut text, code, meaning);
    }
    section(&mut text, "FILES");
    item(&mut text, "/etc/cagepipe/cagepipe.toml", "Where each user's container is found; see cagepipe.toml(5). It and every directory above it must be owned by root and not writable by group or others.");
    item(&mut text, "/dev/log", "One syslog line per delivery, facility mail, program cagepipe.");
    section(&mut text, "EXAMPLES");
    para(&mut text, "The Exim transport (Debian, DirectAdmin and cPanel variants ship with cagepipe):");
    example(
        &mut text,
        &[
            "cagepipe_pipe:",
            "  driver = pipe",
            "  force_command",
            "  command = /usr/sbin/cagepipe --raw-pipe=$address_pipe",
            "  group = cagepipe",
            "  temp_errors = 75:73",
            "  return_fail_output",
            "  log_defer_output",
        ],
    );
    para(&mut text, "Why alice's pipe deferred, as root:");
    example(&mut text, &["cagepipe check alice"]);
    para(&mut text, "What a delivery would run, without running it:");
    example(&mut text, &["cagepipe --user alice --dry-run --raw-pipe='|/home/alice/bin/ticket.php --queue support'"]);
    para(&mut text, "Reproduce a delivery by hand, as root, exactly as Exim would run it:");
    example(&mut text, &["cagepipe --user alice --raw-pipe='|/home/alice/bin/ticket.php' < message.eml; echo $?"]);
    para(
        &mut text,
        "Before switching Exim over: every pipe configured on the server (~/.forward, DirectAdmin and cPanel \
         aliases), dry-run, in two lists; then with [rollout] contain = \"none\" turn force_command on, and list \
         the accounts that are READY:",
    );
    example(&mut text, &["cagepipe survey", "cagepipe survey --format json --aliases /etc/aliases:mailman"]);
    para(&mut text, "Then write to every customer whose pipes need attention, and send what you have read:");
    example(
        &mut text,
        &[
            "cagepipe survey --notices /root/notices --contacts /root/contacts",
            "for f in /root/notices/*.eml; do /usr/sbin/sendmail -t -oi < \"$f\"; done",
        ],
    );
    para(
        &mut text,
        "Postfix main.cf (local(8) gives the command only the recipient's primary group, so the binary must be \
         executable by others: mode 0751, e.g. dpkg-statoverride --update --add root cagepipe 0751 /usr/sbin/cagepipe):",
    );
    example(&mut text, &["local_command_shell = /usr/sbin/cagepipe -c", "command_execution_directory = $home"]);
    section(&mut text, "SEE ALSO");
    let _ = writeln!(text, "\\fBcagepipe.toml\\fR(5), \\fBexim\\fR(8), \\fBcapabilities\\fR(7), \\fBnamespaces\\fR(7)");
    out.extend_from_slice(text.as_bytes());
    man.render_version_section(&mut out).expect("render");
    out
}

/// cagepipe.toml(5) from the example configuration: each `[section]`
/// becomes a subsection, each `key = value` a tagged paragraph carrying the
/// comment lines above it.
fn cagepipe_toml_5() -> Vec<u8> {
    let mut text = String::new();
    let _ =
        writeln!(text, ".TH CAGEPIPE.TOML 5 \"{DATE}\" \"cagepipe {}\" \"File Formats\"", env!("CARGO_PKG_VERSION"));
    section(&mut text, "NAME");
    text.push_str("cagepipe.toml \\- where cagepipe finds each user's container\n");
    section(&mut text, "SYNOPSIS");
    text.push_str("/etc/cagepipe/cagepipe.toml\n");
    section(&mut text, "DESCRIPTION");
    let mut comment: Vec<String> = Vec::new();
    let mut in_preamble = true;
    for line in EXAMPLE_CONFIG.lines() {
        let trimmed = line.trim();
        if let Some(c) = trimmed.strip_prefix('#') {
            // A list item starts at three spaces; deeper lines continue it.
            if c.starts_with("   ") && !c.starts_with("    ") {
                comment.push(format!("{LINE_BREAK}{}", c.trim()));
            } else {
                comment.push(c.trim().to_string());
            }
        } else if trimmed.starts_with('[') {
            flush_preamble(&mut text, &mut comment, &mut in_preamble);
            let _ = writeln!(text, ".SS {}", roff(trimmed));
            if !comment.is_empty() {
                para(&mut text, &comment.join(" "));
                comment.clear();
            }
        } else if let Some((key, value)) = trimmed.split_once('=') {
            flush_preamble(&mut text, &mut comment, &mut in_preamble);
            let default = format!("{} (default {})", key.trim(), value.trim());
            item(&mut text, &default, &comment.join(" "));
            comment.clear();
        } else if trimmed.is_empty() && in_preamble && !comment.is_empty() {
            para(&mut text, &comment.join(" "));
            comment.clear();
        }
    }
    section(&mut text, "EXAMPLE");
    para(&mut text, "The file the packages install, which states every default:");
    let lines: Vec<&str> = EXAMPLE_CONFIG.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    example(&mut text, &lines);
    section(&mut text, "SEE ALSO");
    let _ = writeln!(text, "\\fBcagepipe\\fR(8)");
    text.into_bytes()
}

fn flush_preamble(text: &mut String, comment: &mut Vec<String>, in_preamble: &mut bool) {
    if *in_preamble {
        // The file's first comment block names the file: skip that line.
        if !comment.is_empty() {
            para(text, &comment.join(" "));
            comment.clear();
        }
        *in_preamble = false;
    }
}
