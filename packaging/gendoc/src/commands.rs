//! One man page section for all the verbs of a command, each with its own options.
//!
//! clap_mangen lists verbs as references to per-verb pages (`kairos-ext-install(1)`).
//! A tool with a dozen short verbs reads better as one page, the way systemctl(1) does it.

use clap::{Arg, Command};
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

/// Renders `.SH COMMANDS` with one `.SS` per verb: usage, description, options.
pub fn section(cmd: &Command) -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let mut heading = sub.get_name().to_owned();
        if sub.get_arguments().any(|a| !a.is_positional() && !is_inherited(a)) {
            heading.push_str(" [OPTIONS]");
        }
        for positional in sub.get_positionals() {
            heading.push(' ');
            heading.push_str(&positional_usage(positional));
        }
        roff.control("SS", [heading.as_str()]);
        paragraphs(&mut roff, sub.get_long_about().or_else(|| sub.get_about()).map(ToString::to_string));
        let args: Vec<&Arg> = sub.get_arguments().filter(|a| !a.is_hide_set() && !is_inherited(a)).collect();
        for arg in args.iter().filter(|a| a.is_positional()).chain(args.iter().filter(|a| !a.is_positional())) {
            roff.control("TP", []);
            roff.text(arg_header(arg));
            let help = arg.get_long_help().or_else(|| arg.get_help()).map(ToString::to_string).unwrap_or_default();
            roff.text([roman(help)]);
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_owned())
                .collect();
            if !values.is_empty() && arg.get_action().takes_values() {
                roff.text([Inline::LineBreak, roman(format!("One of: {}.", values.join(", ")))]);
            }
        }
    }
    roff.to_roff()
}

/// Global options and `--help`/`--version` are documented once, under OPTIONS.
fn is_inherited(arg: &Arg) -> bool {
    arg.is_global_set() || matches!(arg.get_id().as_str(), "help" | "version")
}

fn positional_usage(arg: &Arg) -> String {
    let name = value_name(arg);
    if arg.is_required_set() { name } else { format!("[{name}]") }
}

fn arg_header(arg: &Arg) -> Vec<Inline> {
    if arg.is_positional() {
        return vec![italic(value_name(arg))];
    }
    let mut header = Vec::new();
    if let Some(short) = arg.get_short() {
        header.push(bold(format!("-{short}")));
        header.push(roman(", "));
    }
    if let Some(long) = arg.get_long() {
        header.push(bold(format!("--{long}")));
    }
    if arg.get_action().takes_values() {
        // `--json[=MODE]`: a value that may be left out must be attached with `=`.
        let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        match (arg.is_require_equals_set(), optional) {
            (true, true) => {
                header.push(roman("[="));
                header.push(italic(value_name(arg)));
                header.push(roman("]"));
            }
            (true, false) => {
                header.push(roman("="));
                header.push(italic(value_name(arg)));
            }
            (false, _) => {
                header.push(roman(" "));
                header.push(italic(value_name(arg)));
            }
        }
    }
    header
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|names| names.first())
        .map(ToString::to_string)
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
}

/// Text whose blank lines separate paragraphs, as clap's long help has it.
pub fn paragraphs(roff: &mut Roff, text: Option<String>) {
    let Some(text) = text else { return };
    let mut first = true;
    for block in text.split("\n\n") {
        let block = block.trim();
        if block.is_empty() {
            continue;
        }
        if !first {
            roff.control("PP", []);
        }
        first = false;
        roff.text([roman(block.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))]);
    }
}
