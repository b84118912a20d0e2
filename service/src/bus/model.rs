//! The service's picture of the store, kept in memory so that every read is served
//! without touching the disk.
//!
//! The model changes in one way only: it is handed what the engine lists now (after one
//! of our own changes, or after the watcher saw someone else's) and answers with the
//! [`Diff`] from what it held before. [`super::announce`] turns that diff into objects,
//! signals and property changes, so a change is announced exactly once, whoever made it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kairos_extensions_dbus::{BootState, UpdateCheck};

use crate::engine::{CheckOutcome, Extension};

/// What the service knows right now.
#[derive(Debug, Default)]
pub struct Model {
    extensions: BTreeMap<String, Arc<Extension>>,
    merged: Vec<String>,
    /// What checks found and what can be rolled back to, by name: not in the store's
    /// listing, because checks are not kept on disk and previous versions are not
    /// extensions.
    updates: BTreeMap<String, UpdateInfo>,
    /// Update news not announced yet, oldest first.
    news: Vec<UpdateNews>,
}

/// The update properties of one extension object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateInfo {
    /// `UpdateAvailable`.
    pub update_available: bool,
    /// `AvailableVersion`.
    pub available_version: String,
    /// `AvailableSource`.
    pub available_source: String,
    /// `CheckedTime`, µs since the epoch.
    pub checked_time: u64,
    /// `UpdateCheck`.
    pub check: UpdateCheck,
    /// `PreviousVersion`.
    pub previous_version: String,
}

impl UpdateInfo {
    /// Takes in what a check of this extension found.
    pub fn take_check(&mut self, outcome: &CheckOutcome) {
        self.update_available = outcome.update_available;
        self.available_version = outcome.available_version.clone();
        self.available_source = outcome.available_source.clone();
        self.checked_time = outcome.checked_time_us;
        self.check = outcome.check.clone();
    }
}

/// Something about updates that clients have not been told yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateNews {
    /// The update properties of `name` changed.
    Changed {
        /// The extension.
        name: String,
        /// What clients were told before.
        before: UpdateInfo,
        /// What holds now.
        now: UpdateInfo,
    },
    /// `ExtensionUpdated(name, old_version, new_version)`.
    Updated {
        /// The extension.
        name: String,
        /// Its version before.
        old_version: String,
        /// Its version now.
        new_version: String,
    },
}

/// What a change learned that the store's listing does not hold. A job's work returns
/// its findings; the model takes them in with the change's effects on the store, under
/// the same lock, so they reach clients the way every other change does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// What a check found about one extension.
    Checked(CheckOutcome),
    /// An extension was updated or rolled back.
    Updated {
        /// The extension.
        name: String,
        /// Its version before.
        old_version: String,
        /// Its version now.
        new_version: String,
    },
}

/// What changed between two pictures.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Extensions that appeared.
    pub added: Vec<Arc<Extension>>,
    /// Extensions that went away.
    pub removed: Vec<Arc<Extension>>,
    /// Extensions that are still there but differ: `(before, now)`.
    pub changed: Vec<(Arc<Extension>, Arc<Extension>)>,
    /// The merged names, when they changed.
    pub merged: Option<Vec<String>>,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && self.merged.is_none()
    }
}

/// The boot states `now` is enabled for and `before` is not.
pub fn newly_enabled<'a>(before: &'a Extension, now: &'a Extension) -> impl Iterator<Item = BootState> + 'a {
    now.enabled.iter().copied().filter(|s| !before.enabled.contains(s))
}

impl Model {
    /// Takes `listed` and `merged` as the new picture and says what changed.
    pub fn replace(&mut self, listed: Vec<Extension>, merged: BTreeSet<String>) -> Diff {
        let mut diff = Diff::default();
        let mut next: BTreeMap<String, Arc<Extension>> = BTreeMap::new();
        for ext in listed {
            let name = ext.name.clone();
            match self.extensions.remove(&name) {
                Some(before) if *before == ext => {
                    next.insert(name, before);
                }
                Some(before) => {
                    let now = Arc::new(ext);
                    diff.changed.push((before, now.clone()));
                    next.insert(name, now);
                }
                None => {
                    let now = Arc::new(ext);
                    diff.added.push(now.clone());
                    next.insert(name, now);
                }
            }
        }
        diff.removed = std::mem::take(&mut self.extensions).into_values().collect();
        for gone in &diff.removed {
            self.updates.remove(&gone.name);
        }
        self.extensions = next;
        let merged: Vec<String> = merged.into_iter().collect();
        if merged != self.merged {
            self.merged = merged.clone();
            diff.merged = Some(merged);
        }
        diff
    }

