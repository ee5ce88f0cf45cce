//! What a share needs ([`ShareOptions`]), built by `porthole share` from its flags
//! ([`ShareArgs::options`]) and by the app from its form; and the flags themselves.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use media::audio::AudioSource;
use net::access::CodeExpiry;
use net::IceServer;

use crate::virtual_display::parse_size;

/// Where a share listens unless told: every IPv4 interface, port 7380.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7380));
/// Frames a second captured at most, unless told.
pub const DEFAULT_FPS: u32 = 30;
/// The video bit rate, kbit/s, unless told.
pub const DEFAULT_BITRATE_KBPS: u32 = 8000;
/// Most viewers at once, unless told.
pub const DEFAULT_MAX_VIEWERS: usize = 16;
/// Largest clipboard content taken from a viewer, unless told.
pub const DEFAULT_CLIPBOARD_MAX_BYTES: u32 = 16 * 1024 * 1024;

/// What a share needs, whoever starts it. The display shared is not here: it is the
/// process's (`$DISPLAY`, which capture reads; `porthole share --display/--virtual` sets it
/// before any thread starts). The access code and who approves viewers are given to
/// [`RunningShare::start`](super::RunningShare::start) beside these.
#[derive(Clone, Debug, PartialEq)]
pub struct ShareOptions {
    /// Where the screen comes from.
    pub backend: Backend,
    /// Monitor of the display to share (0 = first, as RandR lists them).
    pub monitor: usize,
    /// Where viewers connect.
    pub listen: SocketAddr,
    /// Frames a second captured at most.
    pub fps: u32,
    /// Video bit rate, kbit/s (held: busy content lowers the frame rate instead).
    pub bitrate_kbps: u32,
    /// What each viewer may do besides watching when it comes in (the host changes it per
    /// viewer later).
    pub rights: net::Rights,
    /// The sound shared, if any.
    pub audio: Option<AudioSource>,
    /// Whether the share is announced on the LAN (mDNS), and as what (`None`: this
    /// machine's name).
    pub announce: bool,
    pub name: Option<String>,
    /// Most viewers at once.
    pub max_viewers: usize,
    /// STUN and TURN servers offered to viewers behind NAT.
    pub ice_servers: Vec<IceServer>,
    /// When the code stops admitting new viewers (`None`: while the share runs).
    pub code_expiry: Option<CodeExpiry>,
    /// Also admit WHEP players that show the code as a bearer token.
    pub allow_whep_token: bool,
    /// Largest clipboard content accepted from a viewer, in bytes.
    pub clipboard_max_bytes: u32,
}

impl Default for ShareOptions {
    /// `porthole share`'s defaults: the first monitor on every interface at 30 fps and
    /// 8 Mbit/s, the default output's sound, view only, announced.
    fn default() -> Self {
        Self {
            backend: Backend::X11,
            monitor: 0,
            listen: DEFAULT_LISTEN,
            fps: DEFAULT_FPS,
            bitrate_kbps: DEFAULT_BITRATE_KBPS,
            rights: net::Rights::default(),
            audio: Some(AudioSource::Default),
            announce: true,
            name: None,
            max_viewers: DEFAULT_MAX_VIEWERS,
            ice_servers: Vec::new(),
            code_expiry: None,
            allow_whep_token: false,
            clipboard_max_bytes: DEFAULT_CLIPBOARD_MAX_BYTES,
        }
    }
}

