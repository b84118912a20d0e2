//! Which boot this is.
//!
//! Kairos's immucore announces the boot mode with a marker file in `/run/cos/`. Systems
//! that are not Kairos have none, so only `common` applies to them.
//!
//! The automatic reset boot (`autoreset_mode`) runs the recovery image, and immucore
//! activates the recovery extensions for it (`bootStateToExtensionSubDir` maps
//! `AutoReset` to `recovery`); so does this service.

use std::path::Path;

use kairos_extensions_dbus::BootState;

const MARKERS: [(BootState, &str); 4] = [
    (BootState::Active, "run/cos/active_mode"),
    (BootState::Passive, "run/cos/passive_mode"),
    (BootState::Recovery, "run/cos/recovery_mode"),
    (BootState::Recovery, "run/cos/autoreset_mode"),
];

/// The Kairos boot mode of the system at `root`, or `None` on a non-Kairos boot.
pub fn current(root: &Path) -> Option<BootState> {
    MARKERS.iter().find(|(_, marker)| root.join(marker).exists()).map(|(state, _)| *state)
}

/// The spelling the D-Bus `BootState` property uses.
pub fn describe(current: Option<BootState>) -> &'static str {
    current.map(BootState::as_str).unwrap_or("none")
}

/// Whether enabling for `state` affects the boot that is running now.
pub fn concerns(state: BootState, current: Option<BootState>) -> bool {
    state.concerns(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_markers() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        assert_eq!(current(root.path()), None);
        std::fs::create_dir_all(root.path().join("run/cos"))?;
        std::fs::write(root.path().join("run/cos/passive_mode"), "")?;
        assert_eq!(current(root.path()), Some(BootState::Passive));
        assert_eq!(describe(current(root.path())), "passive");
        Ok(())
    }

    #[test]
    fn an_automatic_reset_boots_the_recovery_image() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir_all(root.path().join("run/cos"))?;
        std::fs::write(root.path().join("run/cos/autoreset_mode"), "1")?;
        assert_eq!(current(root.path()), Some(BootState::Recovery));
        assert_eq!(describe(current(root.path())), "recovery");
        std::fs::write(root.path().join("run/cos/live_mode"), "1")?;
        std::fs::remove_file(root.path().join("run/cos/autoreset_mode"))?;
        assert_eq!(current(root.path()), None, "a live medium is no boot state");
        Ok(())
    }

    #[test]
    fn common_concerns_every_boot() {
        assert!(concerns(BootState::Common, None));
        assert!(concerns(BootState::Active, Some(BootState::Active)));
        assert!(!concerns(BootState::Active, None));
        assert!(!concerns(BootState::Passive, Some(BootState::Active)));
    }
}
