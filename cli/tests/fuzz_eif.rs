//! Fuzz harness (bolero) for the EIF reader behind `leadgate pcr`: the layout walk and AWS's
//! `EifReader` it guards. The reader takes a path, so each input is written to one file in a
//! temporary directory first. The property: an error, never a panic or an allocation a header
//! merely claims, and anything accepted has PCR0, PCR1 and PCR2 as 96 hex characters.
//! Committed corpus: `cli/tests/__fuzz__/eif_files/corpus` (a valid three-section EIF
//! and variants).

#[path = "../src/pcr.rs"]
mod pcr;

use bolero::check;

#[test]
fn eif_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.eif");
    check!().for_each(|bytes: &[u8]| {
        std::fs::write(&file, bytes).unwrap();
        if let Ok(pcrs) = pcr::measurements(&file) {
            for name in ["PCR0", "PCR1", "PCR2"] {
                let (_, v) = pcrs.iter().find(|(n, _)| *n == name).unwrap();
                assert_eq!(v.len(), 96, "{name}");
                assert!(v.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
            }
        }
    });
}
