//! Writes the man pages and shell completions of `kairos-ext` and `kairos-extensionsd`
//! from their clap definitions, so the documentation cannot drift from the parsers.
//!
//! This is a separate, unshipped program rather than a build script or a hidden
//! subcommand: the shipped binaries stay free of roff and completion code, and a build
//! script would compile the whole dependency tree a second time for the host profile.
//! The definitions are compiled in from the shipped crates' own sources: `cli/src/args.rs`
//! (which must keep depending on nothing but clap and the D-Bus types crate) and the
//! service's `main.rs`.

mod commands;
mod completions;
mod pages;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

#[allow(dead_code, reason = "only the clap definitions are used here")]
#[path = "../../../cli/src/args.rs"]
mod kairos_ext_args;

#[allow(dead_code, reason = "only the clap definitions are used here")]
#[path = "../../../service/src/main.rs"]
mod kairos_extensionsd_main;

/// What to write where, relative to the output directory.
pub const OUTPUTS: [&str; 5] = [
    "man/kairos-ext.1",
    "man/kairos-extensionsd.8",
    "completions/kairos-ext.bash",
    "completions/_kairos-ext",
    "completions/kairos-ext.fish",
];

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kairos-extensions-gendoc: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: kairos-extensions-gendoc OUTDIR (writes {})", OUTPUTS.join(", "));
    };
    generate(Path::new(&out))
}

/// Writes every file of [`OUTPUTS`] under `out`.
pub fn generate(out: &Path) -> anyhow::Result<()> {
    let contents = [
        pages::kairos_ext()?,
        pages::kairos_extensionsd()?,
        completions::render(clap_complete::Shell::Bash)?,
        completions::render(clap_complete::Shell::Zsh)?,
        completions::render(clap_complete::Shell::Fish)?,
    ];
    for (relative, content) in OUTPUTS.iter().zip(contents) {
        let path: PathBuf = out.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The `kairos-ext` command as its users see it.
pub fn kairos_ext_command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = kairos_ext_args::Cli::command().bin_name("kairos-ext");
    cmd.build();
    cmd
}

/// The `kairos-extensionsd` command. Its derive takes name and description from the
/// crate it is compiled in, so both are set here.
pub fn kairos_extensionsd_command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = kairos_extensionsd_main::Args::command()
        .name("kairos-extensionsd")
        .bin_name("kairos-extensionsd")
        .about("the org.kairos.Extensions1 system service for systemd system extensions");
    cmd.build();
    cmd
}

/// The verbs of a command, as its help lists them (without clap's `help`).
pub fn verbs(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_output() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        generate(dir.path())?;
        for relative in OUTPUTS {
            let text = std::fs::read_to_string(dir.path().join(relative))?;
            assert!(text.len() > 200, "{relative} is nearly empty");
        }
        Ok(())
    }

    #[test]
    fn every_verb_is_in_the_page_and_every_completion() -> anyhow::Result<()> {
        let cmd = kairos_ext_command();
        let verbs = verbs(&cmd);
        assert!(verbs.len() >= 11 && verbs.iter().any(|v| v == "install"), "verbs: {verbs:?}");
        let page = pages::kairos_ext()?;
        let completions = [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish]
            .map(completions::render)
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        for verb in &verbs {
            assert!(has_section(&page, verb), "kairos-ext.1 has no section for {verb}");
            for text in &completions {
                assert!(text.contains(verb.as_str()), "a completion lacks {verb}");
            }
        }
        let daemon = pages::kairos_extensionsd()?;
        for verb in verbs_of_daemon() {
            assert!(has_section(&daemon, &verb), "kairos-extensionsd.8 has no section for {verb}");
        }
        Ok(())
    }

    /// Whether the page has a `.SS` heading for `verb`.
    fn has_section(page: &str, verb: &str) -> bool {
        page.lines()
            .filter_map(|l| l.strip_prefix(".SS "))
            .any(|heading| heading.trim_start_matches('"').split(' ').next() == Some(verb))
    }

    fn verbs_of_daemon() -> Vec<String> {
        verbs(&kairos_extensionsd_command())
    }

    #[test]
    fn an_optional_value_is_shown_attached() -> anyhow::Result<()> {
        let page = pages::kairos_ext()?;
        assert!(page.contains("\\fB\\-\\-json\\fR[=\\fIMODE\\fR]"), "{page}");
        Ok(())
    }

    #[test]
    fn the_daemon_is_named_after_its_binary() {
        let cmd = kairos_extensionsd_command();
        assert_eq!(cmd.get_name(), "kairos-extensionsd");
        assert!(cmd.get_arguments().any(|a| a.get_long() == Some("check-config")));
    }
}
