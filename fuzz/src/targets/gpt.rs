//! The GPT and verity reader (`trust::gpt::partitions`, `trust::prove`): every offset,
//! size and count comes from an untrusted image file, and the whole data partition is
//! hashed when there is verity.
//!
//! Beyond "no panic, no hang, no huge allocation": every partition read lies inside the
//! file, and an image is only called verity-protected when its table really has the
//! data, verity and (optional) signature partitions of one kind and nothing else.

use std::fs::File;

use kairos_extensionsd::engine::trust::{self, Proof, gpt};

/// The DPS partition types proof.rs knows (x86-64 root and usr: data, verity, signature).
const KNOWN: [&str; 6] = [
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
    "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
    "41092b05-9fc8-4523-994f-2def0408b176",
    "8484680c-9521-48c6-9c11-b0720656f69e",
    "77ff5f63-e7b6-4633-acf4-1565b864c0e6",
    "e7bb33fb-06cf-4e81-8273-e543b413e2e2",
];

pub fn run(data: &[u8]) {
    let path = crate::scratch::file("image.raw", data);
    let length = data.len() as u64;
    let mut file = File::open(&path).expect("opening the scratch image");
    let table = gpt::partitions(&mut file);
    if let Ok(partitions) = &table {
        assert!(partitions.len() <= 256);
        for p in partitions {
            assert!(p.length > 0 && p.offset.checked_add(p.length).is_some_and(|end| end <= length), "{p:?}");
            assert_eq!(p.type_guid.len(), 36);
            assert_eq!(p.uuid.len(), 36);
        }
    }
    let proof = trust::prove(&path);
    match &proof {
        Ok(Proof::Unprotected { .. }) => {}
        Ok(Proof::Unchecked(why)) => assert!(!why.is_empty()),
        Ok(Proof::Verity { signature, .. }) => {
            let partitions = table.as_ref().expect("a verity image has a partition table");
            assert!(partitions.iter().all(|p| KNOWN.contains(&p.type_guid.as_str())), "{partitions:?}");
            let bound: String = partitions.iter().take(2).map(|p| p.uuid.replace('-', "")).collect();
            assert_eq!(bound.len(), 64, "{partitions:?}");
            if let Some(signed) = signature {
                assert_eq!(signed.root_hash.len(), 64, "{signed:?}");
            }
        }
        Err(_) => {}
    }
}
