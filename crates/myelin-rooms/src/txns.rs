//! Client transactions being sent: a second send of a transaction still in flight (a client
//! retrying before the first answer came back) waits for the first and answers with its event.
//!
//! Without this, both were built and written, and the second failed on the store's unique
//! transaction key. On SQLite, where a room's messages are written in batches built one on the
//! other, the messages built on that failed one fail as stale and are built again; enough
//! retries in one burst made a message run out of attempts and answer 500. A retry after the
//! first has landed still finds its event through the store's key.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::OwnedEventId;
use tokio::sync::watch;

/// Room, sender, device and transaction ID: the store's unique key for an event's transaction.
type Key = (String, String, String, String);

/// Each transaction being sent, with where its event will be announced.
type Sends = Arc<Mutex<HashMap<Key, watch::Receiver<Option<OwnedEventId>>>>>;

#[derive(Default)]
pub(crate) struct TxnsInFlight {
    sends: Sends,
}

/// Whose turn it is to send a transaction.
pub(crate) enum Turn {
    /// Nobody else is sending it: send, then `Sending::sent`.
    Mine(Sending),
    /// Another request is sending it: its event, once sent (`None` if it failed or was dropped).
    Theirs(watch::Receiver<Option<OwnedEventId>>),
}

/// The send of a transaction under way; dropping it (sent or not) lets the waiters go.
pub(crate) struct Sending {
    key: Key,
    sends: Sends,
    sent: watch::Sender<Option<OwnedEventId>>,
}

impl TxnsInFlight {
    pub(crate) fn begin(&self, room_id: &str, sender: &str, device_id: &str, txn_id: &str) -> Turn {
        let key = (room_id.to_owned(), sender.to_owned(), device_id.to_owned(), txn_id.to_owned());
        let mut sends = self.sends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = sends.get(&key) {
            return Turn::Theirs(waiting.clone());
        }
        let (sent, waiting) = watch::channel(None);
        sends.insert(key.clone(), waiting);
        Turn::Mine(Sending { key, sends: self.sends.clone(), sent })
    }
}

impl Sending {
    pub(crate) fn sent(&self, event_id: &OwnedEventId) {
        self.sent.send_replace(Some(event_id.clone()));
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        // Only this send put its key there, and no other can while it is there.
        self.sends.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

/// The event the other send of the transaction made, or `None` once it failed or was dropped
/// (the waiter then sends it itself).
pub(crate) async fn their_event(mut theirs: watch::Receiver<Option<OwnedEventId>>) -> Option<OwnedEventId> {
    // Closed after the value was set still counts: the value is read last.
    let _ = theirs.wait_for(Option::is_some).await;
    theirs.borrow().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> OwnedEventId {
        OwnedEventId::try_from(id).unwrap()
    }

    #[tokio::test]
    async fn a_second_send_waits_for_the_first() {
        let txns = TxnsInFlight::default();
        let Turn::Mine(first) = txns.begin("!r:x", "@a:x", "D", "t1") else { panic!("first is mine") };
        let Turn::Theirs(theirs) = txns.begin("!r:x", "@a:x", "D", "t1") else { panic!("second waits") };
        // Another transaction, device or room is not held up.
        assert!(matches!(txns.begin("!r:x", "@a:x", "D", "t2"), Turn::Mine(_)));
        assert!(matches!(txns.begin("!r:x", "@a:x", "E", "t1"), Turn::Mine(_)));
        assert!(matches!(txns.begin("!s:x", "@a:x", "D", "t1"), Turn::Mine(_)));
        let waiter = tokio::spawn(their_event(theirs));
        first.sent(&event("$e1"));
        drop(first);
        assert_eq!(waiter.await.unwrap(), Some(event("$e1")));
        // Once it is done, the next send of it is the sender's own again (the store answers).
        assert!(matches!(txns.begin("!r:x", "@a:x", "D", "t1"), Turn::Mine(_)));
    }

    #[tokio::test]
    async fn a_failed_first_send_lets_the_waiter_send() {
        let txns = TxnsInFlight::default();
        let Turn::Mine(first) = txns.begin("!r:x", "@a:x", "D", "t1") else { panic!("first is mine") };
        let Turn::Theirs(theirs) = txns.begin("!r:x", "@a:x", "D", "t1") else { panic!("second waits") };
        drop(first);
        assert_eq!(their_event(theirs).await, None);
        assert!(matches!(txns.begin("!r:x", "@a:x", "D", "t1"), Turn::Mine(_)));
    }
}
