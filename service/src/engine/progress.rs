//! How a long operation reports where it is, and learns that it should stop.
//!
//! The engine calls these hooks; the bus layer turns them into Job properties, the CLI
//! ignores them or prints them. Keeping the trait here keeps the engine free of D-Bus.

/// The steps of an install, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Finding out what to fetch (tags to digests, platforms).
    Resolving,
    /// Moving bytes into staging.
    Downloading,
    /// Checking digest, release and compatibility.
    Verifying,
    /// Moving the image into the store.
    Installing,
    /// Creating boot-state links.
    Enabling,
    /// Merging into the running system.
    Refreshing,
}

impl Phase {
    /// The spelling of the Job `Phase` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resolving => "resolving",
            Self::Downloading => "downloading",
            Self::Verifying => "verifying",
            Self::Installing => "installing",
            Self::Enabling => "enabling",
            Self::Refreshing => "refreshing",
        }
    }
}

/// Receives progress from an operation and may ask it to stop.
pub trait Progress: Sync {
    /// The operation entered `phase`.
    fn phase(&self, _phase: Phase) {}
    /// `done` bytes of `total` (when known) are through.
    fn bytes(&self, _done: u64, _total: Option<u64>) {}
    /// The extension's name became known.
    fn named(&self, _name: &str) {}
    /// Whether the operation should stop at the next safe point.
    fn canceled(&self) -> bool {
        false
    }
}

/// For callers that want no reports and never cancel.
pub struct Silent;

impl Progress for Silent {}
