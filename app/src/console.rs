//! The terminal of `porthole share`: a yes/no for each viewer that knocks, and commands to
//! list viewers, change their rights and disconnect them.

use std::collections::VecDeque;
use std::io::Write;

use net::{Approver, PendingViewer, Rights, ShareServer};
use tokio::sync::{mpsc, oneshot};

/// Viewers waiting for an answer at once; more are refused (the share is being hammered).
pub const MAX_WAITING: usize = 8;

pub const HELP: &str = "commands: list | kick N | revoke N control|clipboard|all | \
                        grant N control|clipboard|all | help";

pub type Knock = (PendingViewer, oneshot::Sender<Option<Rights>>);

/// Asks on the terminal: each knock waits in the console's queue.
pub fn ask_on_terminal(knocks: mpsc::Sender<Knock>) -> Approver {
    std::sync::Arc::new(move |viewer: PendingViewer| {
        let (tx, rx) = oneshot::channel();
        let (no, addr) = (viewer.no, viewer.addr);
        if knocks.try_send((viewer, tx)).is_err() {
            tracing::warn!(
                viewer = no,
                %addr,
                "refused a viewer: {MAX_WAITING} viewers are already waiting for an answer"
            );
        }
        rx
    })
}

/// No terminal and no --no-approval: every viewer is refused, saying why.
pub fn refuse_all() -> Approver {
    std::sync::Arc::new(|viewer: PendingViewer| {
        tracing::warn!(
            viewer = viewer.no,
            addr = %viewer.addr,
            "refused a viewer: nobody can approve it (stdin is not a terminal); \
             start the share with --no-approval to admit everyone with the code"
        );
        oneshot::channel::<Option<Rights>>().1
    })
}

/// Lines typed on stdin (each cut to 256 characters), read on a thread of their own.
pub fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("porthole-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                let line: String = line.chars().take(256).collect();
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot read commands from stdin: {e}");
    }
    rx
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    List,
    Kick(u64),
    Rights {
        no: u64,
        grant: bool,
        control: bool,
        clipboard: bool,
    },
    Help,
}

/// Why a typed command was not understood (the text is shown at the prompt).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0:?}: which viewer? (a number from `list`)")]
    NoViewer(String),
    #[error("{0} N control|clipboard|all")]
    NoRight(&'static str),
    #[error("unknown command {0:?}; {HELP}")]
    Unknown(String),
}

/// Parses a typed command; `Err` says what is wrong.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |w: Option<&&str>| -> Result<u64, CommandError> {
        w.and_then(|w| w.parse().ok())
            .ok_or_else(|| CommandError::NoViewer(line.to_owned()))
    };
    match words.first().copied() {
        Some("list" | "ls") => Ok(Command::List),
        Some("help" | "?") => Ok(Command::Help),
        Some("kick" | "disconnect") => Ok(Command::Kick(number(words.get(1))?)),
        Some(verb @ ("revoke" | "grant")) => {
            let verb = if verb == "grant" { "grant" } else { "revoke" };
            let no = number(words.get(1))?;
            let (control, clipboard) = match words.get(2).copied() {
                Some("control") => (true, false),
                Some("clipboard") => (false, true),
                Some("all") => (true, true),
                _ => return Err(CommandError::NoRight(verb)),
            };
            Ok(Command::Rights {
                no,
                grant: verb == "grant",
                control,
                clipboard,
            })
        }
        _ => Err(CommandError::Unknown(line.to_owned())),
    }
}

