//! The command line: clap turns argv into raw values, [`Request::parse`]
//! turns those into one validated request. Parse errors exit 64, never 2
//! (Exim would bounce on 2 without a hint of why).
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgGroup, Command};

use crate::error::{Error, Result};
use crate::parse::pipe_text;

/// What the user's command is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommandSpec {
    /// argv for the command (from `--raw-pipe` text or after `--`).
    Argv(Vec<Vec<u8>>),
    /// `-c STRING`: the container's `/bin/sh -c STRING`.
    Shell(Vec<u8>),
}

impl CommandSpec {
    /// `--raw-pipe=TEXT`: split as Exim splits a pipe's text.
    fn raw_pipe(text: &[u8]) -> Result<CommandSpec> {
        pipe_text::split_pipe_text(text).map(CommandSpec::Argv).map_err(|e| Error::Usage(format!("--raw-pipe: {e}")))
    }

    /// `-c STRING`.
    fn shell(string: &[u8]) -> Result<CommandSpec> {
        if string.is_empty() {
            return Err(Error::Usage("-c needs a non-empty command string".into()));
        }
        Ok(CommandSpec::Shell(string.to_vec()))
    }

    /// No argument of the command may hold a NUL (execve could not pass it).
    fn without_nul(self) -> Result<CommandSpec> {
        if self.argv().iter().any(|a| a.contains(&0)) {
            return Err(Error::Usage("an argument contains a NUL byte".into()));
        }
        Ok(self)
    }

    /// The argv that will be executed.
    pub(crate) fn argv(&self) -> Vec<Vec<u8>> {
        match self {
            CommandSpec::Argv(v) => v.clone(),
            CommandSpec::Shell(s) => vec![b"/bin/sh".to_vec(), b"-c".to_vec(), s.clone()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Deliver(CommandSpec),
    /// Explain how a delivery for this user would run.
    Check {
        user: Option<String>,
        /// `--exim PATH`: the Exim binary to ask (root only).
        exim: Option<PathBuf>,
        /// `--exim-config FILE`: Exim's `-C FILE` (root only).
        exim_config: Option<PathBuf>,
    },
    /// Find every configured pipe delivery and dry-run each (root only).
    Survey(SurveyOptions),
    /// Print help or version text and exit 0.
    Print(String),
}

/// Where `cagepipe survey` looks (defaults: the real system's files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SurveyOptions {
    pub(crate) passwd: PathBuf,
    pub(crate) group: PathBuf,
    /// DirectAdmin's /etc/virtual: `<domain>/aliases` and `domainowners`.
    pub(crate) directadmin: PathBuf,
    /// cPanel's /etc: `valiases/<domain>` and `userdomains`.
    pub(crate) cpanel: PathBuf,
    /// `--aliases FILE[:OWNERS]`, in order.
    pub(crate) aliases: Vec<ExtraAliases>,
    /// Whether to read users' ~/.forward files.
    pub(crate) forward: bool,
    /// `--notices DIR`: write a message for each account with pipes that
    /// need attention.
    pub(crate) notices: Option<NoticeOptions>,
}

/// How `survey --notices` writes its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoticeOptions {
    pub(crate) dir: PathBuf,
    /// `--template FILE` instead of the built-in English one.
    pub(crate) template: Option<PathBuf>,
    /// Replace notices already in DIR.
    pub(crate) force: bool,
    /// `--mail-domain`: the domain of `USER@DOMAIN` (default: /etc/mailname,
    /// then the host's fully qualified name).
    pub(crate) domain: Option<String>,
    /// `--contacts FILE`: `user: address` lines that override USER@DOMAIN.
    pub(crate) contacts: Option<PathBuf>,
}

/// An alias file named with `--aliases`, and who owns its pipes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtraAliases {
    pub(crate) file: PathBuf,
    pub(crate) owners: Owners,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owners {
    /// Nothing given: the file's owner, if it is not a system account.
    FileOwner,
    /// `FILE:USER`: every pipe in the file runs as USER.
    User(String),
    /// `FILE:/path`: a "domain: user" file; the domain is the part after @
    /// in each alias key.
    Domains(PathBuf),
}

impl ExtraAliases {
    /// `FILE[:OWNERS]`: split at the last colon when what follows is a user
    /// name or an absolute path, so a FILE with a colon still works alone.
    pub(crate) fn parse(text: &std::ffi::OsStr) -> Result<ExtraAliases> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(Error::Usage("--aliases needs FILE[:OWNERS]".into()));
        }
        if let Some(colon) = bytes.iter().rposition(|&b| b == b':') {
            let (file, owners) = (&bytes[..colon], &bytes[colon + 1..]);
            let file = PathBuf::from(OsString::from_vec(file.to_vec()));
            if owners.starts_with(b"/") {
                let owners = PathBuf::from(OsString::from_vec(owners.to_vec()));
                return Ok(ExtraAliases { file, owners: Owners::Domains(owners) });
            }
            if let Ok(user) = std::str::from_utf8(owners) {
                if crate::config::account::check_user_name(user).is_ok() {
                    return Ok(ExtraAliases { file, owners: Owners::User(user.to_string()) });
                }
            }
        }
        Ok(ExtraAliases { file: PathBuf::from(text), owners: Owners::FileOwner })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) action: Action,
    /// `--user NAME` (root only).
    pub(crate) user: Option<String>,
    /// `--config PATH` (root only).
    pub(crate) config: Option<PathBuf>,
    pub(crate) dry_run: bool,
    /// `--env NAME=VALUE`: Exim's variables given by hand, in order.
    pub(crate) env: Vec<(OsString, OsString)>,
    /// `--format json` for check and --dry-run.
    pub(crate) json: bool,
}

