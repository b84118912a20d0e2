//! Long output through a pager, as systemctl does it: only when standard output is a
//! terminal and `--no-pager` is not given; `$SYSTEMD_PAGER`, else `$PAGER`, else
//! `less`, run through `sh -c`; `cat` or an empty value means none. `less` gets
//! `LESS=FRSXMK` (`$SYSTEMD_LESS` overrides it), so it quits at once when the text fits
//! on the screen, keeps colours and lets Ctrl-C end it.
//!
//! As root under sudo or pkexec (or with `SYSTEMD_PAGERSECURE=1`) the pager variables
//! are not trusted: only `less` runs, in its secure mode (`LESSSECURE=1`), so that the
//! pager cannot be used to run commands as root.

use std::io::Write;
use std::process::{Command, Stdio};

/// The pager to run, if any: `None` for no pager.
#[derive(Debug, PartialEq, Eq)]
pub struct Pager {
    /// The shell command line.
    command: String,
    /// Whether to run it in secure mode.
    secure: bool,
}

impl Pager {
    /// The pager for this process, if its standard output is a terminal.
    pub fn for_stdout() -> Option<Self> {
        if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return None;
        }
        let root = rustix::process::geteuid().is_root();
        Self::choose(root, |name| std::env::var(name).ok())
    }

    /// The choice, given whether we run as root and the environment.
    pub fn choose(root: bool, env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let secure = match env("SYSTEMD_PAGERSECURE").as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("1" | "yes" | "y" | "true" | "t" | "on") => true,
            Some("0" | "no" | "n" | "false" | "f" | "off") => false,
            _ => root && (env("SUDO_UID").is_some() || env("PKEXEC_UID").is_some()),
        };
        let chosen = env("SYSTEMD_PAGER").or_else(|| env("PAGER")).unwrap_or_else(|| "less".to_owned());
        let chosen = chosen.trim();
        if chosen.is_empty() || chosen == "cat" {
            return None;
        }
        let command = if secure { "less" } else { chosen };
        Some(Self { command: command.to_owned(), secure })
    }

    /// Shows `text` through the pager and waits for it to end. `Err(text)` when the
    /// pager could not be started, so the caller prints it itself.
    pub fn show(self, text: String) -> Result<(), String> {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(&self.command).stdin(Stdio::piped());
        let less = std::env::var("SYSTEMD_LESS").unwrap_or_else(|_| "FRSXMK".to_owned());
        command.env("LESS", less);
        if std::env::var_os("LESSCHARSET").is_none() {
            command.env("LESSCHARSET", "utf-8");
        }
        if self.secure {
            command.env("LESSSECURE", "1");
        }
        let Ok(mut child) = command.spawn() else { return Err(text) };
        if let Some(mut stdin) = child.stdin.take() {
            // A pager that quits early closes the pipe: the rest is not wanted.
            let _ = stdin.write_all(text.as_bytes());
        }
        let _ = child.wait();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(root: bool, vars: &[(&str, &str)]) -> Option<Pager> {
        Pager::choose(root, |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    fn pager(command: &str, secure: bool) -> Option<Pager> {
        Some(Pager { command: command.to_owned(), secure })
    }

    #[test]
    fn systemd_pager_then_pager_then_less() {
        assert_eq!(choose(false, &[]), pager("less", false));
        assert_eq!(choose(false, &[("PAGER", "more")]), pager("more", false));
        assert_eq!(choose(false, &[("PAGER", "more"), ("SYSTEMD_PAGER", "most")]), pager("most", false));
        assert_eq!(choose(false, &[("PAGER", "cat")]), None);
        assert_eq!(choose(false, &[("SYSTEMD_PAGER", "")]), None);
    }

    #[test]
    fn root_through_sudo_gets_secure_less_whatever_the_variables_say() {
        assert_eq!(choose(true, &[("PAGER", "vim -"), ("SUDO_UID", "1000")]), pager("less", true));
        assert_eq!(choose(false, &[("PAGER", "vim -"), ("SYSTEMD_PAGERSECURE", "1")]), pager("less", true));
        assert_eq!(choose(true, &[("PAGER", "more")]), pager("more", false));
        assert_eq!(choose(true, &[("PAGER", "cat"), ("SUDO_UID", "1000")]), None, "cat is no pager in any mode");
        assert_eq!(
            choose(true, &[("PAGER", "more"), ("PKEXEC_UID", "0"), ("SYSTEMD_PAGERSECURE", "no")]),
            pager("more", false)
        );
    }
}
