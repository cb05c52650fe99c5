//! The outbound queue of room federation: PDUs and EDUs for each destination are queued in
//! the database (so they survive a restart) and sent in order as transactions of at most 50
//! PDUs and 100 EDUs, one transaction in flight per destination. A destination that fails is
//! retried after the client's backoff; when it comes back it gets everything it missed.

use crate::{FederationClient, FederationError};
use myelin_core::{Result, util::now_ms};
use myelin_store::Store;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName, UInt,
    api::federation::transactions::send_transaction_message::v1 as send_transaction, serde::Raw,
};
use serde_json::value::RawValue;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Notify;

/// The spec's limits per transaction.
const MAX_PDUS: i64 = 50;
const MAX_EDUS: i64 = 100;
/// How long a transaction may take before it is tried again.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest sleep of a destination's worker while it backs off (an inbound request wakes it).
const MAX_SLEEP: Duration = Duration::from_secs(60);

pub struct Sender {
    store: Store,
    client: Arc<FederationClient>,
    server_name: OwnedServerName,
    /// One worker per destination, woken when something is queued for it.
    workers: Mutex<HashMap<OwnedServerName, Arc<Notify>>>,
}

impl Sender {
    pub fn new(store: Store, client: Arc<FederationClient>, server_name: OwnedServerName) -> Arc<Self> {
        Arc::new(Sender { store, client, server_name, workers: Mutex::default() })
    }

    /// Starts the workers of destinations with something left in the queue (from before a
    /// restart).
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        for destination in self.store.federation().queued_destinations().await? {
            if let Ok(server) = OwnedServerName::try_from(destination) {
                self.wake(&server);
            }
        }
        Ok(())
    }

    /// Queues a PDU (its federation JSON) for the destinations.
    pub async fn send_pdu(self: &Arc<Self>, destinations: &[OwnedServerName], pdu: &str) -> Result<()> {
        self.enqueue(destinations, "pdu", pdu).await
    }

    /// Queues an EDU (`{"edu_type": …, "content": …}`) for the destinations.
    pub async fn send_edu(self: &Arc<Self>, destinations: &[OwnedServerName], edu: &serde_json::Value) -> Result<()> {
        self.enqueue(destinations, "edu", &edu.to_string()).await
    }

    async fn enqueue(self: &Arc<Self>, destinations: &[OwnedServerName], kind: &str, json: &str) -> Result<()> {
        let destinations: Vec<&OwnedServerName> = destinations
            .iter()
            .filter(|d| **d != self.server_name && self.client.may_talk_to(d) && self.client.enabled())
            .collect();
        let names: Vec<String> = destinations.iter().map(|d| d.to_string()).collect();
        self.store.federation().enqueue(&names, kind, json).await?;
        for destination in destinations {
            self.wake(destination);
        }
        Ok(())
    }

    /// Makes the destination's worker look at its queue now (started when there is none).
    pub fn wake(self: &Arc<Self>, destination: &ServerName) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = workers.get(destination) {
            notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(destination.to_owned(), notify.clone());
        let (sender, destination) = (self.clone(), destination.to_owned());
        tokio::spawn(async move { sender.work(destination, notify).await });
    }

    /// Whether a worker runs for the destination (it had something queued since the start).
    pub fn knows(&self, destination: &ServerName) -> bool {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).contains_key(destination)
    }

    async fn work(&self, destination: OwnedServerName, notify: Arc<Notify>) {
        // A transaction not yet delivered is retried as it was: the receiver may have handled
        // it and lost only its answer, and answers a repeated transaction ID from memory.
        let mut pending: Option<Vec<myelin_store::OutboxRow>> = None;
        loop {
            let rows = match pending.take() {
                Some(rows) => rows,
                None => match self.store.federation().queued(destination.as_str(), MAX_PDUS, MAX_EDUS).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(%destination, "reading the federation queue: {e}");
                        sleep_or_wake(&notify, Duration::from_secs(5)).await;
                        continue;
                    }
                },
            };
            if rows.is_empty() {
                notify.notified().await;
                continue;
            }
            match self.send_transaction(&destination, &rows).await {
                Ok(()) => {
                    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
                    if let Err(e) = self.store.federation().dequeue(&ids).await {
                        tracing::warn!(%destination, "emptying the federation queue: {e}");
                    }
                }
                Err(FederationError::BackingOff { retry_after_ts, .. }) => {
                    pending = Some(rows);
                    let wait = (retry_after_ts - now_ms()).clamp(100, MAX_SLEEP.as_millis() as i64);
                    sleep_or_wake(&notify, Duration::from_millis(wait as u64)).await;
                }
                Err(FederationError::Refused { status: 401 | 408 | 429, message, .. }) => {
                    // Not now (keys not fetched yet, rate limited): later, the same transaction.
                    tracing::info!(%destination, "transaction deferred: {message}");
                    pending = Some(rows);
                    sleep_or_wake(&notify, Duration::from_secs(5)).await;
                }
                Err(FederationError::Refused { status, message, .. }) if (400..500).contains(&status) => {
                    // The destination will never take this transaction: drop it rather than
                    // block everything after it.
                    tracing::warn!(%destination, status, "transaction refused, dropped: {message}");
                    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
                    let _ = self.store.federation().dequeue(&ids).await;
                }
                Err(FederationError::Disabled | FederationError::Forbidden(_)) => {
                    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
                    let _ = self.store.federation().dequeue(&ids).await;
                }
                Err(e) => {
                    tracing::info!(%destination, "transaction not delivered, will retry: {e}");
                    pending = Some(rows);
                    // The client backs the destination off; the next round waits for it.
                    sleep_or_wake(&notify, Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn send_transaction(
        &self,
        destination: &ServerName,
        rows: &[myelin_store::OutboxRow],
    ) -> std::result::Result<(), FederationError> {
        let mut pdus = Vec::new();
        let mut edus = Vec::new();
        for row in rows {
            let Ok(raw) = RawValue::from_string(row.json.clone()) else { continue };
            if row.kind == "pdu" {
                pdus.push(raw);
            } else {
                edus.push(Raw::from_json(raw));
            }
        }
        // The first item's ID is unique per destination and stays the same when retried.
        let txn_id: ruma::OwnedTransactionId = rows[0].id.to_string().into();
        let ts = MilliSecondsSinceUnixEpoch(UInt::new(now_ms() as u64).unwrap_or_default());
        let mut request = send_transaction::Request::new(txn_id, self.server_name.clone(), ts);
        request.pdus = pdus;
        request.edus = edus;
        let response =
            tokio::time::timeout(SEND_TIMEOUT, self.client.send(destination, request)).await.map_err(|_| {
                FederationError::Unreachable {
                    destination: destination.to_string(),
                    message: "the transaction timed out".into(),
                }
            })??;
        for (event_id, result) in response.pdus {
            if let Err(e) = result {
                tracing::info!(%destination, %event_id, "the destination did not accept the PDU: {e}");
            }
        }
        Ok(())
    }
}

async fn sleep_or_wake(notify: &Notify, duration: Duration) {
    let _ = tokio::time::timeout(duration, notify.notified()).await;
}
