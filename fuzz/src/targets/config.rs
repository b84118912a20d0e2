//! The configuration parser (`Config::parse`): `/etc/kairos/extensions.toml`, written
//! by hand by an administrator, read by a service that runs as root.
//!
//! Beyond "no panic" (the error text points into the input by byte offset): an accepted
//! configuration holds every promise `validate` makes, and its image policy and sizes
//! print and parse back to themselves.

use std::path::{Component, Path};

use kairos_extensionsd::engine::config::{Config, parse_size_text};
use kairos_extensionsd::engine::policy::ImagePolicy;

fn clean_absolute(path: &Path) -> bool {
    path.is_absolute() && !path.components().any(|c| c == Component::ParentDir)
}

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else { return };
    if let Some(size) = parse_size_text(text) {
        assert_eq!(parse_size_text(&size.to_string()), Some(size), "{text:?}");
    }
    let config = match Config::parse(text) {
        Ok(config) => config,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    assert!(clean_absolute(&config.store_dir) && clean_absolute(&config.runtime_dir), "{config:?}");
    assert!(!config.store_dir.starts_with(&config.runtime_dir) && !config.runtime_dir.starts_with(&config.store_dir));
    assert!(config.trusted_certificates.iter().all(|p| clean_absolute(p)), "{config:?}");
    assert!(config.registry_auth.as_deref().is_none_or(Path::is_absolute), "{config:?}");
    assert!(config.max_jobs >= 1 && config.max_image_size >= 1, "{config:?}");
    for registry in &config.insecure_registries {
        assert!(!registry.is_empty() && !registry.contains('/') && registry.bytes().all(|b| b.is_ascii_graphic()));
    }
    let policy = config.image_policy.to_string();
    assert_eq!(policy.parse::<ImagePolicy>().as_ref(), Ok(&config.image_policy), "{policy:?}");
    let again = Config::parse(&format!("image_policy = {policy:?}\nmax_image_size = {}\n", config.max_image_size));
    assert_eq!(
        again.as_ref().map(|c| (&c.image_policy, c.max_image_size)),
        Ok((&config.image_policy, config.max_image_size))
    );
}