/// The sound to share, as `--audio` and the app's form name it: `none`, `default` (what
/// this machine plays), or a device by name.
pub fn audio_choice(name: &str) -> Option<AudioSource> {
    match name {
        "none" => None,
        "default" => Some(AudioSource::Default),
        name => Some(AudioSource::Named(name.to_owned())),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ShareArgs {
    /// Where the screen comes from: an X server, or a Wayland desktop's ScreenCast portal
    /// (auto: Wayland when the session is one, unless --display or --virtual is given).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// X display to share, e.g. :0 (default: $DISPLAY).
    #[arg(long)]
    pub display: Option<String>,
    /// Monitor of that display to share (0 = first; see RandR).
    #[arg(long, default_value_t = 0)]
    pub monitor: usize,
    /// Address and port to serve viewers on (ADDR:PORT; a bare PORT means every interface).
    #[arg(long, default_value_t = DEFAULT_LISTEN, value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Access code viewers must give (default: a fresh random one). Visible to other
    /// local users in the process list: prefer $PORTHOLE_CODE or --code-file.
    #[arg(long)]
    pub code: Option<String>,
    /// Read the access code from the first line of this file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    pub code_file: Option<std::path::PathBuf>,
    /// When the code stops admitting new viewers: `first-use` (after the first viewer is
    /// in), or a time after the start such as `10m`, `90s`, `2h`. Viewers already in stay;
    /// reconnecting needs a new code. Default: while the share runs.
    #[arg(long, value_name = "first-use|DURATION", value_parser = parse_code_ttl)]
    pub code_ttl: Option<CodeExpiry>,
    /// Also admit WHEP players that show the code as `Authorization: Bearer <code>`
    /// (OBS, GStreamer, ...): they cannot pair, so nothing ties their connection to the
    /// code; they watch only and are listed as unauthenticated. The code crosses the
    /// network in clear for them.
    #[arg(long)]
    pub allow_whep_token: bool,
    /// Frames per second to capture at most.
    #[arg(long, default_value_t = DEFAULT_FPS, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,
    /// Video bit rate, kbit/s. Held: when busy content (scrolling, video) would need more,
    /// the frame rate drops instead.
    #[arg(long, default_value_t = DEFAULT_BITRATE_KBPS, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    pub bitrate_kbps: u32,
    /// Start a private virtual display of this size (e.g. 1920x1080) with a live test
    /// picture, and share it: for machines without a screen.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub r#virtual: Option<(u32, u32)>,
    /// STUN server for viewers behind NAT, e.g. stun:stun.example.org:3478 (repeatable).
    #[arg(long)]
    pub stun: Vec<String>,
    /// TURN server, e.g. turn:turn.example.org:3478?transport=udp (repeatable).
    #[arg(long)]
    pub turn: Vec<String>,
    /// TURN user name.
    #[arg(long, default_value = "")]
    pub turn_user: String,
    /// TURN password (visible in the process list: prefer $PORTHOLE_TURN_PASSWORD or
    /// --turn-password-file).
    #[arg(long, default_value = "")]
    pub turn_password: String,
    /// Read the TURN password from the first line of this file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    pub turn_password_file: Option<std::path::PathBuf>,
    /// Most viewers at once.
    #[arg(long, default_value_t = DEFAULT_MAX_VIEWERS)]
    pub max_viewers: usize,
    /// Let viewers control this screen (mouse, wheel, keyboard).
    #[arg(long)]
    pub allow_control: bool,
    /// Share the clipboard with viewers, both ways.
    #[arg(long)]
    pub allow_clipboard: bool,
    /// Sound to share: `default` (what this machine plays: the monitor of the default
    /// output), `none`, or a device by name (see --list-audio).
    #[arg(long, default_value = "default")]
    pub audio: String,
    /// List the audio devices that can be shared, and exit.
    #[arg(long)]
    pub list_audio: bool,
    /// Do not announce this share on the LAN (mDNS).
    #[arg(long)]
    pub no_announce: bool,
    /// Name to announce on the LAN (default: this machine's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Largest clipboard content accepted from a viewer, in bytes.
    #[arg(long, default_value_t = DEFAULT_CLIPBOARD_MAX_BYTES)]
    pub clipboard_max_bytes: u32,
    /// Admit every viewer with the code without asking. By default each viewer waits for a
    /// yes on this terminal; with no terminal (stdin not a TTY) viewers are refused unless
    /// this is given.
    #[arg(long = "no-approval", visible_alias = "yes")]
    pub no_approval: bool,
}

impl ShareArgs {
    /// The share these flags describe. `turn_password`: the TURN password from wherever it
    /// was given (`--turn-password`, its file or the environment: see `secrets`).
    /// What only the command line does (the display, the code, approval on the terminal,
    /// `--list-audio`) is not part of it.
    /// The backend `--backend` names, `auto` resolved from the session.
    pub fn backend(&self) -> Backend {
        match self.backend {
            BackendChoice::X11 => Backend::X11,
            BackendChoice::Wayland => Backend::Wayland,
            BackendChoice::Auto if self.display.is_some() || self.r#virtual.is_some() => {
                Backend::X11
            }
            BackendChoice::Auto => Backend::of_this_session(),
        }
    }

    pub fn options(&self, turn_password: &str) -> ShareOptions {
        let stun = self.stun.iter().map(|url| IceServer {
            url: url.clone(),
            username: String::new(),
            credential: String::new(),
        });
        let turn = self.turn.iter().map(|url| IceServer {
            url: url.clone(),
            username: self.turn_user.clone(),
            credential: turn_password.to_owned(),
        });
        ShareOptions {
            backend: self.backend(),
            monitor: self.monitor,
            listen: self.listen,
            fps: self.fps,
            bitrate_kbps: self.bitrate_kbps,
            rights: net::Rights {
                control: self.allow_control,
                clipboard: self.allow_clipboard,
            },
            audio: audio_choice(&self.audio),
            announce: !self.no_announce,
            name: self.name.clone(),
            max_viewers: self.max_viewers,
            ice_servers: stun.chain(turn).collect(),
            code_expiry: self.code_ttl,
            allow_whep_token: self.allow_whep_token,
            clipboard_max_bytes: self.clipboard_max_bytes,
        }
    }
}

fn parse_code_ttl(text: &str) -> Result<CodeExpiry, net::access::BadCodeExpiry> {
    text.parse()
}

/// `--listen` refused: neither ADDR:PORT nor a bare port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an address and port: give ADDR:PORT (e.g. 0.0.0.0:7380, 127.0.0.1:7380, \
     [::]:7380) or a bare port (7380)"
)]
pub struct BadListen;

