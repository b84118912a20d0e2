//! The intent record reader (`intent::pending`): `<store>/.intent`, which a process
//! that died mid-change leaves behind, and which decides what is undone at the next
//! start.
//!
//! Beyond "no panic": only the last line may be torn; a record that is read has no
//! beginning or commit among its steps, and written back line by line it reads as the
//! same pending change. Settling is not fuzzed here: it changes files, and the reader is
//! what decides what settling does.

use kairos_extensionsd::engine::intent::{self, INTENT_FILE, Line};

pub fn run(data: &[u8]) {
    let store = crate::scratch::store();
    let path = store.layout().store().join(INTENT_FILE);
    std::fs::write(&path, data).expect("writing the record");
    let pending = intent::pending(store);
    let Ok(pending) = pending else { return };
    let pending = pending.expect("a record is there");
    for step in &pending.steps {
        assert!(!matches!(step, Line::Begin { .. } | Line::Committed), "{step:?} among the steps");
    }
    let mut lines = vec![Line::Begin { operation: pending.operation.clone(), pid: 1 }];
    lines.extend(pending.steps.iter().cloned());
    if pending.committed {
        lines.push(Line::Committed);
    }
    let mut written = Vec::new();
    for line in &lines {
        written.extend(serde_json::to_vec(line).expect("a line serialises"));
        written.push(b'\n');
    }
    std::fs::write(&path, &written).expect("writing the record again");
    let again = intent::pending(store).expect("written back, it reads").expect("a record is there");
    assert_eq!(again, pending, "{}", String::from_utf8_lossy(&written));
}
