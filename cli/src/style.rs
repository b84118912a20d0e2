//! Colour on a terminal, the way systemd tools decide it: only when standard output is
//! a terminal, never with `NO_COLOR` set (<https://no-color.org>) or `TERM=dumb`.
//! `SYSTEMD_COLORS` forces it on or off, as it does for systemctl.

/// What a piece of text means, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    /// No colour.
    Plain,
    /// All is well (`ok`, `done`): green.
    Good,
    /// Something is wrong (a bad status, `failed`): red.
    Bad,
    /// A heading: bold.
    Heading,
}

/// Whether output is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// No colour at all.
    pub const PLAIN: Style = Style { colour: false };

    /// The style for standard output, from the environment.
    pub fn for_stdout() -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
        Self::decide(tty, |name| std::env::var(name).ok())
    }

    /// The decision, given whether the output is a terminal and the environment.
    pub fn decide(tty: bool, env: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(forced) = env("SYSTEMD_COLORS").and_then(|v| boolean(&v)) {
            return Self { colour: forced };
        }
        let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = env("TERM").is_some_and(|t| t == "dumb");
        Self { colour: tty && !no_color && !dumb }
    }

    /// `text` in the colour of `paint`.
    pub fn paint(self, paint: Paint, text: &str) -> String {
        let code = match paint {
            _ if !self.colour || text.is_empty() => return text.to_owned(),
            Paint::Plain => return text.to_owned(),
            Paint::Good => "32",
            Paint::Bad => "31",
            Paint::Heading => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// systemd's booleans: `1 yes y true t on` and `0 no n false f off`.
fn boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn colour_only_on_a_terminal_that_wants_it() {
        assert!(Style::decide(true, env(&[("TERM", "xterm")])).colour);
        assert!(!Style::decide(false, env(&[("TERM", "xterm")])).colour);
        assert!(!Style::decide(true, env(&[("NO_COLOR", "1")])).colour);
        assert!(Style::decide(true, env(&[("NO_COLOR", "")])).colour, "an empty NO_COLOR is unset");
        assert!(!Style::decide(true, env(&[("TERM", "dumb")])).colour);
        assert!(Style::decide(false, env(&[("SYSTEMD_COLORS", "yes")])).colour);
        assert!(!Style::decide(true, env(&[("SYSTEMD_COLORS", "0")])).colour);
    }

    #[test]
    fn paint_wraps_text_in_escapes_only_when_colouring() {
        let on = Style::decide(true, env(&[]));
        assert_eq!(on.paint(Paint::Good, "ok"), "\x1b[32mok\x1b[0m");
        assert_eq!(on.paint(Paint::Bad, "invalid"), "\x1b[31minvalid\x1b[0m");
        assert_eq!(on.paint(Paint::Heading, "NAME"), "\x1b[1mNAME\x1b[0m");
        assert_eq!(on.paint(Paint::Plain, "x"), "x");
        assert_eq!(Style::PLAIN.paint(Paint::Bad, "invalid"), "invalid");
    }
}
