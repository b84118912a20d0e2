//! Property tests: the source parser and the layer-entry filter hold their promises for
//! any input, not just the cases someone thought of.

use proptest::prelude::*;

use super::layer::{self, entry_name};
use super::reference::ImageReference;
use super::{Source, redact, redact_in_text};
use crate::engine::progress::Silent;

/// What the user is shown for `text`: the source's display, or the refusal's text.
fn shown(text: &str) -> String {
    match Source::parse(text) {
        Ok(source) => source.display(),
        Err(crate::engine::Error::InvalidSource { source_text, .. }) => source_text,
        Err(other) => panic!("unexpected error {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Parsing never panics, and whatever it accepts it can show.
    #[test]
    fn parsing_any_text_is_total(text in "\\\\PC{0,200}") {
        if let Ok(source) = Source::parse(&text) {
            let _ = source.display();
        }
    }

    /// Credentials and query strings never reach what is stored or shown, even when the
    /// host is garbage that makes the URL parser read the query as a fragment.
    #[test]
    fn odd_hosts_leak_nothing(junk in "[a-z\\\\#%@:]{1,12}", secret in "[A-Za-z0-9]{8,20}", token in "[A-Za-z0-9]{8,20}") {
        let shown = shown(&format!("https://u:{secret}@{junk}/x?sig={token}"));
        prop_assert!(!shown.contains(&token), "{shown}");
    }

    /// A URL inside any message (a library's error naming what it fetched) loses its
    /// query and credentials, wherever it sits in the text.
    #[test]
    fn urls_in_messages_leak_nothing(
        before in "\\PC{0,30}",
        after in "[ ,)\"'][^?@]{0,30}",
        secret in "[A-Za-z0-9]{8,20}",
        token in "[A-Za-z0-9]{8,20}",
    ) {
        let message = format!("{before}https://kx:{secret}@cdn.example/blob?X-Amz-Signature={token}{after}");
        let redacted = redact_in_text(&message);
        prop_assert!(!redacted.contains(&secret), "{redacted}");
        prop_assert!(!redacted.contains(&token), "{redacted}");
    }

    /// Credentials and query strings never reach what is stored or shown.
    #[test]
    fn credentials_never_show(
        user in "[a-z]{1,12}",
        secret in "[A-Za-z0-9]{8,20}",
        host in "[a-z]{1,10}\\.example",
        path in "[a-z0-9/]{0,20}",
        token in "[A-Za-z0-9]{8,20}",
    ) {
        let text = format!("https://{user}:{secret}@{host}/{path}?sig={token}");
        let shown = shown(&text);
        prop_assert!(!shown.contains(&secret), "{shown}");
        prop_assert!(!shown.contains(&token), "{shown}");
        prop_assert!(!redact(&text).contains(&secret));
    }

    /// Any text: refused or accepted, never a panic; what is accepted is shown in a form
    /// that parses back to the same reference, so provenance names what was pulled.
    #[test]
    fn references_round_trip(text in "[a-zA-Z0-9./:@_-]{0,80}") {
        if let Ok(reference) = ImageReference::parse(&text) {
            let shown = reference.to_string();
            prop_assert_eq!(ImageReference::parse(&shown).ok(), Some(reference), "{} shown as {}", text, shown);
        }
    }

    /// References written by the grammar's rules are all accepted.
    #[test]
    fn grammatical_references_are_accepted(
        registry in "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){1,3}(:[1-9][0-9]{0,3})?",
        path in "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}(/[a-z0-9]{1,6}){0,3}",
        tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}",
    ) {
        let text = format!("{registry}/{path}:{tag}");
        prop_assert!(ImageReference::parse(&text).is_ok(), "{}", text);
    }

    /// An accepted entry name is one plain `*.raw` component, never a way out.
    #[test]
    fn accepted_entry_names_are_plain(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(Some(name)) = entry_name(&raw, false) {
            prop_assert!(!name.contains('/'));
            prop_assert!(name.ends_with(".raw") && name.len() > 4);
            prop_assert!(!name.starts_with('.') && !name.starts_with('-'));
            prop_assert!(!name.chars().any(char::is_control));
        }
    }

    /// Any bytes as a layer: refused or accepted, never a panic, and never a staged
    /// file left behind on refusal.
    #[test]
    fn any_bytes_as_a_layer_are_handled(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (_root, store) = crate::engine::store::temp_store();
        let result = layer::extract(bytes.as_slice(), 1 << 20, 16, || store.stage(1 << 20), &Silent);
        if result.is_err() {
            let left = std::fs::read_dir(store.layout().tmp_dir()).map(|d| d.count()).unwrap_or(0);
            prop_assert_eq!(left, 0);
        }
    }
}