    /// Takes what the engine says now of a few extensions (`None`: gone) and the merged
    /// names, keeps every other extension, and says what changed: for a change that
    /// concerned a few extensions, without listing them all. Of the others only the
    /// `Merged` property can have changed, and it follows from `merged` alone.
    pub fn update(&mut self, found: Vec<(String, Option<Extension>)>, merged: BTreeSet<String>) -> Diff {
        let mut diff = Diff::default();
        let mut seen = BTreeSet::new();
        for (name, now) in found {
            seen.insert(name.clone());
            match (self.extensions.remove(&name), now) {
                (Some(before), Some(now)) if *before == now => {
                    self.extensions.insert(name, before);
                }
                (Some(before), Some(now)) => {
                    let now = Arc::new(now);
                    diff.changed.push((before, now.clone()));
                    self.extensions.insert(name, now);
                }
                (None, Some(now)) => {
                    let now = Arc::new(now);
                    diff.added.push(now.clone());
                    self.extensions.insert(name, now);
                }
                (Some(before), None) => {
                    self.updates.remove(&name);
                    diff.removed.push(before);
                }
                (None, None) => {}
            }
        }
        let merged: Vec<String> = merged.into_iter().collect();
        if merged != self.merged {
            for (name, ext) in self.extensions.iter_mut().filter(|(name, _)| !seen.contains(*name)) {
                let is_merged = merged.binary_search(name).is_ok();
                if ext.merged != is_merged {
                    let before = ext.clone();
                    Arc::make_mut(ext).merged = is_merged;
                    diff.changed.push((before, ext.clone()));
                }
            }
            self.merged = merged.clone();
            diff.merged = Some(merged);
        }
        diff
    }

    /// The extension called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Extension>> {
        self.extensions.get(name).cloned()
    }

    /// Every extension, by name.
    pub fn extensions(&self) -> impl Iterator<Item = &Arc<Extension>> {
        self.extensions.values()
    }

    /// The names merged now.
    pub fn merged(&self) -> &[String] {
        &self.merged
    }

    /// The update properties of `name`.
    pub fn update_info(&self, name: &str) -> UpdateInfo {
        self.updates.get(name).cloned().unwrap_or_default()
    }

    /// Changes the update properties of `name`, an extension the model has; a real
    /// change becomes news.
    pub fn change_update_info(&mut self, name: &str, change: impl FnOnce(&mut UpdateInfo)) {
        if !self.extensions.contains_key(name) {
            return;
        }
        let before = self.update_info(name);
        let mut now = before.clone();
        change(&mut now);
        if now != before {
            self.updates.insert(name.to_owned(), now.clone());
            self.news.push(UpdateNews::Changed { name: name.to_owned(), before, now });
        }
    }

    /// Takes in what a change found.
    pub fn take_in(&mut self, finding: &Finding) {
        match finding {
            Finding::Checked(outcome) => self.record_check(outcome),
            Finding::Updated { name, old_version, new_version } => self.updated(name, old_version, new_version),
        }
    }

    /// Takes in what a check found.
    pub fn record_check(&mut self, outcome: &CheckOutcome) {
        self.change_update_info(&outcome.name, |info| info.take_check(outcome));
    }

    /// Takes in the version of every previous image (names without one have none).
    pub fn set_previous_versions(&mut self, versions: &BTreeMap<String, String>) {
        let names: Vec<String> = self.extensions.keys().cloned().collect();
        for name in names {
            let version = versions.get(&name).cloned().unwrap_or_default();
            self.change_update_info(&name, |info| info.previous_version = version);
        }
    }

    /// `name` was updated or rolled back from `old_version` to `new_version`: what the
    /// last check said no longer holds.
    pub fn updated(&mut self, name: &str, old_version: &str, new_version: &str) {
        self.change_update_info(name, |info| {
            info.update_available = false;
            info.available_version.clear();
            info.available_source.clear();
            info.checked_time = 0;
            info.check = UpdateCheck::NotChecked;
        });
        self.news.push(UpdateNews::Updated {
            name: name.to_owned(),
            old_version: old_version.to_owned(),
            new_version: new_version.to_owned(),
        });
    }

    /// The news not announced yet, oldest first; each is handed out once.
    pub fn take_news(&mut self) -> Vec<UpdateNews> {
        std::mem::take(&mut self.news)
    }
}

#[cfg(test)]
mod tests {
    use kairos_extensions_dbus::ExtensionStatus;

    use super::*;
    use crate::engine::release::ReleaseFields;
    use crate::engine::store::EntryKind;

