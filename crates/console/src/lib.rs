//! The admin console and JSON HTTP API (in progress).
