//! Signals to processes a test started (pausing a store, stopping a gateway), by pid — never by
//! name, so a test never touches another test's processes.

use std::process::Command;

#[derive(Debug, Clone, Copy)]
pub enum Signal {
    Stop,
    Cont,
    Term,
    Quit,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Signal::Stop => "-STOP",
            Signal::Cont => "-CONT",
            Signal::Term => "-TERM",
            Signal::Quit => "-QUIT",
        }
    }
}

/// Sends `sig` to `pid` (a process that has exited is not an error).
pub fn signal(pid: u32, sig: Signal) {
    let _ = Command::new("kill").args([sig.flag(), &pid.to_string()]).status();
}

/// Every live process below `pid` (children, their children, …), from `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after its last ')'.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}
