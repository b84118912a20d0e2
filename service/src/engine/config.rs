//! `/etc/kairos/extensions.toml`: optional, with defaults that match Kairos.
//!
//! Unknown keys and bad values are errors that name the key, so a typo never silently
//! falls back to a default on a system service that runs as root.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::policy::ImagePolicy;

/// Where the configuration lives, relative to the root.
pub const DEFAULT_PATH: &str = "/etc/kairos/extensions.toml";

/// How the merge is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshMode {
    /// `systemd-unit` when systemd runs the system, else `exec`.
    #[default]
    Auto,
    /// Restart `systemd-sysext.service`, so its drop-ins (the image policy) apply.
    SystemdUnit,
    /// Run `systemd-sysext refresh` directly.
    Exec,
}

/// What `kairos-extensions-update.timer` does (`kairos-ext check --auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoUpdate {
    /// Nothing: the timer's run ends at once.
    Off,
    /// Check every extension; the results go to the journal and the extension objects.
    #[default]
    Check,
    /// Check, then update every extension that has an update.
    Apply,
}

/// The service's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The image store (system path).
    pub store_dir: PathBuf,
    /// Where images are activated for the running system (system path).
    pub runtime_dir: PathBuf,
    /// Which images may be installed and activated: `permissive` (any valid image),
    /// `verity` (verity-protected, signed or not: `root=verity+signed+absent:usr=verity+signed+absent`),
    /// `strict` (signed by a trusted certificate only: `root=signed+absent:usr=signed+absent`),
    /// or any systemd image-policy string. Whatever it says, an image with verity is
    /// read only once its hash tree holds.
    #[serde(deserialize_with = "parse_policy")]
    pub image_policy: ImagePolicy,
    /// How merges are refreshed.
    pub refresh: RefreshMode,
    /// What the update timer does: `off`, `check` or `apply`.
    pub auto_update: AutoUpdate,
    /// Whether updates the timer applies are merged at once, where the extension is
    /// merged now; otherwise they take effect at the next refresh or boot.
    pub auto_update_now: bool,
    /// Registries (`host:port`) that may be reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// A containers-style `auth.json` with registry credentials.
    pub registry_auth: Option<PathBuf>,
    /// The largest image accepted, in bytes (after decompression).
    #[serde(deserialize_with = "parse_size")]
    pub max_image_size: u64,
    /// How many jobs may run at once.
    pub max_jobs: u32,
    /// Seconds of idleness after which the service exits; 0 keeps it running.
    pub idle_exit_sec: u64,
    /// Extra directories of trusted verity signing certificates.
    pub trusted_certificates: Vec<PathBuf>,
    /// Kairos catalogs (`releases.json`): http(s) URLs, or absolute paths of the system,
    /// searched in order for `catalog:NAME` installs.
    pub catalogs: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            store_dir: PathBuf::from("/var/lib/kairos/extensions"),
            runtime_dir: PathBuf::from("/run/extensions"),
            image_policy: ImagePolicy::Permissive,
            refresh: RefreshMode::Auto,
            auto_update: AutoUpdate::Check,
            auto_update_now: false,
            insecure_registries: Vec::new(),
            registry_auth: None,
            max_image_size: 8 << 30,
            max_jobs: 4,
            idle_exit_sec: 60,
            trusted_certificates: Vec::new(),
            catalogs: Vec::new(),
        }
    }
}

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read, or an explicit file is missing.
    #[error("cannot read configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad key or value.
    #[error("invalid configuration {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl Config {
    /// Loads the configuration for the system at `root`.
    ///
    /// An explicitly named file must exist; the default file may be absent, in which
    /// case the defaults apply.
    pub fn load(root: &Path, explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match explicit {
            Some(path) => (path.to_path_buf(), true),
            None => (root.join(DEFAULT_PATH.trim_start_matches('/')), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid { path, message })
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.message().to_owned() + &location(text, e.span()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for (key, path) in [("store_dir", &self.store_dir), ("runtime_dir", &self.runtime_dir)] {
            if !is_clean_absolute(path) {
                return Err(format!("{key} must be an absolute path without '..', got {path:?}"));
            }
        }
        if self.store_dir.starts_with(&self.runtime_dir) || self.runtime_dir.starts_with(&self.store_dir) {
            return Err("store_dir and runtime_dir must not contain one another".into());
        }
        for path in &self.trusted_certificates {
            if !is_clean_absolute(path) {
                return Err(format!("trusted_certificates entries must be absolute paths, got {path:?}"));
            }
        }
        if let Some(path) = &self.registry_auth
            && !path.is_absolute()
        {
            return Err(format!("registry_auth must be an absolute path, got {path:?}"));
        }
        for registry in &self.insecure_registries {
            let valid = !registry.is_empty()
                && !registry.contains("://")
                && !registry.contains('/')
                && registry.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                return Err(format!("insecure_registries entries must be host or host:port, got {registry:?}"));
            }
        }
        for catalog in &self.catalogs {
            super::catalogs::fetch::Location::parse(catalog)
                .map_err(|reason| format!("catalogs entry {catalog:?}: {reason}"))?;
        }
        if self.max_jobs == 0 {
            return Err("max_jobs must be at least 1".into());
        }
        if self.max_image_size == 0 {
            return Err("max_image_size must be greater than 0".into());
        }
        Ok(())
    }
}

fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute() && !path.components().any(|c| matches!(c, std::path::Component::ParentDir))
}

/// Says where a TOML error is, naming the key on that line when there is one, because
/// serde's type errors ("invalid type: string, expected u64") do not.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(start) = span.map(|s| s.start) else { return String::new() };
    let Some(before) = text.get(..start) else { return String::new() };
    let line_number = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_number - 1).unwrap_or("");
    match line.split_once('=').map(|(key, _)| key.trim()).filter(|k| !k.is_empty() && !k.starts_with('[')) {
        Some(key) => format!(" (key {key}, line {line_number})"),
        None => format!(" (line {line_number})"),
    }
}

fn parse_policy<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ImagePolicy, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|e| de::Error::custom(format!("image_policy: {e}")))
}

/// Accepts a byte count as an integer or as a string with a binary suffix (`"8G"`).
fn parse_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct SizeVisitor;
    impl de::Visitor<'_> for SizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte count such as 8589934592 or \"8G\"")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("max_image_size cannot be negative"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size_text(v)
                .ok_or_else(|| E::custom(format!("max_image_size: cannot read {v:?} as a size (use e.g. 512M, 8G)")))
        }
    }
    deserializer.deserialize_any(SizeVisitor)
}

/// Reads `512M`, `8G`, `1T`, `4096` (binary units, optional trailing `iB`/`B`).
pub fn parse_size_text(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let number: u64 = digits.parse().ok()?;
    let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::parse(""), Ok(Config::default()));
    }

    #[test]
    fn missing_default_file_means_defaults() -> Result<(), ConfigError> {
        let root = tempfile::tempdir().map_err(|source| ConfigError::Read { path: "/".into(), source })?;
        assert_eq!(Config::load(root.path(), None)?, Config::default());
        Ok(())
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load(Path::new("/"), Some(Path::new("/nonexistent/extensions.toml")));
        assert!(matches!(err, Err(ConfigError::Read { .. })));
    }

    #[test]
    fn reads_every_key() -> Result<(), String> {
        let config = Config::parse(
            r#"
            store_dir = "/srv/ext"
            runtime_dir = "/run/ext"
            image_policy = "strict"
            refresh = "exec"
            insecure_registries = ["127.0.0.1:5000"]
            registry_auth = "/etc/containers/auth.json"
            max_image_size = "512M"
            max_jobs = 2
            idle_exit_sec = 0
            trusted_certificates = ["/etc/kairos/verity.d"]
            catalogs = ["https://example.com/releases.json", "/etc/kairos/releases.json"]
            auto_update = "apply"
            auto_update_now = true
            "#,
        )?;
        assert_eq!(config.store_dir, Path::new("/srv/ext"));
        assert_eq!(config.image_policy, ImagePolicy::Strict);
        assert_eq!(config.refresh, RefreshMode::Exec);
        assert_eq!(config.max_image_size, 512 << 20);
        assert_eq!(config.max_jobs, 2);
        assert_eq!(config.idle_exit_sec, 0);
        assert_eq!(config.catalogs, ["https://example.com/releases.json", "/etc/kairos/releases.json"]);
        assert_eq!((config.auto_update, config.auto_update_now), (AutoUpdate::Apply, true));
        Ok(())
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("stor_dir = \"/x\"", "stor_dir"),
            ("store_dir = \"relative\"", "store_dir"),
            ("store_dir = \"/a/../b\"", "store_dir"),
            ("runtime_dir = \"/var/lib/kairos/extensions/run\"", "runtime_dir"),
            ("image_policy = \"root=sined\"", "image_policy"),
            ("refresh = \"sometimes\"", "sometimes"),
            ("max_image_size = \"lots\"", "max_image_size"),
            ("max_image_size = -1", "max_image_size"),
            ("max_jobs = 0", "max_jobs"),
            ("insecure_registries = [\"http://x\"]", "insecure_registries"),
            ("idle_exit_sec = \"soon\"", "idle_exit_sec"),
            ("trusted_certificates = [\"certs\"]", "trusted_certificates"),
            ("max_jobs = 1\nmax_jobs = 2", "max_jobs"),
            ("catalogs = [\"releases.json\"]", "catalogs"),
            ("catalogs = [\"ftp://example.com/releases.json\"]", "catalogs"),
            ("catalogs = \"https://example.com/releases.json\"", "catalogs"),
            ("auto_update = \"always\"", "always"),
            ("auto_update_now = \"yes\"", "auto_update_now"),
        ];
        for (text, key) in cases {
            match Config::parse(text) {
                Ok(_) => panic!("{text:?} was accepted"),
                Err(message) => assert!(message.contains(key), "{text:?}: {message:?} does not name {key}"),
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_text("4096"), Some(4096));
        assert_eq!(parse_size_text("8G"), Some(8 << 30));
        assert_eq!(parse_size_text("512MiB"), Some(512 << 20));
        assert_eq!(parse_size_text("1X"), None);
        assert_eq!(parse_size_text("99999999999T"), None);
    }
}
