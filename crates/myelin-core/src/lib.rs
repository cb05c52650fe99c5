//! Configuration, the error type and small helpers shared by every Myelin crate.

pub mod config;
pub mod config_example;
pub mod error;
pub mod util;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
