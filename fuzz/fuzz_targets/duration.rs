//! `HumanDuration::parse`: never panics; the grammar is strict, so an accepted input is its own
//! canonical form (`display(parse(s)) == s`) and parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::duration::HumanDuration;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = HumanDuration::parse(s) else {
        return;
    };
    let shown = d.to_string();
    assert_eq!(shown, s, "an accepted duration is its own canonical form");
    assert_eq!(HumanDuration::parse(&shown), Ok(d));
    assert_eq!(d.is_never(), s == "0");
    // A fixed length exists exactly when there are no calendar units.
    assert_eq!(d.as_fixed().is_some(), d.years == 0 && d.months == 0);
    // Adding never panics, and a non-zero duration ends strictly later.
    let start = jiff::Timestamp::from_second(1_772_366_400).unwrap();
    match d.after(start) {
        Ok(None) => assert!(d.is_never()),
        Ok(Some(end)) => assert!(end > start),
        Err(_) => assert!(!d.is_never()),
    }
});
