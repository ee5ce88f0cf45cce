//! `porthole test-pattern`: paints the live test picture of `media::pattern` and takes
//! `blocks RRGGBB RRGGBB RRGGBB RRGGBB` lines on stdin (answering `ok` once painted).
//!
//! With `--clock` it paints the glass-to-glass benchmark's picture instead
//! (`media::pattern::ClockPainter`): the wall-clock time as a code every `--clock-ms`, a
//! busy picture scrolling over `--motion-percent` of the screen at `--motion-fps`. It
//! prints `ready WxH`, then `clock X Y CELL` (where the code is), and answers `stats` on
//! stdin with `stats paints=N skipped=N motion=N skipped_motion=N`.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use media::pattern::{clock_code, parse_colour, ClockPainter, Painter, Ticker, PALETTES};

#[derive(clap::Args)]
pub struct PatternArgs {
    /// X display to paint on (default: $DISPLAY).
    #[arg(long)]
    pub display: Option<String>,
    /// Change the block colours every this many seconds (0: only on command).
    #[arg(long, default_value_t = 0.0)]
    pub cycle_secs: f64,
    /// Also scatter this many glyph-sized rectangles over the blocks every frame (busy,
    /// hard-to-compress content, like scrolling text).
    #[arg(long, default_value_t = 0)]
    pub busy: usize,
    /// Paint the latency benchmark's picture: a code of the wall-clock time (ms) and a
    /// scrolling busy region, instead of the colour blocks.
    #[arg(long)]
    pub clock: bool,
    /// With --clock: repaint the time code every this many ms.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub clock_ms: u64,
    /// With --clock: percent of the screen (bottom rows, full width) that scrolls.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub motion_percent: u8,
    /// With --clock: scroll steps per second.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub motion_fps: u32,
}

pub fn run(args: PatternArgs) -> anyhow::Result<()> {
    if args.clock {
        return run_clock(&args);
    }
    let mut painter = Painter::connect(args.display.as_deref())?;
    painter.paint()?;
    let layout = painter.layout();
    println!("ready {}x{}", layout.width, layout.height);
    std::io::stdout().flush()?;

    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    animate(&mut painter, rx, args.cycle_secs, args.busy, None)
}

/// Runs the animation until `stop` (if any) is set; commands arrive on `commands`.
pub fn animate(
    painter: &mut Painter,
    commands: mpsc::Receiver<String>,
    cycle_secs: f64,
    busy: usize,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let frame = Duration::from_millis(33);
    let mut palette = 0usize;
    let mut last_cycle = Instant::now();
    let mut tick = 0u32;
    loop {
        if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
            return Ok(());
        }
        while let Ok(line) = commands.try_recv() {
            match parse_blocks(&line) {
                Some(blocks) => {
                    painter.set_blocks(blocks)?;
                    println!("ok");
                }
                None => println!("error: expected `blocks RRGGBB RRGGBB RRGGBB RRGGBB`"),
            }
            std::io::stdout().flush().context("stdout")?;
        }
        if cycle_secs > 0.0 && last_cycle.elapsed().as_secs_f64() >= cycle_secs {
            palette = (palette + 1) % PALETTES.len();
            painter.set_blocks(PALETTES[palette])?;
            last_cycle = Instant::now();
        }
        if busy > 0 {
            tick = tick.wrapping_add(1);
            painter.set_blocks(painter.blocks())?;
            painter.scatter(tick, busy)?;
        }
        painter.tick()?;
        std::thread::sleep(frame);
    }
}

/// Paints the clock picture until killed; answers `stats` lines on stdin.
fn run_clock(args: &PatternArgs) -> anyhow::Result<()> {
    let mut painter = ClockPainter::connect(args.display.as_deref(), args.motion_percent)?;
    let (screen, clock) = (painter.layout(), painter.clock());
    println!("ready {}x{}", screen.width, screen.height);
    println!("clock {} {} {}", clock.x, clock.y, clock.cell);
    std::io::stdout().flush()?;

    // Bounded: the reader thread waits when a few commands are already pending.
    let (tx, rx) = mpsc::sync_channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    let start = Instant::now();
    let mut code_tick = Ticker::new(Duration::from_millis(args.clock_ms), start);
    let mut motion_tick = Ticker::new(
        Duration::from_secs(1) / args.motion_fps,
        start + Duration::from_millis(1),
    );
    let (mut paints, mut moves) = (0u64, 0u64);
    loop {
        match rx.try_recv() {
            Ok(line) if line.trim() == "stats" => {
                println!(
                    "stats paints={paints} skipped={} motion={moves} skipped_motion={}",
                    code_tick.skipped, motion_tick.skipped
                );
                std::io::stdout().flush().context("stdout")?;
            }
            Ok(line) => {
                println!("error: with --clock the only command is `stats`, not {line:?}");
                std::io::stdout().flush().context("stdout")?;
            }
            // Stdin closed (or never open): keep painting.
            Err(_) => {}
        }
        let now = Instant::now();
        let mut painted = false;
        if motion_tick.due(now) {
            painter.scroll()?;
            moves += 1;
            painted = true;
        }
        if code_tick.due(now) {
            // The time is taken just before the paint is sent: what the code says is when
            // it reached the screen, to within the X server's handling of one request.
            let since_epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?;
            painter.paint_code(clock_code(since_epoch))?;
            paints += 1;
            painted = true;
        }
        if painted {
            painter.sync()?;
        }
        let wake = code_tick.next().min(motion_tick.next());
        if let Some(wait) = wake.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn parse_blocks(line: &str) -> Option<[u32; 4]> {
    let mut words = line.split_whitespace();
    if words.next()? != "blocks" {
        return None;
    }
    let colours: Vec<u32> = words.map(parse_colour).collect::<Option<_>>()?;
    colours.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_blocks;

    #[test]
    fn block_commands_parse() {
        assert_eq!(
            parse_blocks("blocks 000000 ffffff 102030 #abcdef"),
            Some([0, 0xffffff, 0x102030, 0xabcdef])
        );
        assert_eq!(parse_blocks("blocks 000000"), None);
        assert_eq!(parse_blocks("colours 000000 ffffff 102030 abcdef"), None);
    }
}
