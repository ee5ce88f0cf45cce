//! Real-time scheduling for the threads that encode video.
//!
//! A frame waits for the slowest of openh264's threads, and on a busy machine a normal
//! thread is preempted by whatever wakes (the X server painting, a compositor): 1080p with
//! 30 % of the screen moving, encode p50 8.8-11.8 -> 7.0-8.8 ms and p90 13-19 -> 9-12 ms
//! with the encoding threads on SCHED_FIFO (`docs/benchmarks.md`). So the encoding thread
//! asks for SCHED_FIFO priority 1 (above every normal thread, below audio's real-time
//! threads, reset for any child) and openh264's patched thread creation does the same for
//! its workers. It needs the right to (root, CAP_SYS_NICE, or an RLIMIT_RTPRIO of at least
//! 1); without it they run as before, and so they do under a finite RLIMIT_RTTIME (past
//! it, a real-time thread that has not blocked gets SIGXCPU). `PORTHOLE_REALTIME=0` turns it
//! off.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether real-time scheduling is wanted (`PORTHOLE_REALTIME=0` says no; openh264's
/// patched thread creation reads the same variable).
pub fn wanted() -> bool {
    std::env::var_os("PORTHOLE_REALTIME").is_none_or(|v| v != "0")
}

/// Puts the calling thread on SCHED_FIFO priority 1 if wanted and permitted; whether it is.
/// What came of it is logged once per process.
pub fn realtime_this_thread() -> bool {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    let first = !LOGGED.swap(true, Ordering::Relaxed);
    if !wanted() {
        if first {
            tracing::info!("encoding threads at normal priority (PORTHOLE_REALTIME=0)");
        }
        return false;
    }
    // A real-time thread that runs past a finite RLIMIT_RTTIME without blocking gets SIGXCPU,
    // which ends the process (a huge keyframe on a slow machine could): not under one.
    if let Some(limit) = rttime_limit() {
        if first {
            tracing::info!(
                "encoding threads at normal priority: real-time would be limited to {limit} µs \
                 of CPU at a time (RLIMIT_RTTIME)"
            );
        }
        return false;
    }
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: a valid sched_param; pid 0 is the calling thread.
    let r = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if r == 0 {
        if first {
            tracing::info!("encoding threads run real-time (SCHED_FIFO, priority 1)");
        }
        true
    } else {
        if first {
            tracing::info!(
                "encoding threads at normal priority: real-time scheduling not permitted ({}); \
                 grant CAP_SYS_NICE or an RLIMIT_RTPRIO of 1 for steadier latency",
                std::io::Error::last_os_error()
            );
        }
        false
    }
}

/// The soft RLIMIT_RTTIME (µs) when there is one.
fn rttime_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to write into.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_RTTIME, &mut limit) };
    (r == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The scheduling policy of each of this process's threads (`/proc/self/task/*/stat`).
#[cfg(test)]
pub(crate) fn thread_policies() -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        // Fields after the name start at field 3 (state); the policy is field 41.
        let policy = stat[close + 1..]
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|p| p.parse().ok());
        if let Some(policy) = policy {
            out.push((name, policy));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a finite RLIMIT_RTTIME a thread stays at normal priority (it would be killed by
    /// SIGXCPU past it), whatever the process may otherwise do.
    #[test]
    fn no_real_time_under_an_rttime_limit() {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid rlimits; the limit is put back below.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_RTTIME, &mut old), 0);
            let limited = libc::rlimit {
                rlim_cur: 200_000.min(old.rlim_max),
                rlim_max: old.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_RTTIME, &limited), 0);
        }
        let (realtime, policy) = std::thread::spawn(|| {
            let realtime = realtime_this_thread();
            // SAFETY: the calling thread.
            (realtime, unsafe { libc::sched_getscheduler(0) })
        })
        .join()
        .unwrap();
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_RTTIME, &old) };
        assert!(!realtime, "refused under the limit");
        assert_eq!(policy, libc::SCHED_OTHER);
    }
}
