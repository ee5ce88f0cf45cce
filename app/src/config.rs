//! Defaults for the command line from a configuration file,
//! `$XDG_CONFIG_HOME/porthole/config.toml` (or the file `$PORTHOLE_CONFIG` names).
//!
//! The file only replaces clap's built-in default values before the command line is
//! parsed, so the precedence is clap's own: command line > environment (options that
//! read a variable) > this file > built-in defaults, and `--help` shows the defaults in
//! force. Every value is checked with the option's own parser before use, so a bad value
//! is reported with the file, the section and the key, not as a command-line error.
//!
//! Keys are the long option names (`allow-control` or `allow_control`); top-level keys set
//! options of `porthole` itself, a `[share]`, `[view]`, `[record]`, … table those of that
//! command.

use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};

/// What the man page says about the file and the environment, as (heading, text); a
/// blank line separates paragraphs, and paragraphs with indented lines keep their layout.
/// `porthole --help` shows the same text.
pub const HELP_SECTIONS: &[(&str, &str)] = &[
    (
        "CONFIGURATION FILE",
        "\
$XDG_CONFIG_HOME/porthole/config.toml (~/.config/porthole/config.toml), or the file
named by $PORTHOLE_CONFIG (PORTHOLE_CONFIG=/dev/null: none), gives defaults for the
options of every command: top-level keys for porthole itself, a [share], [view],
[record], [list] or [bench] table for that command. Keys are the long option names;
values are strings, numbers, booleans, or arrays for repeatable options. For example:

  listen = \"0.0.0.0:7380\"     # where the app's shares listen
  [share]
  fps = 60
  audio = \"none\"
  allow-control = true
  stun = [\"stun:stun.example.org:3478\"]
  [view]
  record = \"/home/me/Videos/last-view.mp4\"

The command line overrides the environment, which overrides the file, which overrides
the built-in defaults; a flag set to true in the file stays on. An unknown key or a bad
value is an error that names the file and the key. A secret such as code or
turn-password belongs in a file only you can read: porthole warns when others can.",
    ),
    (
        "ENVIRONMENT",
        // (Not a `\` continuation: it would eat the first line's indentation.)
        "  PORTHOLE_CONFIG  the configuration file to read instead of the default one
  PORTHOLE_LOG     log filter, e.g. debug or info,webrtc=debug (overrides -v)
  PORTHOLE_REALTIME=0  keep the video encoding threads at normal priority (by default
                   they ask for SCHED_FIFO priority 1, granted with CAP_SYS_NICE or an
                   rtprio limit of at least 1)
  DISPLAY          the X display porthole share shares without --display
  PULSE_SERVER     the PulseAudio server whose output --audio default shares

Options that also read an environment variable say so in their description.",
    ),
    (
        "FILES",
        "  ~/.config/porthole/config.toml    defaults for the options (above)
  ~/.config/porthole/settings.json  what the app remembers between runs
  /usr/lib/systemd/user/porthole-share.service
      an unattended share of the session's display, off until
      systemctl --user enable --now porthole-share",
    ),
];

/// [`HELP_SECTIONS`] as `--help` text.
pub fn help_text() -> String {
    let mut out = String::new();
    for (heading, text) in HELP_SECTIONS {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(heading);
        out.push_str(":\n");
        for line in text.lines() {
            if !line.is_empty() {
                out.push_str("  ");
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Where the configuration file is: `$PORTHOLE_CONFIG`, else the XDG config directory.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PORTHOLE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "porthole").map(|d| d.config_dir().join("config.toml"))
}

/// Why the configuration file cannot be used; the text names the file, section and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("{}: cannot read it: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// The file is not valid TOML.
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    /// A table that names no command (`known`: the ones there are).
    #[error("[{key}]: no such command (tables: {})", known.join(", "))]
    NoSuchCommand { key: String, known: Vec<String> },
    /// A key that names no option of its command (`at`: "[section] key").
    #[error("{at}: no such option (known: {})", known.join(", "))]
    NoSuchOption { at: String, known: Vec<String> },
    /// A value the option's own parser refuses.
    #[error("{at} = {value}: {reason}")]
    BadValue {
        at: String,
        value: String,
        reason: String,
    },
    /// Any of the above, in the file at `path`.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ConfigError>,
    },
}

/// Reads the file; `None` when there is none. A file that cannot be read or parsed is an
/// error (a typo must not silently fall back to the defaults).
pub fn load(path: &Path) -> Result<Option<toml::Table>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    warn_if_secret_is_readable(path, &table);
    Ok(Some(table))
}

const SECRET_KEYS: &[&str] = &["code", "turn-password"];

