//! What the app remembers between runs, in the XDG config dir
//! (`~/.config/porthole/settings.json`). Never an access code: a remembered link has its
//! `#code=` taken out, and the file is written 0600 (in a 0700 directory) by a rename, so
//! no other local user can read it and a crash leaves the old file or the new one.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub monitor: usize,
    pub audio: String,
    pub allow_control: bool,
    pub allow_clipboard: bool,
    pub ask_approval: Option<bool>,
    pub last_address: String,
    /// The quality preset's name (`Quality::name`); empty: the default.
    pub quality: String,
    /// The name the host sees for this viewer; empty: this computer's name.
    pub viewer_name: String,
}

pub fn path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "porthole").map(|d| d.config_dir().join("settings.json"))
}

pub fn load() -> Settings {
    let mut s: Settings = path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    // A file written by an older version may hold a link with its code.
    s.last_address = without_code(&s.last_address);
    s
}

pub fn save(settings: &Settings) {
    let Some(path) = path() else { return };
    if let Err(e) = save_to(&path, settings) {
        tracing::warn!("cannot save settings to {}: {e}", path.display());
    }
}

/// Writes `settings` (without any code) to `path`: a 0600 temporary file in the same
/// directory, synced, then renamed over the old one.
pub fn save_to(path: &Path, settings: &Settings) -> std::io::Result<()> {
    let mut settings = settings.clone();
    settings.last_address = without_code(&settings.last_address);
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no directory"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".settings.json.{}.tmp", std::process::id()));
    let written = write_private(
        &tmp,
        &serde_json::to_vec_pretty(&settings).unwrap_or_default(),
    )
    .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes `bytes` to a file only its owner can read, and syncs it.
fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)?;
    // An existing file keeps its mode: make sure.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `link` without a `code=` in its fragment (`http://h:7380/#code=X` → `http://h:7380/`).
pub fn without_code(link: &str) -> String {
    let Some((base, fragment)) = link.split_once('#') else {
        return link.to_owned();
    };
    let kept: Vec<&str> = fragment
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("code="))
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}#{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_tolerate_old_files() {
        let s = Settings {
            monitor: 1,
            audio: "none".into(),
            allow_control: true,
            allow_clipboard: false,
            ask_approval: Some(false),
            last_address: "http://10.0.0.2:7380/".into(),
            quality: "Smooth motion".into(),
            viewer_name: "Ana's laptop".into(),
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        // A file from an older version, missing fields, still loads.
        let old: Settings = serde_json::from_str(r#"{"monitor": 2}"#).unwrap();
        assert_eq!(old.monitor, 2);
        assert_eq!(old.ask_approval, None);
        assert_eq!(old.quality, "", "no preset: the default");
    }

    #[test]
    fn saved_settings_are_private_and_hold_no_code() {
        let dir = std::env::temp_dir().join(format!("porthole-settings-{}", std::process::id()));
        let path = dir.join("porthole").join("settings.json");
        // An old file, world-readable, with a code in it.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"last_address": "http://h:1/#code=oldsecret1"}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = Settings {
            last_address: "http://10.0.0.2:7380/#code=s3cret-code&x=1".into(),
            ..Default::default()
        };
        save_to(&path, &s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("oldsecret"),
            "{text}"
        );
        assert!(text.contains("http://10.0.0.2:7380/#x=1"), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "settings.json is private");
        // Nothing left behind but the file.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("settings.json")]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(without_code("http://h/#code=abc"), "http://h/");
        assert_eq!(without_code("h:7380"), "h:7380");
    }
}
