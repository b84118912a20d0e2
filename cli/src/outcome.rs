//! What a change did to the running system, in words, for both modes.
//!
//! `--now` acts on the running system only where the boot state concerns this boot
//! (`common`, or the Kairos mode it booted in). The sentences here are built from what
//! is true after the change (the boot state, the states the extension is enabled for,
//! whether it is merged), never from what was asked, so they cannot claim a merge that
//! did not happen.

use kairos_extensions_dbus::BootState;

/// The running system as it is after a change, as far as one extension is concerned.
pub struct After<'a> {
    /// The extension.
    pub name: &'a str,
    /// The running boot's Kairos mode; `None` when the system is not booted by Kairos.
    pub boot: Option<BootState>,
    /// The states it is enabled for now.
    pub enabled: &'a [BootState],
    /// Whether it is merged now.
    pub merged: bool,
}

impl After<'_> {
    /// Another enabled state (than `state`) that brings the extension into this boot.
    fn other_state(&self, state: BootState) -> Option<BootState> {
        self.enabled.iter().copied().find(|s| *s != state && s.concerns(self.boot))
    }

    /// Why `state` does not apply to this boot.
    fn not_this_boot(&self, state: BootState) -> String {
        match self.boot {
            Some(boot) => format!("it takes effect at the next {state} boot (this is a {boot} boot)"),
            None => format!("this system is not booted by Kairos, so only common applies to it, never {state}"),
        }
    }
}

/// The line for an enable of `state`.
pub fn enabled(after: &After<'_>, state: BootState, changed: bool, now: bool) -> String {
    let head = if changed {
        format!("Enabled {} for {state}", after.name)
    } else {
        format!("Already enabled: {} for {state}", after.name)
    };
    if !now {
        return head;
    }
    if !state.concerns(after.boot) {
        let merged = match after.other_state(state) {
            Some(other) if after.merged => format!("; it is merged now through {other}"),
            _ => "; nothing was merged now".to_owned(),
        };
        return format!("{head}; {}{merged}", after.not_this_boot(state));
    }
    match (after.merged, after.other_state(state)) {
        (true, Some(other)) => format!("{head}; it was merged already, through {other}"),
        (true, None) => format!("{head} (merged now)"),
        (false, _) => format!("{head}; it is not merged"),
    }
}

/// The line for a disable of `state`.
pub fn disabled(after: &After<'_>, state: BootState, changed: bool, now: bool) -> String {
    let head = if changed {
        format!("Disabled {} for {state}", after.name)
    } else {
        format!("Already disabled: {} for {state}", after.name)
    };
    if !after.merged {
        return if now && state.concerns(after.boot) { format!("{head} (not merged now)") } else { head };
    }
    if now && !state.concerns(after.boot) {
        let merged = match after.other_state(state) {
            Some(other) => format!("it stays merged through {other}"),
            None => "it is merged now".to_owned(),
        };
        return format!("{head}; {}; {merged}", after.not_this_boot(state));
    }
    match after.other_state(state) {
        Some(other) => format!("{head}; it stays merged through {other}"),
        None => format!("{head}; it stays merged until the next refresh or boot"),
    }
}

/// The line for an install: the name, the stored image's digest and size, and whether
/// it replaced an installed image.
pub fn installed(name: &str, digest: &str, size: u64, replaced: bool) -> String {
    let replaced = if replaced { ", replacing the previous image" } else { "" };
    format!("Installed {name} ({digest}, {}){replaced}", crate::human::size(size))
}

/// The line for a removal of an extension that was `merged_before`.
pub fn removed(name: &str, merged_before: bool, merged_after: bool) -> String {
    match (merged_before, merged_after) {
        (true, false) => format!("Removed {name} (taken out of the merge now)"),
        (_, true) => format!("Removed {name}; it stays merged until the next refresh or boot"),
        (false, false) => format!("Removed {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(boot: Option<BootState>, enabled: &[BootState], merged: bool) -> String {
        let after = After { name: "k3s", boot, enabled, merged };
        enabled_line(&after)
    }

    fn enabled_line(after: &After<'_>) -> String {
        enabled(after, BootState::Active, true, true)
    }

    #[test]
    fn never_says_merged_now_for_another_boot() {
        let line = after(Some(BootState::Passive), &[BootState::Active], false);
        assert_eq!(
            line,
            "Enabled k3s for active; it takes effect at the next active boot (this is a passive boot); nothing was merged now"
        );
        let line = after(None, &[BootState::Active], false);
        assert!(line.contains("not booted by Kairos") && line.contains("nothing was merged now"), "{line}");
    }

    #[test]
    fn names_the_state_that_really_merges_it() {
        let both = [BootState::Active, BootState::Common];
        assert_eq!(
            after(Some(BootState::Active), &both, true),
            "Enabled k3s for active; it was merged already, through common"
        );
        let line = after(Some(BootState::Passive), &both, true);
        assert!(line.ends_with("it is merged now through common"), "{line}");
        assert_eq!(after(Some(BootState::Active), &[BootState::Active], true), "Enabled k3s for active (merged now)");
    }

    #[test]
    fn a_disable_or_removal_says_when_it_stays_merged() {
        let common_only = After { name: "k3s", boot: None, enabled: &[BootState::Common], merged: true };
        assert_eq!(
            disabled(&common_only, BootState::Active, true, true),
            "Disabled k3s for active; this system is not booted by Kairos, so only common applies to it, never active; it stays merged through common"
        );
        let gone = After { name: "k3s", boot: None, enabled: &[], merged: true };
        assert_eq!(
            disabled(&gone, BootState::Common, true, false),
            "Disabled k3s for common; it stays merged until the next refresh or boot"
        );
        let out = After { name: "k3s", boot: None, enabled: &[], merged: false };
        assert_eq!(disabled(&out, BootState::Common, true, true), "Disabled k3s for common (not merged now)");
        assert_eq!(removed("k3s", true, true), "Removed k3s; it stays merged until the next refresh or boot");
        assert_eq!(removed("k3s", true, false), "Removed k3s (taken out of the merge now)");
    }
}
