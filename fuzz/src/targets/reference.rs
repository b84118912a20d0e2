//! The OCI reference parser (`ImageReference::parse`), written by hand to the
//! distribution grammar.
//!
//! Beyond "no panic": what it accepts is shown in a form that parses back to the same
//! reference (provenance names what was pulled), oci-client is handed exactly the parts
//! that were parsed, and the regex parser of oci-spec (the distribution grammar as
//! Docker writes it) accepts it too and reads the same registry, repository, tag and
//! digest: the hand-written parser may be stricter, never looser or different.

use kairos_extensionsd::engine::sources::reference::ImageReference;

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else { return };
    let Ok(reference) = ImageReference::parse(text) else { return };
    let shown = reference.to_string();
    assert!(shown.is_ascii(), "{shown:?}");
    let again = ImageReference::parse(&shown);
    assert_eq!(again.as_ref(), Ok(&reference), "{text:?} shown as {shown:?}");
    assert!(reference.repository().len() <= 255);

    let oci = reference.to_oci();
    assert_eq!(oci.registry(), reference.registry());
    assert_eq!(oci.repository(), reference.repository());
    assert_eq!(oci.digest().map(str::to_owned), reference.digest().map(ToString::to_string));
    assert_eq!(oci.whole(), shown, "oci-client would pull something else");

    let theirs = oci_client::Reference::try_from(text)
        .unwrap_or_else(|e| panic!("{text:?} accepted here, refused by the distribution grammar: {e}"));
    assert_eq!(theirs.registry(), reference.registry(), "{text:?}");
    assert_eq!(theirs.repository(), reference.repository(), "{text:?}");
    assert_eq!(theirs.tag(), oci.tag(), "{text:?}");
    assert_eq!(theirs.digest().map(str::to_ascii_lowercase), oci.digest().map(str::to_owned), "{text:?}");
}
