//! What the app remembers between runs, in the XDG config dir
//! (`~/.config/porthole/settings.json`).

use std::path::PathBuf;

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
}

pub fn path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "porthole").map(|d| d.config_dir().join("settings.json"))
}

pub fn load() -> Settings {
    path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn save(settings: &Settings) {
    let Some(path) = path() else { return };
    let result = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| {
            std::fs::write(
                &path,
                serde_json::to_vec_pretty(settings).unwrap_or_default(),
            )
        });
    if let Err(e) = result {
        tracing::warn!("cannot save settings to {}: {e}", path.display());
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
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        // A file from an older version, missing fields, still loads.
        let old: Settings = serde_json::from_str(r#"{"monitor": 2}"#).unwrap();
        assert_eq!(old.monitor, 2);
        assert_eq!(old.ask_approval, None);
    }
}
