//! The end-to-end tests: the real `outboxd` binary against a real
//! PostgreSQL database per test and real receivers on 127.0.0.1, in one test
//! binary (one link instead of one per area). `cargo test --test e2e
//! pipeline::` runs one area.

mod support;

mod admin;
mod breaker;
mod chaos;
mod console_api;
mod console_browser;
mod console_openapi;
mod fairness;
mod faults;
mod halted_keys;
mod hanging;
mod hostile;
mod lanes;
mod listeners;
mod operations;
mod ordering;
mod pipeline;
mod portal;
mod rate;
mod scale;
mod security;
mod ssrf;
mod tenant_edits;
mod tenants;
mod webhook_settings;
