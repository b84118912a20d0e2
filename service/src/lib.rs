//! `kairos-extensionsd`: the system service for systemd system extensions.
//!
//! [`engine`] does the work (store, validation, merges) and knows nothing of D-Bus;
//! [`bus`] exports it as `org.kairos.Extensions1`. The CLI's offline mode and the boot
//! activator call the engine directly.

pub mod bus;
pub mod engine;
pub mod logging;
pub mod memory;
