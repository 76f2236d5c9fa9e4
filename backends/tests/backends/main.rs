//! Integration tests of the backends, with the real `pass`/`gpg`, `sops` and `age` tools in
//! isolated temporary homes. A missing tool skips its tests locally and fails them when
//! `CI=true`.

mod age_tests;
mod contract;
mod files_tests;
mod pass_tests;
mod sops_tests;
mod support;
