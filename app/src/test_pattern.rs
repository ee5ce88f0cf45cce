//! `porthole test-pattern`: paints the live test picture of `media::pattern` and takes
//! `blocks RRGGBB RRGGBB RRGGBB RRGGBB` lines on stdin (answering `ok` once painted).

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use media::pattern::{parse_colour, Painter, PALETTES};

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
}

pub fn run(args: PatternArgs) -> anyhow::Result<()> {
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