/// The answer to a yes/no prompt: `None` when it is neither.
pub fn answer(line: &str) -> Option<bool> {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(true),
        "" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// ` "NAME"` for a viewer that gave itself a name.
fn named(name: Option<&str>) -> String {
    name.map(|n| format!(" \"{n}\"")).unwrap_or_default()
}

fn rights_text(r: Rights) -> String {
    match (r.control, r.clipboard) {
        (false, false) => "view only".into(),
        (true, false) => "view and control".into(),
        (false, true) => "view and clipboard".into(),
        (true, true) => "view, control and clipboard".into(),
    }
}

fn say(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
    let _ = err.flush();
}

pub struct Console {
    pub knocks: mpsc::Receiver<Knock>,
    /// Viewers waiting; the first one is being asked.
    waiting: VecDeque<Knock>,
}

impl Console {
    pub fn new(knocks: mpsc::Receiver<Knock>) -> Self {
        Self {
            knocks,
            waiting: VecDeque::new(),
        }
    }

    fn prompt(&self) {
        if let Some((v, _)) = self.waiting.front() {
            let kind = match (v.authenticated, v.user_agent.is_empty()) {
                (false, _) => "unauthenticated: a WHEP player with the code in clear",
                (true, true) => "porthole",
                (true, false) => "a browser",
            };
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "Viewer {}{} from {} ({kind}) wants to watch, with {}. Let in? [y/N] ",
                v.no,
                named(v.name.as_deref()),
                v.addr.ip(),
                rights_text(v.rights)
            );
            let _ = err.flush();
        }
    }

    pub fn knock(&mut self, knock: Knock) {
        self.waiting.push_back(knock);
        if self.waiting.len() == 1 {
            self.prompt();
        }
    }

    /// Forgets viewers that stopped waiting (gave up, or the share's timeout).
    pub fn expire(&mut self) {
        let front_gone = self.waiting.front().is_some_and(|(_, tx)| tx.is_closed());
        if let Some((v, _)) = self.waiting.front().filter(|_| front_gone) {
            say(&format!(
                "
Viewer {} stopped waiting.",
                v.no
            ));
        }
        self.waiting.retain(|(_, tx)| !tx.is_closed());
        if front_gone {
            self.prompt();
        }
    }

    /// Viewer `no` asks for control: the host is told how to give it.
    pub fn asks_control(&self, no: u64) {
        say(&format!(
            "
Viewer {no} asks for control: `grant {no} control` gives it."
        ));
        self.prompt();
    }

    pub async fn line(&mut self, line: &str, server: &ShareServer) {
        if !self.waiting.is_empty() {
            match answer(line) {
                Some(yes) => {
                    if let Some((v, tx)) = self.waiting.pop_front() {
                        let _ = tx.send(yes.then_some(v.rights));
                        say(&format!(
                            "Viewer {} {}.",
                            v.no,
                            if yes { "let in" } else { "turned away" }
                        ));
                    }
                }
                None => say("Answer y or n."),
            }
            self.prompt();
            return;
        }
        if line.trim().is_empty() {
            return;
        }
        match parse(line) {
            Ok(command) => run(command, server).await,
            Err(e) => say(&e.to_string()),
        }
    }
}

async fn run(command: Command, server: &ShareServer) {
    let viewers = server.viewers();
    let find = |no: u64| viewers.iter().find(|v| v.no == no);
    match command {
        Command::Help => say(HELP),
        Command::List => {
            if viewers.is_empty() {
                say("No viewers.");
            }
            for v in &viewers {
                let secs = std::time::SystemTime::now()
                    .duration_since(v.since)
                    .unwrap_or_default()
                    .as_secs();
                say(&format!(
                    "Viewer {}{}  {}  {}  {}{}{}",
                    v.no,
                    named(v.name.as_deref()),
                    v.addr,
                    if v.reconnecting {
                        "reconnecting (input released)".into()
                    } else if v.connected {
                        format!("connected {secs} s")
                    } else {
                        "connecting".into()
                    },
                    rights_text(v.rights),
                    if v.asks_control {
                        "  asks for control"
                    } else {
                        ""
                    },
                    if v.authenticated {
                        ""
                    } else {
                        "  unauthenticated (bearer code)"
                    }
                ));
            }
        }
        Command::Kick(no) => match find(no) {
            Some(v) => {
                server.disconnect(&v.id).await;
                say(&format!("Viewer {no} disconnected."));
            }
            None => say(&format!("No viewer {no} (see `list`).")),
        },
        Command::Rights {
            no,
            grant,
            control,
            clipboard,
        } => match find(no) {
            Some(v) => {
                let mut rights = v.rights;
                if control {
                    rights.control = grant;
                }
                if clipboard {
                    rights.clipboard = grant;
                }
                server.set_rights(&v.id, rights);
                say(&format!("Viewer {no}: {}.", rights_text(rights)));
            }
            None => say(&format!("No viewer {no} (see `list`).")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_mistakes_say_why() {
        assert_eq!(parse("list"), Ok(Command::List));
        assert_eq!(parse("  kick 3 "), Ok(Command::Kick(3)));
        assert_eq!(
            parse("revoke 2 control"),
            Ok(Command::Rights {
                no: 2,
                grant: false,
                control: true,
                clipboard: false
            })
        );
        assert_eq!(
            parse("grant 2 all"),
            Ok(Command::Rights {
                no: 2,
                grant: true,
                control: true,
                clipboard: true
            })
        );
        assert_eq!(parse("kick"), Err(CommandError::NoViewer("kick".into())));
        assert!(parse("kick")
            .unwrap_err()
            .to_string()
            .contains("which viewer"));
        assert_eq!(
            parse("revoke 2 mouse"),
            Err(CommandError::NoRight("revoke"))
        );
        assert!(parse("revoke 2 mouse")
            .unwrap_err()
            .to_string()
            .contains("control|clipboard|all"));
        assert_eq!(parse("reboot"), Err(CommandError::Unknown("reboot".into())));
    }

    #[test]
    fn only_yes_lets_a_viewer_in() {
        assert_eq!(answer("y"), Some(true));
        assert_eq!(answer(" YES "), Some(true));
        assert_eq!(answer(""), Some(false), "Enter means no");
        assert_eq!(answer("n"), Some(false));
        assert_eq!(answer("list"), None);
    }
}
