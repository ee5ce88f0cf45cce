//! Ctrl+C and SIGTERM, for the headless commands' main loops.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, listened for from when it is made. Make it once, before the loop:
/// a `tokio::signal::ctrl_c()` future made per turn misses a SIGINT that comes while the
/// loop body runs (a new listener counts the signals before it as seen).
pub struct StopSignal {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignal {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal (cancel-safe, for `select!`).
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
