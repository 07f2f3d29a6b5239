//! RSS and CPU time of the processes under test, from `/proc` (Linux only), sampled each second.
//!
//! Several pids are summed (nginx: master + worker). A pid that has gone counts as zero, so a
//! crashed proxy shows as a drop rather than stopping the run.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

/// One reading of a set of processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_kb: u64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
}

impl Usage {
    pub fn of(pids: &[u32]) -> Usage {
        pids.iter()
            .filter_map(|&pid| read(pid))
            .fold(Usage::default(), |a, b| Usage { rss_kb: a.rss_kb + b.rss_kb, cpu_ticks: a.cpu_ticks + b.cpu_ticks })
    }

    /// `/proc/self`: the client's own cost (the harness ceiling).
    pub fn own() -> Usage {
        read_path("self").unwrap_or_default()
    }
}

fn read(pid: u32) -> Option<Usage> {
    read_path(&pid.to_string())
}

fn read_path(pid: &str) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces and parentheses): state is field 3, so
    // utime (14) and stime (15) are the 12th and 13th after the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Usage { rss_kb, cpu_ticks: utime + stime })
}

pub fn mb(kb: u64) -> f64 {
    (kb as f64 / 1024.0 * 10.0).round() / 10.0
}

pub fn cpu_seconds(ticks: u64) -> f64 {
    (ticks as f64 / clock_ticks_per_second() as f64 * 100.0).round() / 100.0
}

/// The unit of /proc's CPU times (`sysconf(_SC_CLK_TCK)`), read from the auxiliary vector the
/// kernel gave this process (`AT_CLKTCK`, native-endian word pairs): no libc call, no unsafe.
/// 100, Linux's USER_HZ on every mainstream architecture, when it cannot be read.
fn clock_ticks_per_second() -> u64 {
    const AT_CLKTCK: u64 = 17;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else { return 100 };
    let word = |c: &[u8]| c.try_into().map(u64::from_ne_bytes).unwrap_or(0);
    auxv.chunks_exact(16)
        .find(|pair| word(&pair[..8]) == AT_CLKTCK)
        .map(|pair| word(&pair[8..]))
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// Peak RSS of the watched pids and of this process, updated every second until dropped.
pub struct Sampler {
    peaks: Arc<Mutex<(u64, u64)>>,
    task: JoinHandle<()>,
}

impl Sampler {
    pub fn start(pids: Vec<u32>) -> Sampler {
        let peaks = Arc::new(Mutex::new((0, 0)));
        let shared = Arc::clone(&peaks);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let (them, me) = (Usage::of(&pids), Usage::own());
                let mut p = shared.lock().unwrap_or_else(PoisonError::into_inner);
                *p = (p.0.max(them.rss_kb), p.1.max(me.rss_kb));
            }
        });
        Sampler { peaks, task }
    }

    /// (peak RSS of the pids, peak RSS of this process) in kB, including `last` readings.
    pub fn peaks(&self, last: Usage, own: Usage) -> (u64, u64) {
        let p = *self.peaks.lock().unwrap_or_else(PoisonError::into_inner);
        (p.0.max(last.rss_kb), p.1.max(own.rss_kb))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = Usage::of(&[std::process::id()]);
        assert!(me.rss_kb > 0);
        assert!(Usage::of(&[std::process::id(), u32::MAX]).rss_kb > 0, "a gone pid counts as zero");
    }

    #[test]
    fn clock_tick_matches_getconf() {
        let out = std::process::Command::new("getconf").arg("CLK_TCK").output();
        if let Some(out) = out.ok().filter(|o| o.status.success()) {
            let hz: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
            assert_eq!(clock_ticks_per_second(), hz);
        }
    }
}
