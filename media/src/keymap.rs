//! Physical keys: DOM `KeyboardEvent.code` → Linux evdev code → X keycode.
//! The one table Porthole has; X servers using evdev/XKB keycodes (Xorg, Xvfb, Xwayland)
//! number keys as evdev + 8.

/// (DOM `KeyboardEvent.code`, evdev code from linux/input-event-codes.h)
const TABLE: &[(&str, u16)] = &[
    ("Escape", 1),
    ("Digit1", 2),
    ("Digit2", 3),
    ("Digit3", 4),
    ("Digit4", 5),
    ("Digit5", 6),
    ("Digit6", 7),
    ("Digit7", 8),
    ("Digit8", 9),
    ("Digit9", 10),
    ("Digit0", 11),
    ("Minus", 12),
    ("Equal", 13),
    ("Backspace", 14),
    ("Tab", 15),
    ("KeyQ", 16),
    ("KeyW", 17),
    ("KeyE", 18),
    ("KeyR", 19),
    ("KeyT", 20),
    ("KeyY", 21),
    ("KeyU", 22),
    ("KeyI", 23),
    ("KeyO", 24),
    ("KeyP", 25),
    ("BracketLeft", 26),
    ("BracketRight", 27),
    ("Enter", 28),
    ("ControlLeft", 29),
    ("KeyA", 30),
    ("KeyS", 31),
    ("KeyD", 32),
    ("KeyF", 33),
    ("KeyG", 34),
    ("KeyH", 35),
    ("KeyJ", 36),
    ("KeyK", 37),
    ("KeyL", 38),
    ("Semicolon", 39),
    ("Quote", 40),
    ("Backquote", 41),
    ("ShiftLeft", 42),
    ("Backslash", 43),
    ("KeyZ", 44),
    ("KeyX", 45),
    ("KeyC", 46),
    ("KeyV", 47),
    ("KeyB", 48),
    ("KeyN", 49),
    ("KeyM", 50),
    ("Comma", 51),
    ("Period", 52),
    ("Slash", 53),
    ("ShiftRight", 54),
    ("NumpadMultiply", 55),
    ("AltLeft", 56),
    ("Space", 57),
    ("CapsLock", 58),
    ("F1", 59),
    ("F2", 60),
    ("F3", 61),
    ("F4", 62),
    ("F5", 63),
    ("F6", 64),
    ("F7", 65),
    ("F8", 66),
    ("F9", 67),
    ("F10", 68),
    ("NumLock", 69),
    ("ScrollLock", 70),
    ("Numpad7", 71),
    ("Numpad8", 72),
    ("Numpad9", 73),
    ("NumpadSubtract", 74),
    ("Numpad4", 75),
    ("Numpad5", 76),
    ("Numpad6", 77),
    ("NumpadAdd", 78),
    ("Numpad1", 79),
    ("Numpad2", 80),
    ("Numpad3", 81),
    ("Numpad0", 82),
    ("NumpadDecimal", 83),
    ("IntlBackslash", 86),
    ("F11", 87),
    ("F12", 88),
    ("IntlRo", 89),
    ("Convert", 92),
    ("KanaMode", 93),
    ("NonConvert", 94),
    ("NumpadEnter", 96),
    ("ControlRight", 97),
    ("NumpadDivide", 98),
    ("PrintScreen", 99),
    ("AltRight", 100),
    ("Home", 102),
    ("ArrowUp", 103),
    ("PageUp", 104),
    ("ArrowLeft", 105),
    ("ArrowRight", 106),
    ("End", 107),
    ("ArrowDown", 108),
    ("PageDown", 109),
    ("Insert", 110),
    ("Delete", 111),
    ("AudioVolumeMute", 113),
    ("AudioVolumeDown", 114),
    ("AudioVolumeUp", 115),
    ("NumpadEqual", 117),
    ("Pause", 119),
    ("NumpadComma", 121),
    ("Lang1", 122),
    ("Lang2", 123),
    ("IntlYen", 124),
    ("MetaLeft", 125),
    ("MetaRight", 126),
    ("ContextMenu", 127),
    ("MediaTrackNext", 163),
    ("MediaPlayPause", 164),
    ("MediaTrackPrevious", 165),
    ("MediaStop", 166),
    ("F13", 183),
    ("F14", 184),
    ("F15", 185),
    ("F16", 186),
    ("F17", 187),
    ("F18", 188),
    ("F19", 189),
    ("F20", 190),
    ("F21", 191),
    ("F22", 192),
    ("F23", 193),
    ("F24", 194),
];

/// The evdev code of a DOM `KeyboardEvent.code`.
pub fn evdev_code(dom_code: &str) -> Option<u16> {
    TABLE.iter().find(|(c, _)| *c == dom_code).map(|(_, e)| *e)
}

/// The X keycode of a DOM `KeyboardEvent.code` (evdev + 8).
pub fn x_keycode(dom_code: &str) -> Option<u8> {
    evdev_code(dom_code).and_then(|e| u8::try_from(e + 8).ok())
}

/// Every DOM code the table knows, for other front ends (the native viewer) to check against.
pub fn dom_codes() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_keys_map_to_their_x_keycodes() {
        // `xmodmap -pk` on an evdev X server: a=38, Return=36, Shift_L=50, Control_L=37.
        assert_eq!(x_keycode("KeyA"), Some(38));
        assert_eq!(x_keycode("Enter"), Some(36));
        assert_eq!(x_keycode("ShiftLeft"), Some(50));
        assert_eq!(x_keycode("ControlLeft"), Some(37));
        assert_eq!(x_keycode("Space"), Some(65));
        assert_eq!(x_keycode("NoSuchKey"), None);
    }

    #[test]
    fn table_has_no_duplicates() {
        let mut codes: Vec<&str> = dom_codes().collect();
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n);
        let mut evdev: Vec<u16> = TABLE.iter().map(|(_, e)| *e).collect();
        evdev.sort_unstable();
        evdev.dedup();
        assert_eq!(evdev.len(), n);
    }
}
