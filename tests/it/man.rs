//! The shipped man pages mention every option the command line has
//! (regenerate them with `cargo run -p xtask -- man packaging/man`).

use std::path::Path;

use crate::rig;

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How roff spells an option: every '-' escaped.
fn roff_option(flag: &str) -> String {
    flag.replace('-', "\\-")
}

#[test]
fn cagepipe_8_mentions_every_option_and_command() {
    let _test = rig::need_nothing();
    let man = page("cagepipe.8");
    let cmd = cagepipe::cli::command();
    let mut checked = 0;
    let mut commands = vec![cmd.clone()];
    commands.extend(cmd.get_subcommands().cloned());
    for c in &commands {
        if c.get_name() != "cagepipe" {
            assert!(man.contains(&format!("\\fB{}", c.get_name())), "cagepipe.8 does not describe `{}`", c.get_name());
        }
        for arg in c.get_arguments() {
            if let Some(long) = arg.get_long() {
                let spelled = roff_option(&format!("--{long}"));
                assert!(man.contains(&spelled), "cagepipe.8 does not mention --{long} (of `{}`)", c.get_name());
                checked += 1;
            }
            if let Some(short) = arg.get_short() {
                assert!(man.contains(&roff_option(&format!("-{short}"))), "cagepipe.8 does not mention -{short}");
            }
        }
    }
    assert!(checked >= 4, "the command line has long options to check ({checked})");
    for section in ["EXIT STATUS", "EXAMPLES", "FILES", "OPTIONS", "SYNOPSIS"] {
        assert!(man.contains(&format!(".SH {section}")), "cagepipe.8 has no {section} section");
    }
}

#[test]
fn cagepipe_toml_5_describes_every_key_of_the_shipped_example() {
    let _test = rig::need_nothing();
    let man = page("cagepipe.toml.5");
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/cagepipe.toml")).unwrap();
    let mut keys = 0;
    for line in example.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            assert!(man.contains(&format!("\\fB{key} ")), "cagepipe.toml.5 does not describe `{key}`");
            keys += 1;
        } else if line.starts_with('[') {
            assert!(man.contains(&format!(".SS {line}")), "cagepipe.toml.5 has no section {line}");
        }
    }
    assert!(keys >= 6, "the example has keys ({keys})");
}
