//! Input forwarding: what the user does over the picture, as messages for the host
//! (pointer, buttons, wheel, physical keys, text), while this viewer holds control. Pure:
//! egui's events of a frame in, messages out.

use eframe::egui;
use net::Message;

/// Turns egui's input into the host's messages; remembers the modifiers last sent.
#[derive(Default)]
pub struct InputForwarder {
    /// Modifier state last sent to the host.
    modifiers: egui::Modifiers,
}

impl InputForwarder {
    /// The messages for this frame's `events` over the picture at `rect` (`hovered`: the
    /// pointer is over it), in order. `modifiers`: their state at the end of the frame.
    pub fn messages(
        &mut self,
        events: &[egui::Event],
        modifiers: egui::Modifiers,
        rect: egui::Rect,
        hovered: bool,
    ) -> Vec<Message> {
        let mut out = Vec::new();
        let norm = |p: egui::Pos2| {
            let fx = ((p.x - rect.left()) / rect.width()).clamp(0.0, 1.0);
            let fy = ((p.y - rect.top()) / rect.height()).clamp(0.0, 1.0);
            ((fx * 65535.0).round() as u16, (fy * 65535.0).round() as u16)
        };
        for ev in events {
            match ev {
                egui::Event::PointerMoved(p) if rect.contains(*p) => {
                    let (x, y) = norm(*p);
                    out.push(Message::PointerMove { x, y });
                }
                egui::Event::PointerButton {
                    pos,
                    button,
                    pressed,
                    ..
                } if rect.contains(*pos) || !pressed => {
                    let (x, y) = norm(*pos);
                    let button = match button {
                        egui::PointerButton::Primary => 0,
                        egui::PointerButton::Middle => 1,
                        egui::PointerButton::Secondary => 2,
                        egui::PointerButton::Extra1 => 3,
                        egui::PointerButton::Extra2 => 4,
                    };
                    out.push(Message::PointerButton {
                        button,
                        pressed: *pressed,
                        x,
                        y,
                    });
                }
                egui::Event::MouseWheel { delta, .. } if hovered => {
                    let dy = (-delta.y * 120.0).clamp(-32768.0, 32767.0) as i16;
                    let dx = (-delta.x * 120.0).clamp(-32768.0, 32767.0) as i16;
                    out.push(Message::Wheel { dx, dy });
                }
                egui::Event::Key {
                    key,
                    physical_key,
                    pressed,
                    modifiers,
                    ..
                } => {
                    // Modifiers as they were for this key, before it (fast typing can press
                    // and release Shift within one frame).
                    self.sync_modifiers(*modifiers, &mut out);
                    if let Some(code) = dom_code(physical_key.unwrap_or(*key)) {
                        out.push(Message::Key {
                            pressed: *pressed,
                            code: code.to_owned(),
                        });
                    }
                }
                egui::Event::Text(text) if !text.is_empty() && !text.is_ascii() => {
                    // Characters with no physical key on a US layout travel as text.
                    out.push(Message::Text { text: text.clone() });
                }
                _ => {}
            }
        }
        self.sync_modifiers(modifiers, &mut out);
        out
    }

    /// egui reports modifiers as state, not as key events: the presses and releases of
    /// Shift, Ctrl, Alt and Super as physical keys when the state changes.
    fn sync_modifiers(&mut self, now: egui::Modifiers, out: &mut Vec<Message>) {
        let before = std::mem::replace(&mut self.modifiers, now);
        for (was, is, code) in [
            (before.shift, now.shift, "ShiftLeft"),
            (before.ctrl, now.ctrl, "ControlLeft"),
            (before.alt, now.alt, "AltLeft"),
            (before.mac_cmd, now.mac_cmd, "MetaLeft"),
        ] {
            if was != is {
                out.push(Message::Key {
                    pressed: is,
                    code: code.to_owned(),
                });
            }
        }
    }
}

