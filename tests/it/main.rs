//! Every integration test of the `tessera` crate, in one binary: one module per area and
//! one shared `support` module (test homes, the binary runner, servers in-process and as a
//! real process, the real registry and its clients, shared constants).

mod support;

mod attack_http;
mod attack_passwords;
mod attack_secrets;
mod attack_tokens;
mod cli;
mod docker_e2e;
mod faults;
mod first_run;
mod properties;
mod registry;
mod registry_e2e;
mod server;
