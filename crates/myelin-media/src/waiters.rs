//! Downloads waiting for an async upload to land, woken the moment it does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Waiters {
    by_media: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    /// The notifier of one media item, shared by everyone waiting for it.
    pub fn get(&self, key: &str) -> Arc<Notify> {
        let mut map = self.by_media.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.to_owned()).or_default().clone()
    }

    /// Wakes everyone waiting for `key`.
    pub fn wake(&self, key: &str) {
        let notify = self.by_media.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Drops notifiers nobody holds any more.
    pub fn forget_idle(&self) {
        self.by_media.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, n| Arc::strong_count(n) > 1);
    }
}