pub fn command() -> Command {
    Command::new("cagepipe")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Run a mail pipe delivery inside its owner's running container")
        .override_usage(
            "cagepipe [OPTIONS] --raw-pipe=TEXT\n       cagepipe [OPTIONS] -- COMMAND [ARG]...\n       cagepipe [OPTIONS] -c STRING\n       cagepipe [OPTIONS] check [USER]\n       cagepipe [OPTIONS] survey [--aliases FILE[:OWNERS]]... [--notices DIR [--template FILE]]",
        )
        .arg(
            Arg::new("raw-pipe")
                .long("raw-pipe")
                .value_name("TEXT")
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(OsString))
                .help("Deliver: TEXT is Exim's $address_pipe verbatim, split with Exim's rules"),
        )
        .arg(
            Arg::new("shell")
                .short('c')
                .value_name("STRING")
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(OsString))
                .help("Deliver: run the container's /bin/sh -c STRING"),
        )
        .arg(
            Arg::new("command")
                .value_name("COMMAND")
                .num_args(1..)
                .last(true)
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(OsString))
                .help("Deliver: COMMAND with its arguments (everything after --)"),
        )
        .group(ArgGroup::new("deliver").args(["raw-pipe", "shell", "command"]).multiple(false))
        .arg(
            Arg::new("user")
                .long("user")
                .value_name("NAME")
                .global(true)
                .help("Act for NAME instead of the calling user (root only)"),
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("PATH")
                .global(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("Read PATH instead of /etc/cagepipe/cagepipe.toml (root only)"),
        )
        .arg(
            Arg::new("env")
                .long("env")
                .value_name("NAME=VALUE")
                .action(ArgAction::Append)
                .value_parser(clap::value_parser!(OsString))
                .help("Deliver: set Exim's variable NAME (LOCAL_PART, SENDER, ...) as Exim would, to reproduce a delivery by hand; only names cagepipe passes on"),
        )
        .arg(
            Arg::new("format")
                .long("format")
                .value_name("FORMAT")
                .global(true)
                .value_parser(["text", "json"])
                .default_value("text")
                .help("check, survey and --dry-run: plain lines (text) or one JSON object (json)"),
        )
        .arg(
            Arg::new("dry-run")
                .long("dry-run")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Resolve and check everything, print the plan, run nothing"),
        )
        .subcommand(
            Command::new("check")
                .about("Explain how a delivery for USER (default: the caller) would run; exit 0 if it can")
                .arg(Arg::new("USER").help("The user to check (root only for another user)"))
                .arg(
                    Arg::new("exim")
                        .long("exim")
                        .value_name("PATH")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("The Exim binary whose transports are checked (root only; default: the first of /usr/sbin/exim4, /usr/sbin/exim, /usr/exim/bin/exim, /usr/local/sbin/exim)"),
                )
                .arg(
                    Arg::new("exim-config")
                        .long("exim-config")
                        .value_name("FILE")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("Check the transports of this Exim configuration (exim -C FILE; root only)"),
                ),
        )
        .subcommand(
            Command::new("survey")
                .about(
                    "Find every pipe delivery configured on this server (~/.forward, DirectAdmin and cPanel aliases) \
                     and dry-run each: READY or NEEDS ATTENTION, with the reason (root only; exit 0 when all are \
                     ready, 1 when some need attention)",
                )
                .arg(
                    Arg::new("aliases")
                        .long("aliases")
                        .value_name("FILE[:OWNERS]")
                        .action(ArgAction::Append)
                        .value_parser(clap::value_parser!(OsString))
                        .help("Also read this alias file; OWNERS is the user its pipes run as, or a \"domain: user\" file (default: the file's owner)"),
                )
                .arg(
                    Arg::new("no-forward")
                        .long("no-forward")
                        .action(ArgAction::SetTrue)
                        .help("Do not read users' ~/.forward files"),
                )
                .arg(
                    Arg::new("passwd")
                        .long("passwd")
                        .value_name("FILE")
                        .value_parser(clap::value_parser!(PathBuf))
                        .default_value("/etc/passwd")
                        .help("The accounts (and their homes) to survey"),
                )
                .arg(
                    Arg::new("group")
                        .long("group")
                        .value_name("FILE")
                        .value_parser(clap::value_parser!(PathBuf))
                        .default_value("/etc/group")
                        .help("The groups of those accounts"),
                )
                .arg(
                    Arg::new("directadmin")
                        .long("directadmin")
                        .value_name("DIR")
                        .value_parser(clap::value_parser!(PathBuf))
                        .default_value("/etc/virtual")
                        .help("DirectAdmin's DIR/<domain>/aliases, owners in DIR/domainowners"),
                )
                .arg(
                    Arg::new("cpanel")
                        .long("cpanel")
                        .value_name("DIR")
                        .value_parser(clap::value_parser!(PathBuf))
                        .default_value("/etc")
                        .help("cPanel's DIR/valiases/<domain>, owners in DIR/userdomains"),
                )
                .arg(
                    Arg::new("notices")
                        .long("notices")
                        .value_name("DIR")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("Also write one message (DIR/USER.eml, ready for sendmail -t) to each account with pipes that need attention: what was found, why, what to do; DIR is created mode 0700 (an existing one must be root's and writable by nobody else)")
                )
                .arg(
                    Arg::new("template")
                        .long("template")
                        .value_name("FILE")
                        .requires("notices")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("Write the notices from this template instead of the built-in English one (see TEMPLATES)"),
                )
                .arg(
                    Arg::new("force")
                        .long("force")
                        .requires("notices")
                        .action(ArgAction::SetTrue)
                        .help("Replace notices already in DIR (without it, an existing one stops the run before anything is written)"),
                )
                .arg(
                    Arg::new("mail-domain")
                        .long("mail-domain")
                        .value_name("DOMAIN")
                        .requires("notices")
                        .help("Notices go to USER@DOMAIN (default: the first line of /etc/mailname, else the host's fully qualified name, as hostname -f gives it)"),
                )
                .arg(
                    Arg::new("contacts")
                        .long("contacts")
                        .value_name("FILE")
                        .requires("notices")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("\"user: address\" lines: where to send each account's notice instead of USER@DOMAIN"),
                ),
        )
}

