//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kairos_extensions_dbus::{BootState, ExtensionName};

#[path = "update_args.rs"]
mod update_args;
pub use update_args::{CheckArgs, RollbackArgs, UpdateArgs};

/// Manage systemd system extensions.
///
/// Without --root, kairos-ext talks to the kairos-extensionsd service on the system bus.
/// With --root DIR it works offline on the system tree at DIR, with the same engine the
/// service uses: image builders prepare a root this way, and root can manage the running
/// system with --root / when the service is not available.
#[derive(Debug, Parser)]
#[command(name = "kairos-ext", version, propagate_version = true)]
pub struct Cli {
    /// Work offline on the system tree at DIR instead of through the service.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Configuration file for offline mode (default: DIR/etc/kairos/extensions.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Never ask for a password: do not start a polkit agent, and let polkit answer
    /// without interaction.
    #[arg(long, global = true)]
    pub no_ask_password: bool,
    /// Log what happens (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List installed extensions with their version, enabled boot states and merge state.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show everything known about one extension, including its extension-release.
    Inspect {
        /// The extension's exact name.
        name: ExtensionName,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Install an extension image.
    ///
    /// SOURCE is one of:
    ///
    /// - a local image: ./k3s.raw, /abs/k3s.raw or file:///abs/k3s.raw. Through the
    ///   service it is handed over as an open file, so it only has to be readable by you.
    ///
    /// - an OCI image: oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX] (docker:// and
    ///   container:// too). Its layers hold NAME.raw files at their root, or it is a
    ///   single-blob artifact. An image with several extensions installs them all unless
    ///   --name picks one. Credentials come from registry_auth in the configuration.
    ///
    /// - a download: https://HOST/PATH[#sha256=HEX] (http:// too).
    ///
    /// Nothing becomes visible until the image is checked: it must carry
    /// usr/lib/extension-release.d/extension-release.NAME and be compatible with the target
    /// system. It is stored as NAME.raw. Through the service, Ctrl-C cancels the install.
    Install(InstallArgs),
    /// Enable an extension for a boot state (idempotent).
    Enable(StateArgs),
    /// Disable an extension for a boot state (idempotent).
    Disable(StateArgs),
    /// Remove an extension: disable it everywhere, then delete the image.
    Remove {
        /// The extension's exact name.
        name: ExtensionName,
        /// Also unmerge it from the running system now.
        #[arg(long)]
        now: bool,
    },
    /// Merge the activated extensions again and report what is merged.
    Refresh,
    /// Ask the source of each extension whether it has something newer, without
    /// downloading it: a registry tag is resolved, an HTTP(S) URL answers a HEAD.
    Check(CheckArgs),
    /// Update extensions from the source they were installed from; the image replaced is
    /// kept for `rollback`.
    Update(UpdateArgs),
    /// Put the previous version of an extension back, in one step.
    Rollback(RollbackArgs),
    /// List running jobs (service only).
    Jobs,
    /// Cancel a running job (service only).
    Cancel {
        /// The job id, as `jobs` shows it.
        id: u64,
    },
    /// Show the service's version, the boot state, what is merged and the image policy
    /// (service only).
    Status,
    /// Print every signal of the service as it happens (service only).
    Monitor {
        /// Print one JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// Whether the verb needs the running service.
    pub fn needs_service(&self) -> bool {
        matches!(self, Self::Jobs | Self::Cancel { .. } | Self::Status | Self::Monitor { .. })
    }
}

/// Boot states as clap sees them: the four spellings are the possible values, so help
/// and shell completions list them.
fn boot_states() -> impl clap::builder::TypedValueParser<Value = BootState> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(BootState::ALL.map(BootState::as_str)).try_map(|s| s.parse::<BootState>())
}

/// Arguments of `install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// A local path or file:// URL, oci://REFERENCE, or https://URL.
    pub source: String,
    /// Enable for this boot state once installed (repeatable).
    #[arg(long = "enable", value_name = "STATE", value_parser = boot_states())]
    pub enable: Vec<BootState>,
    /// Apply --enable to the running system too (only with the live root).
    #[arg(long)]
    pub now: bool,
    /// Install only the extension NAME: the image's extension-release.NAME when it
    /// carries several, or that one of an OCI image's extensions.
    #[arg(long, value_name = "NAME")]
    pub name: Option<ExtensionName>,
    /// Replace an installed extension of the same name.
    #[arg(long)]
    pub replace: bool,
    /// Refuse the image unless its sha256 is this (sha256:<64 hex>); for oci:// it may
    /// instead pin the manifest or the index.
    #[arg(long, value_name = "DIGEST")]
    pub digest: Option<String>,
}

/// Arguments of `enable` and `disable`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("state").required(true).args(["boot", "active", "passive", "recovery", "common"]))]
pub struct StateArgs {
    /// The extension's exact name.
    pub name: ExtensionName,
    /// The boot state: active, passive, recovery or common (every boot).
    #[arg(long, value_name = "STATE", value_parser = boot_states())]
    pub boot: Option<BootState>,
    /// Same as --boot active.
    #[arg(long)]
    pub active: bool,
    /// Same as --boot passive.
    #[arg(long)]
    pub passive: bool,
    /// Same as --boot recovery.
    #[arg(long)]
    pub recovery: bool,
    /// Same as --boot common.
    #[arg(long)]
    pub common: bool,
    /// Apply to the running system too when the state concerns this boot (only with the
    /// live root).
    #[arg(long)]
    pub now: bool,
}

impl StateArgs {
    /// The boot state, whichever spelling was used.
    pub fn state(&self) -> BootState {
        match (self.boot, self.active, self.passive, self.recovery) {
            (Some(state), ..) => state,
            (None, true, ..) => BootState::Active,
            (None, _, true, _) => BootState::Passive,
            (None, _, _, true) => BootState::Recovery,
            _ => BootState::Common,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn kairos_agent_spellings_map_to_states() -> Result<(), clap::Error> {
        for (flag, state) in [
            ("--active", BootState::Active),
            ("--passive", BootState::Passive),
            ("--recovery", BootState::Recovery),
            ("--common", BootState::Common),
        ] {
            let cli = Cli::try_parse_from(["kairos-ext", "enable", "k3s", flag])?;
            let Command::Enable(args) = cli.command else { panic!("parsed as another command") };
            assert_eq!(args.state(), state);
        }
        Ok(())
    }

    #[test]
    fn exactly_one_state_is_required() {
        assert!(Cli::try_parse_from(["kairos-ext", "enable", "k3s"]).is_err());
        assert!(Cli::try_parse_from(["kairos-ext", "enable", "k3s", "--active", "--boot", "common"]).is_err());
        assert!(Cli::try_parse_from(["kairos-ext", "enable", "k3s", "--boot", "bogus"]).is_err());
        assert!(Cli::try_parse_from(["kairos-ext", "enable", "../x", "--active"]).is_err());
    }
}
