//! The arguments of `check`, `update` and `rollback`, as clap sees them. A file of its
//! own so that `args.rs` stays the list of verbs; the man page generator reads both.

use clap::Args;
use kairos_extensions_dbus::ExtensionName;

use super::{OfflineArgs, OutputArgs};

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The extensions to check (default: every installed extension).
    pub names: Vec<ExtensionName>,
    /// Do what the configuration's auto_update says (off, check, or check and apply,
    /// merging now when auto_update_now is set), logging one line per extension: what
    /// kairos-extensions-update.timer runs.
    #[arg(long, conflicts_with = "names")]
    pub auto: bool,
    /// How to print.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Offline mode.
    #[command(flatten)]
    pub offline: OfflineArgs,
}

/// Arguments of `update`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["names", "all"]))]
pub struct UpdateArgs {
    /// The extensions to update, as NAME, or NAME@VERSION for a catalog install.
    #[arg(value_name = "NAME[@VERSION]")]
    pub names: Vec<Target>,
    /// Every extension that has an update (through the service: that the last check
    /// found; offline: checked now).
    #[arg(long)]
    pub all: bool,
    /// Merge the new image at once where the extension is merged now (only with the
    /// live root).
    #[arg(long)]
    pub now: bool,
    /// Offline mode.
    #[command(flatten)]
    pub offline: OfflineArgs,
}

/// One word of `update`: an extension's name, and the version wanted, for a catalog
/// install (`k3s@1.32.1`). Parsed by clap, so a bad word is a usage error (exit 2) that
/// names the argument, as a bad name is for `check` and `rollback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The extension.
    pub name: ExtensionName,
    /// The version after the `@`, when there is one.
    pub version: Option<String>,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(word: &str) -> Result<Self, String> {
        let (name, version) = match word.split_once('@') {
            Some((_, "")) => return Err("a version must follow the @".to_owned()),
            Some((name, version)) => (name, Some(version.to_owned())),
            None => (word, None),
        };
        Ok(Self { name: ExtensionName::new(name).map_err(|e| e.to_string())?, version })
    }
}

/// Arguments of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The extension's exact name.
    pub name: ExtensionName,
    /// Merge the restored image at once where the extension is merged now (only with
    /// the live root).
    #[arg(long)]
    pub now: bool,
    /// Offline mode.
    #[command(flatten)]
    pub offline: OfflineArgs,
}