impl Request {
    /// Parse argv (including argv[0]).
    pub(crate) fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Request> {
        let args: Vec<OsString> = args.into_iter().collect();
        match Request::parse_mta_form(&args) {
            Some(request) => request,
            None => Request::parse_full(args),
        }
    }

    /// The two forms a mail server uses on every delivery: Exim's
    /// `cagepipe --raw-pipe=TEXT` and Postfix's `cagepipe -c STRING`,
    /// exactly one option and nothing else. They are read here without
    /// building clap's whole command (its allocations and its work are a
    /// measurable part of a delivery); the result is the one the full
    /// parser gives, which a unit test holds for every input. Anything
    /// else (`None`) goes to the full parser.
    fn parse_mta_form(args: &[OsString]) -> Option<Result<Request>> {
        let spec = match args {
            [_, one] => CommandSpec::raw_pipe(one.as_bytes().strip_prefix(b"--raw-pipe=")?),
            [_, flag, string] if flag.as_bytes() == b"-c" && !string.as_bytes().starts_with(b"-") => {
                CommandSpec::shell(string.as_bytes())
            }
            _ => return None,
        };
        Some(spec.and_then(CommandSpec::without_nul).map(|spec| Request {
            action: Action::Deliver(spec),
            user: None,
            config: None,
            dry_run: false,
            env: Vec::new(),
            json: false,
        }))
    }