fn warn_if_secret_is_readable(path: &Path, table: &toml::Table) {
    use std::os::unix::fs::PermissionsExt;
    fn has_secret(t: &toml::Table) -> bool {
        t.iter().any(|(k, v)| match v {
            toml::Value::Table(sub) => has_secret(sub),
            _ => SECRET_KEYS.contains(&normalize(k).as_str()),
        })
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 && has_secret(table) {
        eprintln!(
            "porthole: warning: {} holds a secret but others can read it (chmod 600 it)",
            path.display()
        );
    }
}

fn normalize(key: &str) -> String {
    key.replace('_', "-")
}

/// Makes the values in `table` the default values of `cmd`'s options (and, for tables,
/// of its subcommands' options). `section` names where `table` is, for messages.
pub fn apply(mut cmd: Command, table: &toml::Table, section: &str) -> Result<Command, ConfigError> {
    let at = |key: &str| {
        if section.is_empty() {
            key.to_owned()
        } else {
            format!("[{section}] {key}")
        }
    };
    for (key, value) in table {
        if let toml::Value::Table(sub) = value {
            let visible = cmd
                .get_subcommands()
                .any(|c| c.get_name() == key && !c.is_hide_set());
            if !visible {
                let known: Vec<_> = cmd
                    .get_subcommands()
                    .filter(|c| !c.is_hide_set())
                    .map(|c| c.get_name().to_owned())
                    .collect();
                return Err(ConfigError::NoSuchCommand {
                    key: key.clone(),
                    known,
                });
            }
            let path = if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            };
            let sub_cmd = cmd.find_subcommand(key).expect("checked above").clone();
            let sub_cmd = apply(sub_cmd, sub, &path)?;
            cmd = cmd.mut_subcommand(key, |_| sub_cmd);
            continue;
        }
        let long = normalize(key);
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && !a.is_positional())
        else {
            let known = cmd
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !matches!(*l, "help" | "version"))
                .map(str::to_owned)
                .collect();
            return Err(ConfigError::NoSuchOption { at: at(key), known });
        };
        let values = values_for(arg, value).map_err(|reason| ConfigError::BadValue {
            at: at(key),
            value: value.to_string(),
            reason,
        })?;
        let id = arg.get_id().clone();
        cmd = cmd.mut_arg(id, |a| a.default_values(values));
    }
    Ok(cmd)
}

/// The default value(s) `value` stands for, checked with the option's own parser.
fn values_for(arg: &clap::Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let scalar = |v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(format!(
                "expected a string or a number, not {}",
                other.type_str()
            )),
        }
    };
    let values = match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            toml::Value::Boolean(b) => return Ok(vec![b.to_string()]),
            other => return Err(format!("expected true or false, not {}", other.type_str())),
        },
        ArgAction::Set => vec![scalar(value)?],
        ArgAction::Append => match value {
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<_, _>>()?,
            v => vec![scalar(v)?],
        },
        _ => return Err("this option cannot be set in the configuration file".into()),
    };
    // Parse each value as if it were given on the command line, with that option alone.
    // (A fresh option with the same parser: the real one may name others, e.g. in
    // `conflicts_with`, that the probe does not have.)
    let long = arg.get_long().unwrap_or_default();
    let mut probe_arg = clap::Arg::new("value")
        .long(long.to_owned())
        .value_parser(arg.get_value_parser().clone());
    if let Some(names) = arg.get_value_names() {
        probe_arg = probe_arg.value_names(names.to_vec());
    }
    let probe = Command::new("config").no_binary_name(true).arg(probe_arg);
    for v in &values {
        if let Err(e) = probe
            .clone()
            .try_get_matches_from([format!("--{long}={v}")])
        {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            return Err(first.trim_start_matches("error: ").to_owned());
        }
    }
    Ok(values)
}

