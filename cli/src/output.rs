//! The one place that decides how kairos-ext prints: JSON or text, colour, pager,
//! legend, quiet. Every verb, in both modes, prints through an [`Output`], so a new
//! verb gets `--json`, `--no-pager`, `--no-legend` and `-q` by flattening
//! [`OutputArgs`] into its arguments and calling these methods.
//!
//! What each option touches:
//! - data (`list`, `inspect`, `status`, `jobs`, `refresh`, `monitor`): JSON when asked,
//!   else text, through the pager on a terminal (not `monitor`, which never ends);
//! - confirmations of a change (`Installed k3s ...`), progress and hints: not with `-q`;
//! - errors: always, on standard error.

use anyhow::Result;
use serde::Serialize;

use crate::args::{JsonMode, OutputArgs};
use crate::pager::Pager;
use crate::style::Style;

/// How this invocation prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: Option<JsonMode>,
    legend: bool,
    pager: bool,
    quiet: bool,
    style: Style,
}

impl Output {
    /// The output of a verb with `args` (`None` for verbs that print no data).
    pub fn new(quiet: bool, args: Option<&OutputArgs>) -> Self {
        let json = args.and_then(|a| a.json).filter(|mode| *mode != JsonMode::Off);
        Self {
            json,
            legend: !args.is_some_and(|a| a.no_legend),
            pager: !args.is_some_and(|a| a.no_pager),
            quiet,
            style: if json.is_some() { Style::PLAIN } else { Style::for_stdout() },
        }
    }

    /// Whether data goes out as JSON.
    pub fn is_json(&self) -> bool {
        self.json.is_some()
    }

    /// Whether progress and confirmations are shown.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// Prints a document: `value` as JSON when asked, else the text `text` makes,
    /// through the pager on a terminal.
    pub fn data<T: Serialize>(&self, value: &T, text: impl FnOnce(Style, bool) -> String) -> Result<()> {
        match self.json {
            Some(mode) => self.print(&format!("{}\n", json(value, mode)?)),
            None => {
                let text = text(self.style, self.legend);
                match self.pager.then(Pager::for_stdout).flatten() {
                    Some(pager) => pager.show(text).or_else(|text| self.print(&text)),
                    None => self.print(&text),
                }
            }
        }
    }

    /// Prints one record of a stream (`monitor`): `value` as JSON when asked, else `text`.
    pub fn record<T: Serialize>(&self, value: &T, text: &str) -> Result<()> {
        match self.json {
            Some(mode) => self.print(&format!("{}\n", json(value, mode)?)),
            None => self.print(&format!("{text}\n")),
        }
    }

    /// Confirms a change (`Enabled k3s for common`), unless quiet.
    pub fn said(&self, line: &str) -> Result<()> {
        if self.quiet { Ok(()) } else { self.print(&format!("{line}\n")) }
    }

    /// A hint for people on standard error, unless quiet, without legend, or printing JSON.
    pub fn hint(&self, line: &str) {
        if !self.quiet && self.legend && !self.is_json() {
            eprintln!("{line}");
        }
    }

    /// Writes to standard output; a closed pipe (`| head`) ends the output quietly.
    fn print(&self, text: &str) -> Result<()> {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// `value` as JSON of `mode`.
fn json<T: Serialize>(value: &T, mode: JsonMode) -> Result<String> {
    Ok(match mode {
        JsonMode::Pretty => serde_json::to_string_pretty(value)?,
        JsonMode::Short | JsonMode::Off => serde_json::to_string(value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_modes_shape_the_document() -> Result<()> {
        let value = serde_json::json!({"merged": ["a"]});
        assert_eq!(json(&value, JsonMode::Short)?, r#"{"merged":["a"]}"#);
        assert_eq!(json(&value, JsonMode::Pretty)?, "{\n  \"merged\": [\n    \"a\"\n  ]\n}");
        Ok(())
    }

    #[test]
    fn off_is_text_and_json_is_never_coloured() {
        let args = |json| OutputArgs { json, no_pager: true, no_legend: false };
        assert!(!Output::new(false, Some(&args(Some(JsonMode::Off)))).is_json());
        let short = Output::new(false, Some(&args(Some(JsonMode::Short))));
        assert!(short.is_json() && short.style == Style::PLAIN);
        assert!(Output::new(false, None).legend);
    }
}