    /// Every form, through clap.
    fn parse_full(args: Vec<OsString>) -> Result<Request> {
        let m = match command().try_get_matches_from(args) {
            Ok(m) => m,
            Err(e) => {
                use clap::error::ErrorKind::*;
                return match e.kind() {
                    DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand => Ok(Request {
                        action: Action::Print(e.render().to_string()),
                        user: None,
                        config: None,
                        dry_run: false,
                        env: Vec::new(),
                        json: false,
                    }),
                    _ => Err(Error::Usage(first_line(&e.render().to_string()))),
                };
            }
        };
        let user = m.get_one::<String>("user").cloned();
        let config = m.get_one::<PathBuf>("config").cloned();
        let dry_run = m.get_flag("dry-run");
        // A global with a default: the subcommand's matches hold what was
        // given after `check`, the top level's what was given before it.
        let json = [Some(&m), m.subcommand_matches("check")]
            .into_iter()
            .flatten()
            .any(|mm| mm.get_one::<String>("format").is_some_and(|f| f == "json"));
        let mut env = Vec::new();
        for item in m.get_many::<OsString>("env").into_iter().flatten() {
            let bytes = item.as_bytes();
            match bytes.iter().position(|&b| b == b'=') {
                Some(eq) if eq > 0 && !bytes.contains(&0) => {
                    env.push((OsString::from_vec(bytes[..eq].to_vec()), OsString::from_vec(bytes[eq + 1..].to_vec())))
                }
                _ => return Err(Error::Usage(format!("--env wants NAME=VALUE, not {:?}", item))),
            }
        }
        let json = json
            || m.subcommand_matches("survey").and_then(|s| s.get_one::<String>("format")).is_some_and(|f| f == "json");
        let action = if let Some(sub) = m.subcommand_matches("survey") {
            if m.contains_id("deliver") {
                return Err(Error::Usage("survey takes no command to deliver".into()));
            }
            let path = |id: &str| sub.get_one::<PathBuf>(id).cloned().expect("has a default");
            let mut aliases = Vec::new();
            for a in sub.get_many::<OsString>("aliases").into_iter().flatten() {
                aliases.push(ExtraAliases::parse(a)?);
            }
            Action::Survey(SurveyOptions {
                passwd: path("passwd"),
                group: path("group"),
                directadmin: path("directadmin"),
                cpanel: path("cpanel"),
                aliases,
                forward: !sub.get_flag("no-forward"),
                notices: sub.get_one::<PathBuf>("notices").map(|dir| NoticeOptions {
                    dir: dir.clone(),
                    template: sub.get_one::<PathBuf>("template").cloned(),
                    force: sub.get_flag("force"),
                    domain: sub.get_one::<String>("mail-domain").cloned(),
                    contacts: sub.get_one::<PathBuf>("contacts").cloned(),
                }),
            })
        } else if let Some(sub) = m.subcommand_matches("check") {
            if m.contains_id("deliver") {
                return Err(Error::Usage("check takes no command to deliver".into()));
            }
            Action::Check {
                user: sub.get_one::<String>("USER").cloned().or_else(|| user.clone()),
                exim: sub.get_one::<PathBuf>("exim").cloned(),
                exim_config: sub.get_one::<PathBuf>("exim-config").cloned(),
            }
        } else if let Some(text) = m.get_one::<OsString>("raw-pipe") {
            Action::Deliver(CommandSpec::raw_pipe(text.as_bytes())?)
        } else if let Some(s) = m.get_one::<OsString>("shell") {
            Action::Deliver(CommandSpec::shell(s.as_bytes())?)
        } else if let Some(words) = m.get_many::<OsString>("command") {
            let argv: Vec<Vec<u8>> = words.map(|w| w.clone().into_vec()).collect();
            if argv[0].is_empty() {
                return Err(Error::Usage("the command after -- is empty".into()));
            }
            Action::Deliver(CommandSpec::Argv(argv))
        } else {
            return Err(Error::Usage(
                "nothing to deliver: give --raw-pipe=TEXT, -c STRING or -- COMMAND (see cagepipe --help)".into(),
            ));
        };
        let action = match action {
            Action::Deliver(spec) => Action::Deliver(spec.without_nul()?),
            other => other,
        };
        if user.is_some() && matches!(action, Action::Survey(_)) {
            return Err(Error::Usage("survey looks at every account; --user is not for it".into()));
        }
        if matches!(action, Action::Survey(_)) && dry_run {
            return Err(Error::Usage("survey runs nothing already; --dry-run is for a delivery".into()));
        }
        if !env.is_empty() && !matches!(action, Action::Deliver(_)) {
            return Err(Error::Usage("--env is for a delivery, not for check or survey".into()));
        }
        if json && matches!(action, Action::Deliver(_)) && !dry_run {
            return Err(Error::Usage("--format is for check and --dry-run".into()));
        }
        Ok(Request { action, user, config, dry_run, env, json })
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid command line");
    line.trim_start_matches("error: ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Request> {
        Request::parse(std::iter::once("cagepipe").chain(args.iter().copied()).map(OsString::from))
    }
    fn argv(r: Request) -> Vec<Vec<u8>> {
        match r.action {
            Action::Deliver(spec) => spec.argv(),
            other => panic!("not a delivery: {other:?}"),
        }
    }

    /// The mail servers' forms, read without clap, give what clap gives:
    /// the same request, or the same error.
    #[test]
    fn mta_forms_parse_as_the_full_parser_does() {
        let texts: &[&[u8]] = &[
            b"|/bin/handler 'a b' \"c d\" e",
            b"|/bin/true",
            b"/bin/true",
            b"|",
            b"",
            b"| ",
            b"|x 'unclosed",
            b"|x \"unclosed",
            b"|x \\",
            b"|--help",
            b"--help",
            b"-V",
            b"|x\ty\nz",
            b"|\xff\xfe/x",
            b"|a \x00b",
            b"|/bin/sh -c 'echo $HOME'",
        ];
        let mut forms: Vec<Vec<OsString>> = Vec::new();
        for t in texts {
            let mut raw = b"--raw-pipe=".to_vec();
            raw.extend_from_slice(t);
            forms.push(vec![OsString::from_vec(raw)]);
            forms.push(vec!["-c".into(), OsString::from_vec(t.to_vec())]);
        }
        let mut taken = 0;
        for form in forms {
            let args: Vec<OsString> = std::iter::once(OsString::from("cagepipe")).chain(form.clone()).collect();
            let Some(fast) = Request::parse_mta_form(&args) else { continue };
            taken += 1;
            let full = Request::parse_full(args);
            match (fast, full) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{form:?}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.exit_code(), b.exit_code(), "{form:?}");
                    assert_eq!(a.to_string(), b.to_string(), "{form:?}");
                }
                (a, b) => panic!("{form:?}: without clap {a:?}, with clap {b:?}"),
            }
        }
        assert!(taken >= texts.len() * 2 - 4, "the forms were read without clap: {taken}");
        // Anything more than the one option is clap's.
        for more in [
            &["--raw-pipe=|x", "--dry-run"][..],
            &["--dry-run", "--raw-pipe=|x"],
            &["--raw-pipe", "|x"],
            &["-c", "-x"],
            &["--user", "a", "-c", "x"],
            &["check"],
        ] {
            let args: Vec<OsString> =
                std::iter::once("cagepipe").chain(more.iter().copied()).map(OsString::from).collect();
            assert!(Request::parse_mta_form(&args).is_none(), "{more:?}");
        }
    }

    #[test]
    fn raw_pipe_is_split_with_exim_rules() {
        let r = parse(&["--raw-pipe=|/bin/handler 'a b' \"c d\" e"]).unwrap();
        assert_eq!(argv(r), vec![b"/bin/handler".to_vec(), b"a b".to_vec(), b"c d".to_vec(), b"e".to_vec()]);
        let r = parse(&["--raw-pipe", "-x"]).unwrap();
        assert_eq!(argv(r), vec![b"-x".to_vec()]);
    }

    #[test]
    fn everything_after_double_dash_is_the_command() {
        let r = parse(&["--dry-run", "--", "-weird", "--user", "x"]).unwrap();
        assert!(r.dry_run);
        assert_eq!(r.user, None);
        assert_eq!(argv(r), vec![b"-weird".to_vec(), b"--user".to_vec(), b"x".to_vec()]);
    }

    #[test]
    fn non_utf8_arguments_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![OsString::from("cagepipe"), OsString::from("--"), OsString::from_vec(vec![b'/', 0xff, 0xfe])];
        assert_eq!(argv(Request::parse(args).unwrap()), vec![vec![b'/', 0xff, 0xfe]]);
    }

    #[test]
    fn shell_form_runs_the_containers_sh() {
        let r = parse(&["-c", "echo hi | wc"]).unwrap();
        assert_eq!(argv(r), vec![b"/bin/sh".to_vec(), b"-c".to_vec(), b"echo hi | wc".to_vec()]);
    }

    #[test]
    fn format_json_is_for_check_and_dry_run_only() {
        assert!(parse(&["check", "--format", "json"]).unwrap().json);
        assert!(parse(&["--format", "json", "check"]).unwrap().json);
        assert!(parse(&["--format=json", "--dry-run", "--", "/bin/true"]).unwrap().json);
        assert!(!parse(&["check"]).unwrap().json);
        assert_eq!(parse(&["--format=json", "--", "/bin/true"]).unwrap_err().exit_code(), 64);
        assert_eq!(parse(&["check", "--format=yaml"]).unwrap_err().exit_code(), 64);
    }

    #[test]
    fn env_gives_exims_variables_by_hand() {
        let r = parse(&["--env", "LOCAL_PART=support", "--env=SENDER=a=b@x", "--", "/bin/true"]).unwrap();
        assert_eq!(r.env, vec![("LOCAL_PART".into(), "support".into()), ("SENDER".into(), "a=b@x".into())]);
        for bad in [
            &["--env", "NOEQUALS", "--", "/bin/true"][..],
            &["--env", "=x", "--", "/bin/true"],
            &["--env", "A=1", "check"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 64, "{bad:?}");
        }
    }

    #[test]
    fn check_takes_an_optional_user_and_global_options() {
        let r = parse(&["check"]).unwrap();
        assert_eq!(r.action, Action::Check { user: None, exim: None, exim_config: None });
        let r = parse(&["--config", "/tmp/c.toml", "check", "alice"]).unwrap();
        assert_eq!(r.action, Action::Check { user: Some("alice".into()), exim: None, exim_config: None });
        assert_eq!(r.config, Some(PathBuf::from("/tmp/c.toml")));
        let r = parse(&["check", "--exim", "/usr/sbin/exim4", "--exim-config", "/etc/exim.conf"]).unwrap();
        assert_eq!(
            r.action,
            Action::Check {
                user: None,
                exim: Some("/usr/sbin/exim4".into()),
                exim_config: Some("/etc/exim.conf".into())
            }
        );
    }

    #[test]
    fn survey_takes_extra_alias_files_with_their_owners() {
        let r = parse(&["survey", "--format", "json", "--aliases", "/etc/aliases", "--aliases", "/x/a:bob"]).unwrap();
        assert!(r.json);
        let Action::Survey(o) = r.action else { panic!("not a survey") };
        assert_eq!(o.passwd, PathBuf::from("/etc/passwd"));
        assert_eq!(o.directadmin, PathBuf::from("/etc/virtual"));
        assert_eq!(o.cpanel, PathBuf::from("/etc"));
        assert!(o.forward);
        assert_eq!(
            o.aliases,
            [
                ExtraAliases { file: "/etc/aliases".into(), owners: Owners::FileOwner },
                ExtraAliases { file: "/x/a".into(), owners: Owners::User("bob".into()) }
            ]
        );
        let a = ExtraAliases::parse(std::ffi::OsStr::new("/x/a:/etc/virtual/domainowners")).unwrap();
        assert_eq!(a.owners, Owners::Domains("/etc/virtual/domainowners".into()));
        let a = ExtraAliases::parse(std::ffi::OsStr::new("/x/a:b c")).unwrap();
        assert_eq!(a, ExtraAliases { file: "/x/a:b c".into(), owners: Owners::FileOwner }, "not a user name: all FILE");
        assert_eq!(parse(&["survey", "--aliases", ""]).unwrap_err().exit_code(), 64);
        assert_eq!(parse(&["--raw-pipe=|x", "survey"]).unwrap_err().exit_code(), 64);
        assert_eq!(parse(&["--user", "alice", "survey"]).unwrap_err().exit_code(), 64);
        let e = parse(&["--dry-run", "survey"]).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("--dry-run is for a delivery"), "{e}");
        let Action::Survey(o) = parse(&["survey", "--no-forward", "--passwd", "/t/p"]).unwrap().action else {
            panic!()
        };
        assert!(!o.forward);
        assert_eq!(o.passwd, PathBuf::from("/t/p"));
        assert_eq!(o.notices, None);
    }

    #[test]
    fn survey_writes_notices_only_when_asked_and_their_options_need_it() {
        let r = parse(&["survey", "--notices", "/root/n", "--template", "/t", "--force", "--mail-domain", "x.test"]);
        let Action::Survey(o) = r.unwrap().action else { panic!("not a survey") };
        assert_eq!(
            o.notices,
            Some(NoticeOptions {
                dir: "/root/n".into(),
                template: Some("/t".into()),
                force: true,
                domain: Some("x.test".into()),
                contacts: None
            })
        );
        for bad in [&["survey", "--template", "/t"][..], &["survey", "--force"], &["survey", "--contacts", "/c"]] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 64, "{bad:?} without --notices");
        }
    }

    #[test]
    fn usage_errors_exit_64_not_2() {
        for bad in [
            vec![],
            vec!["--raw-pipe=|"],
            vec!["--raw-pipe=|x", "-c", "y"],
            vec!["--bogus"],
            vec!["--raw-pipe=x", "--", "y"],
            vec!["-c", ""],
            vec!["--", ""],
        ] {
            let e = parse(&bad).unwrap_err();
            assert_eq!(e.exit_code(), 64, "{bad:?}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn help_and_version_are_printed_not_errors() {
        assert!(matches!(parse(&["--help"]).unwrap().action, Action::Print(t) if t.contains("--raw-pipe")));
        assert!(
            matches!(parse(&["--version"]).unwrap().action, Action::Print(t) if t.contains(env!("CARGO_PKG_VERSION")))
        );
    }
}
