//! A polkit text agent for the duration of a command, the way systemctl does it.
//!
//! When kairos-ext runs on a terminal it starts `pkttyagent`, waits until the agent has
//! registered (it closes the notify descriptor then), and marks its calls as allowing
//! interactive authorization, so polkit can ask for a password right there.

use std::io::{IsTerminal, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use rustix::io::FdFlags;

const PKTTYAGENT: &str = "/usr/bin/pkttyagent";

/// A running agent; stopped when dropped.
pub struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether this invocation may ask the user for a password.
pub fn interactive(no_ask_password: bool) -> bool {
    !no_ask_password && std::io::stdin().is_terminal()
}

/// Starts `pkttyagent` and waits for it to register. `None` when it is not installed or
/// fails; polkit then answers without interaction and the caller sees why.
pub fn start() -> Option<Agent> {
    if !std::path::Path::new(PKTTYAGENT).exists() {
        return None;
    }
    let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    // The agent must inherit the write end: clear CLOEXEC on it alone, and only now,
    // right before the spawn.
    let flags = rustix::io::fcntl_getfd(&write_end).ok()?;
    rustix::io::fcntl_setfd(&write_end, flags - FdFlags::CLOEXEC).ok()?;
    let child = Command::new(PKTTYAGENT)
        .arg("--notify-fd")
        .arg(write_end.as_raw_fd().to_string())
        .arg("--fallback")
        .stdout(Stdio::null())
        .spawn();
    drop(write_end);
    let child = child.ok()?;
    wait_registered(read_end);
    Some(Agent(child))
}

/// Blocks until the agent closes its end of the pipe (registered, or exited).
fn wait_registered(read_end: OwnedFd) {
    let mut file = std::fs::File::from(read_end);
    let mut buf = [0u8; 16];
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}
