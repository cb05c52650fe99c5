//! Myelin's binary as a library: start-up and shutdown of the server (used by `main` and by the
//! integration tests) and the admin commands.

pub mod admin;
pub mod server;
pub mod tls_listener;
