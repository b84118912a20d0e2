//! `kairos-extensionsd`: the system service for systemd system extensions.
//!
//! [`engine`] does the work (store, validation, merges) and knows nothing of D-Bus; the
//! bus adapter, the CLI's offline mode and the boot activator are its callers.

pub mod engine;
pub mod logging;
