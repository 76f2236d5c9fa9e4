//! Every integration test of the `tessera` crate, in one binary: one module per area and
//! one shared `support` module (test homes, the binary runner, servers in-process and as a
//! real process, the real registry and its clients, shared constants).
//!
//! The messages a user reads (CLI errors and hints, JSON error documents, `--help`) are
//! pinned as `insta` snapshots in `snapshots/`, with scratch folders and token ids redacted.
//! A changed message fails the test (and always under `CI=true`); after a deliberate change,
//! `INSTA_UPDATE=always cargo test --test it` rewrites them: review the diff before committing.

mod support;

mod attack_http;
mod attack_passwords;
mod attack_secrets;
mod attack_tokens;
mod cli;
mod docker_e2e;
mod faults;
mod first_run;
mod keys;
mod properties;
mod registry;
mod registry_e2e;
mod replicas;
mod server;
mod sessions;
mod ui;
mod users;
mod workload;
