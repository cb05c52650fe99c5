//! Integration tests: a real Myelin in-process on a random loopback port, driven over HTTP,
//! once per storage backend.

mod common;

mod account;
mod account_data;
mod cli;
mod discovery;
mod e2ee;
mod errors;
mod federation;
mod federation_queries;
mod federation_rooms;
mod login;
mod media;
mod media_async;
mod media_preview;
mod media_thumbnails;
mod notifications;
mod presence;
mod profile_devices;
mod push_rules;
mod receipts;
mod register;
mod rooms;
mod rooms_features;
mod rooms_membership;
mod startup;
mod sync;
