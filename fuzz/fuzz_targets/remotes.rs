//! The remotes.toml loader: never panics; an error names a line and column inside the text;
//! an accepted file serialises (as `tessera remotes` writes it) and parses back to the same
//! file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::remotes::{RemotesError, RemotesStore, validate_name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let store = RemotesStore::new("/home/fuzz/.config/tessera/remotes.toml");
    match store.parse(text) {
        Ok(file) => {
            for name in file.remotes.keys() {
                assert!(validate_name(name).is_ok(), "{name:?}");
            }
            if let Some(active) = &file.active {
                assert!(file.remotes.contains_key(active));
            }
            let written = toml::to_string(&file).expect("an accepted file serialises");
            let back = store
                .parse(&written)
                .unwrap_or_else(|e| panic!("written file does not load: {e}\n{written}"));
            assert_eq!(
                toml::to_string(&back).unwrap(),
                written,
                "round trip changed it"
            );
        }
        Err(RemotesError::Parse { line, column, .. }) => {
            let lines = text.split('\n').count();
            assert!((1..=lines).contains(&line), "line {line} of {lines}");
            assert!(column >= 1);
        }
        Err(e) => panic!("unexpected error kind from text: {e}"),
    }
});
