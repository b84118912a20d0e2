//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kairos_extensions_dbus::{BootState, ExtensionName};

#[path = "update_args.rs"]
pub(crate) mod update_args;
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
    /// Work offline on the system tree at DIR instead of through the service (also
    /// accepted after the verb, by the verbs that have an offline form).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Configuration file for offline mode (default: DIR/etc/kairos/extensions.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Never ask for a password: do not start a polkit agent, and let polkit answer
    /// without interaction.
    #[arg(long, global = true)]
    pub no_ask_password: bool,
    /// Log what happens: through the service, each call, its job and the job's end
    /// (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print no confirmations, progress or hints; data that was asked for and errors
    /// are still printed.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The offline root and configuration, from before or after the verb; `Err` with a
    /// sentence for people when they are given twice or to a verb that has no offline form.
    pub fn offline(&self) -> Result<Option<(PathBuf, Option<PathBuf>)>, String> {
        let verb = self.command.offline();
        let root = match (&self.root, verb.and_then(|o| o.root.as_ref())) {
            (Some(_), Some(_)) => return Err("--root is given twice".to_owned()),
            (Some(root), None) | (None, Some(root)) => Some(root.clone()),
            (None, None) => None,
        };
        let config = match (&self.config, verb.and_then(|o| o.config.as_ref())) {
            (Some(_), Some(_)) => return Err("--config is given twice".to_owned()),
            (Some(config), None) | (None, Some(config)) => Some(config.clone()),
            (None, None) => None,
        };
        match (root, config) {
            (Some(_), _) if self.command.needs_service() => Err(format!(
                "{} talks to the running service and has no offline form; drop --root",
                self.command.verb()
            )),
            (None, Some(_)) => {
                Err("--config applies to offline mode (--root); the service reads its own configuration".to_owned())
            }
            (Some(root), config) => Ok(Some((root, config))),
            (None, None) => Ok(None),
        }
    }
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List installed extensions with their version, enabled boot states and merge state.
    List {
        /// Only the extensions enabled for this boot state.
        #[command(flatten)]
        filter: BootFilter,
        /// How to print.
        #[command(flatten)]
        output: OutputArgs,
        /// Offline mode.
        #[command(flatten)]
        offline: OfflineArgs,
    },
    /// Show everything known about one extension, including its extension-release.
    Inspect {
        /// The extension's exact name.
        name: ExtensionName,
        /// How to print.
        #[command(flatten)]
        output: OutputArgs,
        /// Offline mode.
        #[command(flatten)]
        offline: OfflineArgs,
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
    /// - a catalog entry: NAME, NAME@VERSION or NAME@CONSTRAINT (k3s, k3s@1.32.1,
    ///   k3s@^1.32, 'k3s@>=1.30, <2'), or catalog:NAME[@VERSION]. The first configured
    ///   Kairos catalog that has NAME names a digest-pinned OCI image for this
    ///   architecture; a bare name follows the latest version, a constraint the newest
    ///   match, a version is a pin. A local file of that name wins over the catalogs.
    ///
    /// Nothing becomes visible until the image is checked: it must carry
    /// usr/lib/extension-release.d/extension-release.NAME and be compatible with the target
    /// system. It is stored as NAME.raw. When the name is known before anything is
    /// downloaded (--name, or a file or URL called NAME.raw) and that extension is
    /// installed, the install fails right away unless --replace is given. Through the
    /// service, Ctrl-C cancels the install.
    Install(InstallArgs),
    /// Enable an extension for a boot state (idempotent).
    Enable(StateArgs),
    /// Disable an extension for a boot state (idempotent).
    Disable(StateArgs),
    /// Remove an extension: disable it everywhere, then delete the image.
    Remove {
        /// The extension's exact name.
        name: ExtensionName,
        /// Also unmerge it from the running system now (only with the live root).
        #[arg(long)]
        now: bool,
        /// Offline mode.
        #[command(flatten)]
        offline: OfflineArgs,
    },
    /// Merge the activated extensions again and report what is merged.
    Refresh {
        /// How to print.
        #[command(flatten)]
        output: OutputArgs,
        /// Offline mode.
        #[command(flatten)]
        offline: OfflineArgs,
    },
    /// Ask the source of each extension whether it has something newer, without
    /// downloading it: a registry tag is resolved, an HTTP(S) URL answers a HEAD.
    Check(CheckArgs),
    /// Update extensions from the source they were installed from; the image replaced is
    /// kept for `rollback`.
    Update(UpdateArgs),
    /// Put the previous version of an extension back, in one step.
    Rollback(RollbackArgs),
    /// List the entries of the Kairos catalogs: name, title, the latest version this
    /// machine can install, and the version installed.
    Search {
        /// Only entries whose name, title or description contains TEXT (any case).
        text: Option<String>,
        /// Catalogs to read.
        #[command(flatten)]
        catalogs: CatalogArgs,
        /// How to print.
        #[command(flatten)]
        output: OutputArgs,
        /// Offline mode.
        #[command(flatten)]
        offline: OfflineArgs,
    },
    /// List running and queued jobs (service only).
    Jobs {
        /// How to print.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Cancel a running or queued job (service only).
    Cancel {
        /// The job id, as `jobs` shows it.
        id: u64,
    },
    /// Show the service's version, the boot state, what is merged and the image policy
    /// (service only).
    Status {
        /// How to print.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print every signal of the service as it happens, with the time it arrived
    /// (service only).
    Monitor {
        /// How to print.
        #[command(flatten)]
        output: OutputArgs,
    },
}

impl Command {
    /// Whether the verb needs the running service.
    pub fn needs_service(&self) -> bool {
        self.offline().is_none()
    }

    /// The verb as typed.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::List { .. } => "list",
            Self::Inspect { .. } => "inspect",
            Self::Install(_) => "install",
            Self::Enable(_) => "enable",
            Self::Disable(_) => "disable",
            Self::Remove { .. } => "remove",
            Self::Refresh { .. } => "refresh",
            Self::Jobs { .. } => "jobs",
            Self::Cancel { .. } => "cancel",
            Self::Status { .. } => "status",
            Self::Monitor { .. } => "monitor",
            Self::Search { .. } => "search",
            Self::Check(_) => "check",
            Self::Update(_) => "update",
            Self::Rollback(_) => "rollback",
        }
    }

    /// The catalogs given with --catalog; empty for verbs that read no catalog.
    pub fn catalogs(&self) -> &[String] {
        match self {
            Self::Install(args) => &args.catalogs.catalog,
            Self::Search { catalogs, .. } => &catalogs.catalog,
            _ => &[],
        }
    }

    /// The offline options given after the verb; `None` for verbs without an offline form.
    pub fn offline(&self) -> Option<&OfflineArgs> {
        match self {
            Self::List { offline, .. }
            | Self::Inspect { offline, .. }
            | Self::Remove { offline, .. }
            | Self::Refresh { offline, .. }
            | Self::Search { offline, .. } => Some(offline),
            Self::Install(args) => Some(&args.offline),
            Self::Check(args) => Some(&args.offline),
            Self::Update(args) => Some(&args.offline),
            Self::Rollback(args) => Some(&args.offline),
            Self::Enable(args) | Self::Disable(args) => Some(&args.offline),
            Self::Jobs { .. } | Self::Cancel { .. } | Self::Status { .. } | Self::Monitor { .. } => None,
        }
    }

    /// How the verb prints data; `None` for verbs that only report a change.
    pub fn output(&self) -> Option<&OutputArgs> {
        match self {
            Self::List { output, .. }
            | Self::Inspect { output, .. }
            | Self::Refresh { output, .. }
            | Self::Search { output, .. }
            | Self::Jobs { output }
            | Self::Status { output }
            | Self::Monitor { output } => Some(output),
            Self::Check(args) => Some(&args.output),
            Self::Install(_)
            | Self::Enable(_)
            | Self::Disable(_)
            | Self::Remove { .. }
            | Self::Update(_)
            | Self::Rollback(_)
            | Self::Cancel { .. } => None,
        }
    }
}

