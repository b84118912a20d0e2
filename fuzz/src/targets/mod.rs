//! One module per parser; each has `run(data)`, the body of its fuzz target.

pub mod config;
pub mod gpt;
pub mod intent;
pub mod layer;
pub mod layer_entry;
pub mod meta;
pub mod name;
pub mod policy;
pub mod reference;
pub mod release;
pub mod signature;
pub mod source;

/// A target's body.
pub type Run = fn(&[u8]);

/// Every target by name, for the replay test.
pub const ALL: [(&str, Run); 12] = [
    ("name", name::run),
    ("source", source::run),
    ("reference", reference::run),
    ("release", release::run),
    ("policy", policy::run),
    ("config", config::run),
    ("gpt", gpt::run),
    ("signature", signature::run),
    ("layer", layer::run),
    ("layer_entry", layer_entry::run),
    ("meta", meta::run),
    ("intent", intent::run),
];
