//! Whether the native viewer may send this machine's clipboard to the host. Having the
//! clipboard right means the host *offers* to take it; what the user copies here (a
//! password, a private note) goes only when the user says so: per session, off by default,
//! and a copy made while it is off asks first. Pure: the viewer feeds it local copies and
//! the user's answers, and sends what comes out.

use eframe::egui;

/// The user's answer to "send what you copied?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// This copy only.
    Send,
    /// This copy, and every later one this session (turns the toggle on).
    Always,
    /// Not this copy.
    Decline,
}

#[derive(Debug)]
pub struct ClipboardConsent<T> {
    allowed: bool,
    /// The latest copy made while not allowed, waiting for the user's answer.
    pending: Option<T>,
}

impl<T> Default for ClipboardConsent<T> {
    fn default() -> Self {
        Self {
            allowed: false,
            pending: None,
        }
    }
}

impl<T> ClipboardConsent<T> {
    /// Whether local copies go to the host without asking (the toolbar toggle).
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Sets the toggle. Turning it off forgets a copy waiting for an answer.
    pub fn set_allowed(&mut self, on: bool) {
        self.allowed = on;
        if !on {
            self.pending = None;
        }
    }

    /// Something was copied on this machine: returns it when it may go now; otherwise it
    /// waits for the user's answer (only the latest copy waits).
    pub fn local_copy(&mut self, content: T) -> Option<T> {
        if self.allowed {
            return Some(content);
        }
        self.pending = Some(content);
        None
    }

    pub fn pending(&self) -> Option<&T> {
        self.pending.as_ref()
    }

    /// The user answered the question about the waiting copy: returns it if it may go.
    pub fn answer(&mut self, choice: Choice) -> Option<T> {
        let content = self.pending.take();
        match choice {
            Choice::Send => content,
            Choice::Always => {
                self.allowed = true;
                content
            }
            Choice::Decline => None,
        }
    }

    /// The host took the clipboard right away: nothing waits any more.
    pub fn right_lost(&mut self) {
        self.pending = None;
    }
}

/// The toolbar part: the toggle, and the question while a copy waits. Returns what may be
/// sent now. `what` describes the waiting copy ("12 characters of text").
pub fn consent_ui<T>(
    ui: &mut egui::Ui,
    consent: &mut ClipboardConsent<T>,
    what: impl FnOnce(&T) -> String,
) -> Option<T> {
    let mut allowed = consent.allowed();
    if ui
        .checkbox(&mut allowed, "Send my clipboard")
        .on_hover_text("Send what you copy on this computer to the host, for this session")
        .changed()
    {
        consent.set_allowed(allowed);
    }
    let description = consent.pending().map(what)?;
    ui.label(format!("Send what you copied ({description}) to the host?"));
    let mut choice = None;
    if ui.button("Send").clicked() {
        choice = Some(Choice::Send);
    }
    if ui.button("Always").clicked() {
        choice = Some(Choice::Always);
    }
    if ui.button("Don't send").clicked() {
        choice = Some(Choice::Decline);
    }
    choice.and_then(|c| consent.answer(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    #[test]
    fn nothing_goes_before_the_user_says_so() {
        let mut c = ClipboardConsent::default();
        assert!(!c.allowed(), "off by default");
        assert_eq!(c.local_copy("a"), None);
        assert_eq!(c.local_copy("b"), None);
        assert_eq!(c.pending(), Some(&"b"), "only the latest copy waits");
        assert_eq!(c.answer(Choice::Decline), None);
        assert_eq!(c.pending(), None);
        assert_eq!(c.local_copy("c"), None);
        assert_eq!(c.answer(Choice::Send), Some("c"));
        assert!(!c.allowed(), "one send is not a yes for later copies");
        assert_eq!(c.local_copy("d"), None);
        c.right_lost();
        assert_eq!(c.pending(), None);
        assert_eq!(c.local_copy("e"), None);
        assert_eq!(c.answer(Choice::Always), Some("e"));
        assert_eq!(c.local_copy("f"), Some("f"), "always: later copies go");
        c.set_allowed(false);
        assert_eq!(c.local_copy("g"), None);
        c.set_allowed(false);
        assert_eq!(c.pending(), None, "turning it off forgets the waiting copy");
    }

    struct State {
        consent: ClipboardConsent<&'static str>,
        sent: Vec<&'static str>,
    }

    #[test]
    fn the_toolbar_asks_and_the_toggle_sends() {
        let state = State {
            consent: ClipboardConsent::default(),
            sent: Vec::new(),
        };
        let mut h = Harness::builder()
            .with_size(egui::vec2(900.0, 60.0))
            .build_ui_state(
                |ui, s: &mut State| {
                    ui.horizontal(|ui| {
                        if let Some(v) =
                            consent_ui(ui, &mut s.consent, |t| format!("{} characters", t.len()))
                        {
                            s.sent.push(v);
                        }
                    });
                },
                state,
            );
        h.run_steps(2);
        assert!(
            h.query_by_label("Send").is_none(),
            "no question without a copy"
        );
        let copied = h.state_mut().consent.local_copy("secret");
        assert_eq!(copied, None);
        h.run_steps(2);
        h.get_by_label_contains("Send what you copied (6 characters) to the host?");
        h.get_by_label("Don't send").click();
        h.run_steps(2);
        assert!(h.state().sent.is_empty());
        assert!(h.query_by_label("Don't send").is_none());
        let _ = h.state_mut().consent.local_copy("hello");
        h.run_steps(2);
        h.get_by_label("Send").click();
        h.run_steps(2);
        assert_eq!(h.state().sent, vec!["hello"]);
        // The toggle: later copies go without a question.
        h.get_by_label("Send my clipboard").click();
        h.run_steps(2);
        assert!(h.state().consent.allowed());
        assert_eq!(h.state_mut().consent.local_copy("later"), Some("later"));
    }
}