/// The options of offline mode, on the verbs that have one. The same two are accepted
/// before the verb.
#[derive(Debug, Default, Args)]
pub struct OfflineArgs {
    /// Work offline on the system tree at DIR instead of through the service.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Configuration file for offline mode (default: DIR/etc/kairos/extensions.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The catalogs a verb reads, on the verbs that read one.
#[derive(Debug, Default, Args)]
pub struct CatalogArgs {
    /// Read this Kairos catalog (releases.json URL or path) instead of the configured ones
    /// (repeatable; offline mode only: the service reads the catalogs it is configured
    /// with).
    #[arg(long, value_name = "URL|PATH")]
    pub catalog: Vec<String>,
}

/// How a verb that prints data prints it, as systemctl spells it.
#[derive(Debug, Default, Args)]
pub struct OutputArgs {
    /// Print JSON: pretty (indented), short (one line per document) or off (text).
    /// A bare --json means short.
    #[arg(long, value_name = "MODE", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "short")]
    pub json: Option<JsonMode>,
    /// Do not pipe the output into a pager.
    #[arg(long)]
    pub no_pager: bool,
    /// Do not print column headers, hints and empty-result notes.
    #[arg(long)]
    pub no_legend: bool,
}

/// The JSON forms of `--json=MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JsonMode {
    /// Indented, for people.
    Pretty,
    /// One line per document, for scripts.
    Short,
    /// Text, not JSON.
    Off,
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
    /// A local path or file:// URL, oci://REFERENCE, https://URL, or a catalog entry
    /// (NAME[@VERSION]).
    pub source: String,
    /// Catalogs to read.
    #[command(flatten)]
    pub catalogs: CatalogArgs,
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
    #[arg(long, value_name = "DIGEST", value_parser = digest)]
    pub digest: Option<String>,
    /// Offline mode.
    #[command(flatten)]
    pub offline: OfflineArgs,
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
    /// Offline mode.
    #[command(flatten)]
    pub offline: OfflineArgs,
}