/// `--listen`: ADDR:PORT, or a bare PORT (every interface, as the default).
pub fn parse_listen(value: &str) -> Result<SocketAddr, BadListen> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    value.parse().map_err(|_| BadListen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `porthole share FLAGS`'s options.
    fn options(flags: &[&str]) -> ShareOptions {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ShareArgs,
        }
        use clap::Parser;
        let args = Wrapper::try_parse_from(std::iter::once("share").chain(flags.iter().copied()))
            .unwrap()
            .args;
        args.options("pw")
    }

    #[test]
    fn the_flags_defaults_are_the_options_defaults() {
        // `--backend auto` follows the session this test runs in.
        let want = ShareOptions {
            backend: Backend::of_this_session(),
            ..ShareOptions::default()
        };
        assert_eq!(options(&[]), want);
        assert_eq!(options(&["--backend=x11"]), ShareOptions::default());
    }

    #[test]
    fn each_flag_lands_in_its_option() {
        let o = options(&[
            "--monitor=2",
            "--listen=7390",
            "--fps=60",
            "--bitrate-kbps=12000",
            "--allow-control",
            "--audio=none",
            "--no-announce",
            "--name=studio",
            "--max-viewers=3",
            "--stun=stun:s.example:3478",
            "--turn=turn:t.example:3478",
            "--turn-user=ana",
            "--code-ttl=first-use",
            "--allow-whep-token",
            "--clipboard-max-bytes=1000",
        ]);
        assert_eq!(
            o,
            ShareOptions {
                backend: Backend::X11,
                monitor: 2,
                listen: SocketAddr::from(([0, 0, 0, 0], 7390)),
                fps: 60,
                bitrate_kbps: 12_000,
                rights: net::Rights {
                    control: true,
                    clipboard: false
                },
                audio: None,
                announce: false,
                name: Some("studio".into()),
                max_viewers: 3,
                ice_servers: vec![
                    IceServer {
                        url: "stun:s.example:3478".into(),
                        username: String::new(),
                        credential: String::new(),
                    },
                    IceServer {
                        url: "turn:t.example:3478".into(),
                        username: "ana".into(),
                        credential: "pw".into(),
                    },
                ],
                code_expiry: Some(CodeExpiry::FirstUse),
                allow_whep_token: true,
                clipboard_max_bytes: 1000,
            }
        );
        assert_eq!(
            options(&["--audio=Speakers", "--allow-clipboard"]).audio,
            Some(AudioSource::Named("Speakers".into()))
        );
    }

    #[test]
    fn listen_takes_an_address_and_port_or_a_bare_port_and_says_which_otherwise() {
        assert_eq!(
            parse_listen("7390"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 7390)))
        );
        assert_eq!(
            parse_listen("127.0.0.1:7390"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 7390)))
        );
        assert_eq!(parse_listen("[::]:7390").map(|a| a.port()), Ok(7390));
        for bad in ["localhost", "7390x", "1.2.3.4", ":7390", "70000"] {
            let e = parse_listen(bad).unwrap_err().to_string();
            assert!(
                e.contains("ADDR:PORT") && e.contains("bare port"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_backend_follows_the_session_unless_told() {
        use Backend::*;
        assert_eq!(Backend::of_session(Some("wayland"), true, true), Wayland);
        assert_eq!(Backend::of_session(Some("x11"), true, true), X11);
        assert_eq!(
            Backend::of_session(None, true, false),
            Wayland,
            "only Wayland"
        );
        assert_eq!(
            Backend::of_session(None, true, true),
            X11,
            "XWayland too: X11"
        );
        assert_eq!(Backend::of_session(Some("tty"), false, false), X11);
        assert_eq!(options(&["--backend", "wayland"]).backend, Wayland);
        assert_eq!(options(&["--backend", "x11"]).backend, X11);
        assert_eq!(
            options(&["--display", ":5"]).backend,
            X11,
            "--display means X"
        );
    }
}

/// Where the screen comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An X server (`$DISPLAY`): MIT-SHM grabs, XTEST input, the X clipboard.
    X11,
    /// A Wayland desktop: the ScreenCast portal and PipeWire (input and clipboard: not yet).
    Wayland,
}

impl Backend {
    /// The backend for the session this process runs in (its environment).
    pub fn of_this_session() -> Self {
        Self::of_session(
            std::env::var("XDG_SESSION_TYPE").ok().as_deref(),
            std::env::var_os("WAYLAND_DISPLAY").is_some(),
            std::env::var_os("DISPLAY").is_some(),
        )
    }

    /// The backend for a session: Wayland when it says it is one
    /// (`XDG_SESSION_TYPE=wayland`), or when only a Wayland display is there.
    pub fn of_session(session_type: Option<&str>, wayland: bool, x11: bool) -> Self {
        match session_type {
            Some("wayland") => Self::Wayland,
            Some("x11") => Self::X11,
            _ if wayland && !x11 => Self::Wayland,
            _ => Self::X11,
        }
    }
}

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Auto,
    X11,
    Wayland,
}
