//! `porthole generate man|completions DIR` (hidden): the man pages and the shell
//! completions, made from the same clap definitions that parse the command line, for
//! packaging/build-deb.sh. They are made from the built-in definitions, never with the
//! defaults of the user's configuration file, so a package does not depend on who built it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Command;
use clap_mangen::roff::{roman, Roff};

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// porthole.1 and a page for each command (porthole-share.1, …).
    Man {
        /// Directory to write them to (made if missing).
        dir: PathBuf,
        /// The date on the pages, YYYY-MM-DD (packaging passes the last commit's).
        #[arg(long, default_value = "")]
        date: String,
    },
    /// Bash (porthole.bash), zsh (_porthole) and fish (porthole.fish) completions.
    Completions {
        /// Directory to write them to (made if missing).
        dir: PathBuf,
    },
}

pub fn run(args: GenerateArgs, cmd: Command) -> anyhow::Result<()> {
    match args.what {
        What::Man { dir, date } => man_pages(cmd, &dir, &date),
        What::Completions { dir } => completions(cmd, &dir),
    }
}

/// Sections of the main page after the options and commands, as (heading, paragraphs);
/// `--help` shows the same text.
pub fn extra_sections() -> Vec<(&'static str, Vec<String>)> {
    crate::config::HELP_SECTIONS
        .iter()
        .map(|(heading, text)| (*heading, text.split("\n\n").map(str::to_owned).collect()))
        .collect()
}

fn man_pages(cmd: Command, dir: &Path, date: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let write = |name: String, page: Vec<u8>| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone()).date(date);
        let mut page = Vec::new();
        man.render(&mut page)?;
        write(man.get_filename(), page)?;
    }

    // The main page: clap_mangen's sections, then ours (not its generic "EXTRA" section).
    let man = clap_mangen::Man::new(cmd.clone()).date(date);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    let mut roff = Roff::default();
    for (heading, paragraphs) in extra_sections() {
        roff.control("SH", [heading]);
        for p in paragraphs {
            // Indented lines (examples, lists) keep their layout.
            if p.lines().any(|l| l.starts_with("  ")) {
                roff.control("nf", None::<&str>);
                roff.text([roman(&p)]);
                roff.control("fi", None::<&str>);
            } else {
                roff.control("PP", None::<&str>);
                roff.text([roman(p.replace('\n', " "))]);
            }
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    let see_also: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("porthole-{}(1)", s.get_name()))
        .collect();
    roff.text([roman(see_also.join(", "))]);
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    write(man.get_filename(), page)
}

fn completions(cmd: Command, dir: &Path) -> anyhow::Result<()> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let mut cmd = without_hidden_commands(&cmd);
    for (shell, name) in [
        (Shell::Bash, "porthole.bash"),
        (Shell::Zsh, "_porthole"),
        (Shell::Fish, "porthole.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "porthole", &mut out);
        let path = dir.join(name);
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `cmd` less its hidden subcommands (clap_complete's bash script would offer them).
fn without_hidden_commands(cmd: &Command) -> Command {
    let mut shown = Command::new(cmd.get_name().to_owned());
    if let Some(v) = cmd.get_version() {
        shown = shown.version(v.to_owned());
    }
    for arg in cmd.get_arguments() {
        shown = shown.arg(arg.clone());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        shown = shown.subcommand(sub.clone());
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_leave_out_hidden_commands() {
        let cmd = Command::new("porthole")
            .arg(
                clap::Arg::new("share")
                    .long("share")
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(Command::new("share").arg(clap::Arg::new("fps").long("fps")))
            .subcommand(Command::new("generate").hide(true));
        let mut shown = without_hidden_commands(&cmd);
        let mut out = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut shown, "porthole", &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("share"), "{script}");
        assert!(script.contains("--fps"), "{script}");
        assert!(!script.contains("generate"), "{script}");
    }
}