impl StateArgs {
    /// The boot state, whichever spelling was used.
    pub fn state(&self) -> BootState {
        chosen(self.boot, [self.active, self.passive, self.recovery, self.common]).unwrap_or(BootState::Common)
    }
}

/// `list`'s filter: the spellings of enable and disable (kairos-agent's `--active` too),
/// none required.
#[derive(Debug, Default, Args)]
#[command(group = clap::ArgGroup::new("filter").args(["boot", "active", "passive", "recovery", "common"]))]
pub struct BootFilter {
    /// Only the extensions enabled for this boot state.
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
}

impl BootFilter {
    /// The state to filter on, if any.
    pub fn state(&self) -> Option<BootState> {
        chosen(self.boot, [self.active, self.passive, self.recovery, self.common])
    }
}

/// The state named by `--boot STATE` or by one of the four flags (in `BootState::ALL` order).
fn chosen(boot: Option<BootState>, flags: [bool; 4]) -> Option<BootState> {
    boot.or_else(|| BootState::ALL.into_iter().zip(flags).find_map(|(state, set)| set.then_some(state)))
}

/// `sha256:` and 64 hex digits, checked while parsing so that a typo is a usage error
/// offline and through the service alike.
fn digest(text: &str) -> Result<String, String> {
    const EXPECTED: &str = "invalid digest, expected sha256:<64 hex digits>";
    let hex = text.strip_prefix("sha256:").ok_or(EXPECTED)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EXPECTED.to_owned());
    }
    Ok(text.to_ascii_lowercase())
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

    fn output_of(args: &[&str]) -> Result<Option<JsonMode>, clap::Error> {
        let cli = Cli::try_parse_from(args)?;
        Ok(cli.command.output().and_then(|o| o.json))
    }

    #[test]
    fn json_takes_a_mode_and_a_bare_json_means_short() -> Result<(), clap::Error> {
        assert_eq!(output_of(&["kairos-ext", "list", "--json"])?, Some(JsonMode::Short));
        assert_eq!(output_of(&["kairos-ext", "list", "--json=pretty"])?, Some(JsonMode::Pretty));
        assert_eq!(output_of(&["kairos-ext", "list", "--json=off"])?, Some(JsonMode::Off));
        assert_eq!(output_of(&["kairos-ext", "list"])?, None);
        // A bare --json never swallows the next word.
        assert_eq!(output_of(&["kairos-ext", "inspect", "--json", "k3s"])?, Some(JsonMode::Short));
        assert!(output_of(&["kairos-ext", "list", "--json=yaml"]).is_err());
        for verb in ["list", "refresh", "jobs", "status", "monitor"] {
            let cli = Cli::try_parse_from(["kairos-ext", verb, "--json=short", "--no-pager", "--no-legend", "-q"])?;
            assert!(cli.quiet && cli.command.output().is_some_and(|o| o.no_pager && o.no_legend), "{verb}");
        }
        assert!(Cli::try_parse_from(["kairos-ext", "enable", "k3s", "--active", "--json"]).is_err());
        Ok(())
    }

    #[test]
    fn list_filters_by_any_spelling_of_a_state() -> Result<(), clap::Error> {
        for (args, state) in [
            (vec!["--active"], Some(BootState::Active)),
            (vec!["--boot", "recovery"], Some(BootState::Recovery)),
            (vec!["--common"], Some(BootState::Common)),
            (vec![], None),
        ] {
            let cli = Cli::try_parse_from(["kairos-ext", "list"].into_iter().chain(args))?;
            let Command::List { filter, .. } = cli.command else { panic!("parsed as another command") };
            assert_eq!(filter.state(), state);
        }
        assert!(Cli::try_parse_from(["kairos-ext", "list", "--active", "--passive"]).is_err());
        Ok(())
    }

    #[test]
    fn root_goes_before_or_after_the_verb_but_never_to_a_service_only_verb() -> Result<(), clap::Error> {
        let before = Cli::try_parse_from(["kairos-ext", "--root", "/mnt", "list"])?;
        let after = Cli::try_parse_from(["kairos-ext", "list", "--root", "/mnt", "--config", "/c.toml"])?;
        assert_eq!(before.offline(), Ok(Some((PathBuf::from("/mnt"), None))));
        assert_eq!(after.offline(), Ok(Some((PathBuf::from("/mnt"), Some(PathBuf::from("/c.toml"))))));
        let twice = Cli::try_parse_from(["kairos-ext", "--root", "/a", "list", "--root", "/b"])?;
        assert!(twice.offline().is_err());
        for verb in ["jobs", "status", "monitor"] {
            assert!(Cli::try_parse_from(["kairos-ext", verb, "--root", "/"]).is_err(), "{verb} takes --root");
            let cli = Cli::try_parse_from(["kairos-ext", "--root", "/", verb])?;
            assert!(cli.offline().is_err_and(|e| e.contains("no offline form")), "{verb}");
        }
        assert!(Cli::try_parse_from(["kairos-ext", "cancel", "3", "--config", "/c"]).is_err());
        let config_alone = Cli::try_parse_from(["kairos-ext", "list", "--config", "/c"])?;
        assert!(config_alone.offline().is_err());
        Ok(())
    }

    #[test]
    fn a_malformed_digest_is_a_usage_error() {
        let good = format!("sha256:{}", "A".repeat(64));
        assert!(Cli::try_parse_from(["kairos-ext", "install", "x.raw", "--digest", good.as_str()]).is_ok());
        for bad in ["abc", "sha256:12", "md5:00"] {
            assert!(Cli::try_parse_from(["kairos-ext", "install", "x.raw", "--digest", bad]).is_err(), "{bad}");
        }
    }
}