/// `cmd` with the defaults of the configuration file applied, if there is one.
pub fn command_with_defaults(cmd: Command) -> Result<Command, ConfigError> {
    let Some(path) = path() else {
        return Ok(cmd);
    };
    match load(&path)? {
        None => Ok(cmd),
        Some(table) => apply(cmd, &table, "").map_err(|error| ConfigError::InFile {
            path,
            error: Box::new(error),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgMatches};

    fn cli() -> Command {
        Command::new("porthole")
            .arg(Arg::new("listen").long("listen"))
            .subcommand(
                Command::new("share")
                    .arg(
                        Arg::new("fps")
                            .long("fps")
                            .default_value("30")
                            .value_parser(clap::value_parser!(u32).range(1..=120)),
                    )
                    .arg(Arg::new("audio").long("audio").default_value("default"))
                    .arg(
                        Arg::new("secret")
                            .long("turn-password")
                            .env("PORTHOLE_CONFIG_TEST_SECRET")
                            .default_value(""),
                    )
                    .arg(
                        Arg::new("allow_control")
                            .long("allow-control")
                            .action(ArgAction::SetTrue),
                    )
                    .arg(Arg::new("stun").long("stun").action(ArgAction::Append)),
            )
            .subcommand(Command::new("view").arg(Arg::new("url").required(true)))
            .subcommand(Command::new("generate").hide(true))
    }

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn share(cmd: Command, argv: &[&str]) -> ArgMatches {
        let m = cmd
            .try_get_matches_from(["porthole", "share"].iter().chain(argv))
            .unwrap();
        m.subcommand_matches("share").unwrap().clone()
    }

    fn get(m: &ArgMatches, id: &str) -> String {
        m.get_one::<String>(id).cloned().unwrap_or_default()
    }

    #[test]
    fn the_command_line_beats_the_file_which_beats_the_built_in_default() {
        let cmd = apply(cli(), &table("[share]\nfps = 60\n"), "").unwrap();
        assert_eq!(share(cmd.clone(), &[]).get_one::<u32>("fps"), Some(&60));
        assert_eq!(
            share(cmd, &["--fps", "15"]).get_one::<u32>("fps"),
            Some(&15)
        );
        assert_eq!(share(cli(), &[]).get_one::<u32>("fps"), Some(&30));
        // Options the file does not name keep their defaults.
        let cmd = apply(cli(), &table("[share]\nfps = 60\n"), "").unwrap();
        assert_eq!(get(&share(cmd, &[]), "audio"), "default");
    }

    #[test]
    fn the_environment_beats_the_file() {
        let file = table("[share]\nturn-password = \"file\"\n");
        let cmd = apply(cli(), &file, "").unwrap();
        assert_eq!(get(&share(cmd, &[]), "secret"), "file");
        // clap reads the variable when the option is defined, as main() does at start.
        std::env::set_var("PORTHOLE_CONFIG_TEST_SECRET", "env");
        let cmd = apply(cli(), &file, "").unwrap();
        std::env::remove_var("PORTHOLE_CONFIG_TEST_SECRET");
        let from_env = get(&share(cmd.clone(), &[]), "secret");
        let from_cli = get(&share(cmd, &["--turn-password", "cli"]), "secret");
        assert_eq!(from_env, "env");
        assert_eq!(from_cli, "cli");
    }

    #[test]
    fn flags_lists_and_top_level_options() {
        let t = table(
            "listen = \"127.0.0.1:9\"\n[share]\nallow_control = true\nstun = [\"stun:a\", \"stun:b\"]\n",
        );
        let cmd = apply(cli(), &t, "").unwrap();
        let m = share(cmd.clone(), &[]);
        assert!(m.get_flag("allow_control"));
        let stun: Vec<_> = m.get_many::<String>("stun").unwrap().cloned().collect();
        assert_eq!(stun, ["stun:a", "stun:b"]);
        // Given on the command line, a repeatable option replaces the file's list.
        let m = share(cmd.clone(), &["--stun", "stun:c"]);
        let stun: Vec<_> = m.get_many::<String>("stun").unwrap().cloned().collect();
        assert_eq!(stun, ["stun:c"]);
        let top = cmd.try_get_matches_from(["porthole"]).unwrap();
        assert_eq!(get(&top, "listen"), "127.0.0.1:9");
    }

    #[test]
    fn mistakes_are_named_by_section_and_key() {
        let err = |text: &str| apply(cli(), &table(text), "").unwrap_err().to_string();
        let e = err("[share]\nfps = 500\n");
        assert!(e.starts_with("[share] fps = 500: "), "{e}");
        assert!(e.contains("1..=120"), "{e}");
        let e = err("[share]\nfpss = 5\n");
        assert!(e.starts_with("[share] fpss: no such option"), "{e}");
        assert!(e.contains("fps"), "{e}");
        let e = err("[share]\nallow-control = \"yes\"\n");
        assert!(e.contains("expected true or false"), "{e}");
        let e = err("[share]\naudio = [\"a\", \"b\"]\n");
        assert!(e.contains("expected a string or a number"), "{e}");
        let e = err("[shar]\nfps = 5\n");
        assert!(e.starts_with("[shar]: no such command"), "{e}");
        // Positional arguments and hidden commands are not configuration.
        assert!(err("[view]\nurl = \"x\"\n").contains("no such option"));
        assert!(err("[generate]\nx = 1\n").contains("no such command"));
    }

    #[test]
    fn files_that_are_missing_broken_or_secret() {
        let dir = std::env::temp_dir().join(format!("porthole-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir.join("none.toml")), Ok(None));
        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "[share\nfps = 1\n").unwrap();
        let e = load(&broken).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.starts_with(&broken.display().to_string()), "{e}");
        let ok = dir.join("ok.toml");
        std::fs::write(&ok, "[share]\nfps = 10\n").unwrap();
        assert_eq!(
            load(&ok).unwrap().unwrap()["share"]["fps"].as_integer(),
            Some(10)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