    fn ext(name: &str, enabled: &[BootState]) -> Extension {
        Extension {
            name: name.into(),
            version: String::new(),
            enabled: enabled.to_vec(),
            merged: false,
            source: String::new(),
            digest: String::new(),
            resolved_digest: String::new(),
            size: 0,
            installed_time: 0,
            compatible: true,
            incompatible_reason: String::new(),
            status: ExtensionStatus::Ok,
            status_reason: String::new(),
            file: format!("{name}.raw"),
            kind: EntryKind::Image,
            release: ReleaseFields::new(),
            protection: None,
        }
    }

    fn merged(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn says_what_appeared_changed_and_went() {
        let mut model = Model::default();
        let first = model.replace(vec![ext("a", &[]), ext("b", &[])], merged(&[]));
        assert_eq!(first.added.len(), 2);
        assert!(first.removed.is_empty() && first.changed.is_empty() && first.merged.is_none());

        let second = model.replace(vec![ext("a", &[BootState::Common]), ext("c", &[])], merged(&["a"]));
        assert_eq!(second.added.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["c"]);
        assert_eq!(second.removed.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["b"]);
        let (before, now) = &second.changed[0];
        assert_eq!(newly_enabled(before, now).collect::<Vec<_>>(), [BootState::Common]);
        assert_eq!(second.merged, Some(vec!["a".to_owned()]));
        assert_eq!(model.get("a").map(|e| e.enabled.clone()), Some(vec![BootState::Common]));
        assert_eq!(model.merged(), ["a"]);
    }

    #[test]
    fn an_update_of_a_few_agrees_with_a_whole_picture() {
        let mut whole = Model::default();
        let mut partial = Model::default();
        for model in [&mut whole, &mut partial] {
            model.replace(vec![ext("a", &[]), ext("b", &[]), ext("c", &[BootState::Common])], merged(&["c"]));
        }
        let mut a = ext("a", &[BootState::Active]);
        a.merged = true;
        let mut b = ext("b", &[]);
        b.merged = true;
        let expected = whole.replace(vec![a.clone(), b, ext("d", &[])], merged(&["a", "b"]));
        let got = partial.update(
            vec![("a".into(), Some(a)), ("c".into(), None), ("d".into(), Some(ext("d", &[]))), ("e".into(), None)],
            merged(&["a", "b"]),
        );
        let names = |list: &[Arc<Extension>]| list.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got.added), names(&expected.added));
        assert_eq!(names(&got.removed), names(&expected.removed));
        let mut changed = got.changed.iter().map(|(_, now)| (**now).clone()).collect::<Vec<_>>();
        changed.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(changed, expected.changed.iter().map(|(_, now)| (**now).clone()).collect::<Vec<_>>());
        assert_eq!(got.merged, expected.merged);
        let all = |m: &Model| m.extensions().map(|e| (**e).clone()).collect::<Vec<_>>();
        assert_eq!(all(&partial), all(&whole));
        assert!(
            partial.update(vec![("a".into(), partial.get("a").map(|e| (*e).clone()))], merged(&["a", "b"])).is_empty()
        );
    }

    #[test]
    fn checks_and_updates_are_news_once_and_only_for_known_extensions() {
        let mut model = Model::default();
        model.replace(vec![ext("a", &[])], merged(&[]));
        let outcome = CheckOutcome {
            name: "a".into(),
            installed_version: "1".into(),
            source: "oci://r/a:v".into(),
            check: UpdateCheck::Ok,
            update_available: true,
            available_version: String::new(),
            available_source: "oci://r/a:v@sha256:00".into(),
            checked_time_us: 5,
        };
        model.record_check(&outcome);
        model.record_check(&outcome);
        model.record_check(&CheckOutcome { name: "ghost".into(), ..outcome.clone() });
        let news = model.take_news();
        assert_eq!(news.len(), 1, "the same answer twice is news once: {news:?}");
        assert!(model.update_info("a").update_available);

        model.updated("a", "1", "2");
        let news = model.take_news();
        assert!(
            matches!(&news[..], [UpdateNews::Changed { now, .. }, UpdateNews::Updated { .. }] if !now.update_available)
        );
        model.set_previous_versions(&BTreeMap::from([("a".to_owned(), "1".to_owned())]));
        assert_eq!(model.update_info("a").previous_version, "1");
        model.replace(vec![], merged(&[]));
        assert_eq!(model.update_info("a"), UpdateInfo::default(), "a removed extension forgets its checks");
    }

    #[test]
    fn the_same_picture_twice_changes_nothing() {
        let mut model = Model::default();
        model.replace(vec![ext("a", &[BootState::Active])], merged(&["a"]));
        assert!(model.replace(vec![ext("a", &[BootState::Active])], merged(&["a"])).is_empty());
    }
}