/// egui's logical key → DOM `KeyboardEvent.code` (the physical key on a US layout).
fn dom_code(key: egui::Key) -> Option<&'static str> {
    use egui::Key::*;
    Some(match key {
        A => "KeyA",
        B => "KeyB",
        C => "KeyC",
        D => "KeyD",
        E => "KeyE",
        F => "KeyF",
        G => "KeyG",
        H => "KeyH",
        I => "KeyI",
        J => "KeyJ",
        K => "KeyK",
        L => "KeyL",
        M => "KeyM",
        N => "KeyN",
        O => "KeyO",
        P => "KeyP",
        Q => "KeyQ",
        R => "KeyR",
        S => "KeyS",
        T => "KeyT",
        U => "KeyU",
        V => "KeyV",
        W => "KeyW",
        X => "KeyX",
        Y => "KeyY",
        Z => "KeyZ",
        Num0 => "Digit0",
        Num1 => "Digit1",
        Num2 => "Digit2",
        Num3 => "Digit3",
        Num4 => "Digit4",
        Num5 => "Digit5",
        Num6 => "Digit6",
        Num7 => "Digit7",
        Num8 => "Digit8",
        Num9 => "Digit9",
        Enter => "Enter",
        Escape => "Escape",
        Backspace => "Backspace",
        Tab => "Tab",
        Space => "Space",
        Delete => "Delete",
        Insert => "Insert",
        Home => "Home",
        End => "End",
        PageUp => "PageUp",
        PageDown => "PageDown",
        ArrowUp => "ArrowUp",
        ArrowDown => "ArrowDown",
        ArrowLeft => "ArrowLeft",
        ArrowRight => "ArrowRight",
        Minus => "Minus",
        Equals => "Equal",
        Comma => "Comma",
        Period => "Period",
        Slash => "Slash",
        Backslash => "Backslash",
        Semicolon => "Semicolon",
        Quote => "Quote",
        Backtick => "Backquote",
        OpenBracket => "BracketLeft",
        CloseBracket => "BracketRight",
        F1 => "F1",
        F2 => "F2",
        F4 => "F4",
        F5 => "F5",
        F6 => "F6",
        F7 => "F7",
        F8 => "F8",
        F9 => "F9",
        F10 => "F10",
        F11 => "F11",
        F12 => "F12",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: egui::Key, pressed: bool, modifiers: egui::Modifiers) -> egui::Event {
        egui::Event::Key {
            key,
            physical_key: None,
            pressed,
            repeat: false,
            modifiers,
        }
    }

    fn names(messages: &[Message]) -> Vec<String> {
        messages
            .iter()
            .map(|m| match m {
                Message::Key { pressed, code } => {
                    format!("{code} {}", if *pressed { "down" } else { "up" })
                }
                Message::PointerMove { x, y } => format!("move {x},{y}"),
                Message::PointerButton {
                    button,
                    pressed,
                    x,
                    y,
                } => {
                    format!(
                        "button {button} {} at {x},{y}",
                        if *pressed { "down" } else { "up" }
                    )
                }
                Message::Wheel { dx, dy } => format!("wheel {dx},{dy}"),
                Message::Text { text } => format!("text {text}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn pointer_and_keys_become_messages_in_order_with_shift_around_its_key() {
        let rect = egui::Rect::from_min_size(egui::pos2(100.0, 50.0), egui::vec2(200.0, 100.0));
        let shift = egui::Modifiers::SHIFT;
        let none = egui::Modifiers::NONE;
        let events = [
            egui::Event::PointerMoved(egui::pos2(200.0, 100.0)),
            // Outside the picture: not sent.
            egui::Event::PointerMoved(egui::pos2(10.0, 10.0)),
            egui::Event::PointerButton {
                pos: egui::pos2(300.0, 150.0),
                button: egui::PointerButton::Secondary,
                pressed: true,
                modifiers: none,
            },
            // A release outside is still sent (nothing stays held).
            egui::Event::PointerButton {
                pos: egui::pos2(0.0, 0.0),
                button: egui::PointerButton::Secondary,
                pressed: false,
                modifiers: none,
            },
            key(egui::Key::A, true, shift),
            key(egui::Key::A, false, shift),
            key(egui::Key::B, true, none),
            egui::Event::Text("ö".into()),
            egui::Event::Text("b".into()),
        ];
        let mut input = InputForwarder::default();
        let out = input.messages(&events, none, rect, false);
        assert_eq!(
            names(&out),
            [
                "move 32768,32768",
                "button 2 down at 65535,65535",
                "button 2 up at 0,0",
                "ShiftLeft down",
                "KeyA down",
                "KeyA up",
                "ShiftLeft up",
                "KeyB down",
                "text ö",
            ]
        );
        // The wheel only over the picture.
        let wheel = [egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Line,
            delta: egui::vec2(0.0, 1.0),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
            modifiers: none,
        }];
        assert!(input.messages(&wheel, none, rect, false).is_empty());
        assert_eq!(
            names(&input.messages(&wheel, none, rect, true)),
            ["wheel 0,-120"]
        );
        // A modifier held at the end of a frame with no key event is pressed once.
        assert_eq!(
            names(&input.messages(&[], egui::Modifiers::CTRL, rect, false)),
            ["ControlLeft down"]
        );
        assert!(input
            .messages(&[], egui::Modifiers::CTRL, rect, false)
            .is_empty());
    }
}
