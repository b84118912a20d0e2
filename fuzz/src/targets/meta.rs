//! The provenance record reader (`meta::read`): `.meta/<NAME>.json`, read for every
//! extension at every listing.
//!
//! Beyond "no panic": a record that is read is written back by the service's own
//! serialisation and read again as the same record.

use kairos_extensionsd::engine::meta;

pub fn run(data: &[u8]) {
    let path = crate::scratch::file("record.json", data);
    let Some(record) = meta::read(&path) else { return };
    let written = serde_json::to_vec_pretty(&record).expect("a record serialises");
    let again = crate::scratch::file("record-again.json", &written);
    assert_eq!(meta::read(&again).as_ref(), Some(&record), "{}", String::from_utf8_lossy(&written));
}
