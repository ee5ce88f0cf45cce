//! Secrets given to the CLI (the access code, the TURN password) without putting them in
//! argv, which every local user can read (`ps`, `/proc/PID/cmdline`): from an environment
//! variable (`PORTHOLE_CODE`, `PORTHOLE_TURN_PASSWORD`), a file (`--code-file PATH`) or
//! standard input (`--code-file -`). The plain flag still works, with a warning.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};

pub const CODE_ENV: &str = "PORTHOLE_CODE";
pub const TURN_PASSWORD_ENV: &str = "PORTHOLE_TURN_PASSWORD";

/// Largest secret file read (a code or a password is a line).
const MAX_SECRET_BYTES: u64 = 4096;

/// Where one secret may come from.
pub struct SecretSources<'a> {
    /// What it is, for messages: "access code".
    pub what: &'a str,
    /// The plain flag, e.g. `--code`, and its value.
    pub flag: (&'a str, Option<&'a str>),
    /// The file flag, e.g. `--code-file`, and its value (`-` = standard input).
    pub file: (&'a str, Option<&'a Path>),
    /// The environment variable, e.g. `PORTHOLE_CODE`.
    pub env: &'a str,
}

/// The secret, if one was given: the file, else the plain flag (with a warning), else the
/// environment. Giving both flags is an error. The variable is taken out of this process's
/// environment, so programs it starts (Xvfb) do not inherit it.
pub fn resolve(s: &SecretSources) -> anyhow::Result<Option<String>> {
    let from_env = std::env::var(s.env).ok();
    if from_env.is_some() {
        std::env::remove_var(s.env);
    }
    let (flag, value) = s.flag;
    let (file_flag, file) = s.file;
    if value.is_some() && file.is_some() {
        bail!("give the {} with {flag} or {file_flag}, not both", s.what);
    }
    if let Some(path) = file {
        return read_secret(path)
            .with_context(|| format!("{file_flag} {}", path.display()))
            .map(Some);
    }
    if let Some(v) = value {
        tracing::warn!(
            "{flag} puts the {} in the command line, which other users of this machine can \
             read (ps, /proc); use {} or {file_flag} instead",
            s.what,
            s.env
        );
        return Ok(Some(v.to_owned()));
    }
    Ok(from_env.filter(|v| !v.is_empty()))
}

/// The access code from `--code`, `--code-file` or `$PORTHOLE_CODE`.
pub fn code(flag: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    resolve(&SecretSources {
        what: "access code",
        flag: ("--code", flag),
        file: ("--code-file", file),
        env: CODE_ENV,
    })
}

/// Warns when a link given on the command line carries its code (`#code=`), which is as
/// visible there as `--code`.
pub fn warn_if_link_has_code(link: &str) {
    if link
        .split_once('#')
        .is_some_and(|(_, f)| f.split('&').any(|kv| kv.starts_with("code=")))
    {
        tracing::warn!(
            "the link's #code= is in the command line, which other users of this machine can \
             read (ps, /proc); give the link without it and the code in ${CODE_ENV} or with \
             --code-file"
        );
    }
}

/// The first line of `path` (`-`: standard input), without its line ending.
fn read_secret(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_SECRET_BYTES)
            .read_to_string(&mut text)
            .context("reading standard input")?;
    } else {
        std::fs::File::open(path)?
            .take(MAX_SECRET_BYTES)
            .read_to_string(&mut text)?;
    }
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        bail!("empty");
    }
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_its_first_line_and_flags_exclude_each_other() {
        let dir = std::env::temp_dir().join(format!("porthole-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("code");
        std::fs::write(&file, "abcd-efgh-1234\r\nignored\n").unwrap();
        let sources = |flag, file| SecretSources {
            what: "access code",
            flag: ("--code", flag),
            file: ("--code-file", file),
            env: "PORTHOLE_TEST_SECRET_UNSET",
        };
        assert_eq!(
            resolve(&sources(None, Some(&file))).unwrap().as_deref(),
            Some("abcd-efgh-1234")
        );
        assert_eq!(
            resolve(&sources(Some("x"), None)).unwrap().as_deref(),
            Some("x")
        );
        let both = resolve(&sources(Some("x"), Some(&file))).unwrap_err();
        assert_eq!(
            both.to_string(),
            "give the access code with --code or --code-file, not both"
        );
        assert_eq!(resolve(&sources(None, None)).unwrap(), None);
        std::fs::write(&file, "\n").unwrap();
        let err = resolve(&sources(None, Some(&file))).unwrap_err();
        assert!(format!("{err:#}").contains("empty"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
