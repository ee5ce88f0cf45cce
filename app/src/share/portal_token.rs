//! The ScreenCast portal's restore token, kept between shares so the next one does not ask
//! again: `$XDG_STATE_HOME/porthole/screencast-restore-token` (mode 0600). Each token is
//! good once: every share that got one from the portal writes the new one.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The file, or `None` without a home directory.
pub fn path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "porthole")
        .and_then(|d| d.state_dir().map(|s| s.join("screencast-restore-token")))
}

/// The saved token (`None` when there is none, or it cannot be read: the portal asks).
pub fn load(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// Saves `token` for the next share (`None`: forgets the old one, which is spent).
pub fn save(path: &Path, token: Option<&str>) -> std::io::Result<()> {
    let Some(token) = token else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_token_is_saved_privately_replaced_and_forgotten() {
        let dir = std::env::temp_dir().join(format!("porthole-token-{}", std::process::id()));
        let file = dir.join("state/porthole/screencast-restore-token");
        assert_eq!(load(&file), None);
        save(&file, Some("first-token")).unwrap();
        assert_eq!(load(&file).as_deref(), Some("first-token"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only its owner may read a token");
        save(&file, Some("second-token")).unwrap();
        assert_eq!(load(&file).as_deref(), Some("second-token"));
        save(&file, None).unwrap();
        assert_eq!(load(&file), None);
        save(&file, None).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
