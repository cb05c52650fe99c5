//! Work that must run to its end even when the request that started it goes away.
//!
//! Writing an event and advancing the room's head after it must not stop halfway when the
//! client hangs up (the event stored, the head behind it). A task of its own gives that, but
//! costs a spawn per event and a wake-up of another runtime thread to look at it (5–6% of the
//! server's time sending messages one after another, measured in `docs/PERFORMANCE.md`).
//! `Completes` runs the work in the request's own task instead, and only when the request is
//! dropped before the work is done does the rest become a task.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// A future polled in place that, if dropped before it completes, is spawned to finish.
pub(crate) struct Completes<F: Future<Output: Send> + Send + 'static>(Option<Pin<Box<F>>>);

impl<F: Future<Output: Send> + Send + 'static> Completes<F> {
    pub(crate) fn new(work: F) -> Self {
        Completes(Some(Box::pin(work)))
    }
}

impl<F: Future<Output: Send> + Send + 'static> Future for Completes<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(work) = self.0.as_mut() else {
            panic!("`Completes` polled after it completed");
        };
        let done = work.as_mut().poll(cx);
        if done.is_ready() {
            self.0 = None;
        }
        done
    }
}

impl<F: Future<Output: Send> + Send + 'static> Drop for Completes<F> {
    fn drop(&mut self) {
        if let Some(rest) = self.0.take() {
            // Without a runtime (it is shutting down) nothing would run the rest anyway.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Completes;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn runs_in_place_and_answers() {
        assert_eq!(Completes::new(async { 7 }).await, 7);
    }

    #[tokio::test]
    async fn finishes_when_dropped_halfway() {
        let (go, wait) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel();
        let work = Completes::new(async move {
            let _ = wait.await;
            let _ = done.send("finished");
        });
        // Dropped while the work waits: the rest must still run.
        assert!(tokio::time::timeout(Duration::from_millis(20), work).await.is_err());
        go.send(()).unwrap();
        let finished = tokio::time::timeout(Duration::from_secs(5), finished).await;
        assert_eq!(finished.expect("the rest ran").unwrap(), "finished");
    }
}
