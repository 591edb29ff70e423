//! A process's mailbox: bounded, in order, single receiver, and allocating
//! only for the messages it holds.
//!
//! Why not `tokio::sync::mpsc`: its channel allocates a block of 32 message
//! slots when created, about 2.6 KB per process whether or not a message
//! ever arrives, which made an idle process cost more than an Erlang one.
//! Most processes of a service (a WebSocket connection each) sit idle; here
//! an empty mailbox is a few words and its queue grows with its contents.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::process::Envelope;

/// Why a message could not be put in the mailbox at once.
#[derive(Debug)]
pub(crate) enum TryPutError {
    /// The mailbox holds `capacity` messages.
    Full(Envelope),
    /// The process ended (or the node shut down).
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Envelope>,
    /// The process ended: nothing more is accepted, nothing is kept.
    receiver_gone: bool,
    /// The node let go of the process: the receiver drains what is queued,
    /// then sees the end.
    senders_gone: bool,
}

/// A bounded mailbox with one receiver.
#[derive(Debug)]
pub(crate) struct Mailbox {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the receiver: a message arrived or the senders are gone.
    readable: Notify,
    /// Wakes a sender waiting for room (the process's overflow task).
    writable: Notify,
    /// Messages to the process dropped because the mailbox stayed full
    /// (here, where both the process and its slot can see it).
    pub(crate) dropped: std::sync::atomic::AtomicU64,
    /// Whether the process is alive (cleared when the node lets go of it
    /// or the process ends), for lock-free liveness checks.
    pub(crate) alive: std::sync::atomic::AtomicBool,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            readable: Notify::new(),
            writable: Notify::new(),
            dropped: std::sync::atomic::AtomicU64::new(0),
            alive: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Puts `envelope` in the mailbox if there is room.
    pub(crate) fn try_put(&self, envelope: Envelope) -> Result<(), TryPutError> {
        let mut state = self.state.lock();
        if state.receiver_gone || state.senders_gone {
            return Err(TryPutError::Closed);
        }
        if state.queue.len() >= self.capacity {
            return Err(TryPutError::Full(envelope));
        }
        state.queue.push_back(envelope);
        drop(state);
        self.readable.notify_one();
        Ok(())
    }

    /// Puts `envelope` in the mailbox, waiting for room; `Err` if the
    /// process ends first. Cancel-safe: dropping the future drops the
    /// message.
    pub(crate) async fn put(&self, envelope: Envelope) -> Result<(), TryPutError> {
        let mut envelope = envelope;
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_put(envelope) {
                Err(TryPutError::Full(back)) => envelope = back,
                done => return done,
            }
            notified.await;
        }
    }

    /// The next message, waiting for one; `None` once the senders are gone
    /// and the queue is drained. Cancel-safe.
    pub(crate) async fn take(&self) -> Option<Envelope> {
        loop {
            let notified = self.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state.lock();
                if let Some(envelope) = self.pop(&mut state) {
                    return Some(envelope);
                }
                if state.senders_gone {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The next message if one is waiting.
    pub(crate) fn try_take(&self) -> Option<Envelope> {
        let mut state = self.state.lock();
        self.pop(&mut state)
    }

    fn pop(&self, state: &mut State) -> Option<Envelope> {
        let envelope = state.queue.pop_front()?;
        if state.queue.len() + 1 == self.capacity {
            self.writable.notify_one();
        }
        // A queue that grew for a burst gives its memory back once drained.
        if state.queue.is_empty() && state.queue.capacity() > 16 {
            state.queue = VecDeque::new();
        }
        Some(envelope)
    }

    /// The process ended: drop what is queued, refuse what comes.
    pub(crate) fn close_receiver(&self) {
        let queued = {
            let mut state = self.state.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
        self.writable.notify_waiters();
    }

    /// The node let go of the process: the receiver drains, then ends.
    pub(crate) fn close_senders(&self) {
        self.state.lock().senders_gone = true;
        self.readable.notify_one();
        self.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use bytes::Bytes;
    use pg_core::NodeId;

    use super::*;

    fn envelope(i: u8) -> Envelope {
        let node = NodeId::parse_name("n", 1).unwrap();
        Envelope {
            from: node.pid(1).unwrap(),
            topic: Arc::from("t"),
            payload: Bytes::from(vec![i]),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_in_order_and_closes_both_ways() {
        let mailbox = Arc::new(Mailbox::new(2));
        mailbox.try_put(envelope(1)).unwrap();
        mailbox.try_put(envelope(2)).unwrap();
        assert!(matches!(
            mailbox.try_put(envelope(3)),
            Err(TryPutError::Full(_))
        ));
        // A waiting sender gets in once there is room, after what is queued.
        let waiting = tokio::spawn({
            let mailbox = Arc::clone(&mailbox);
            async move { mailbox.put(envelope(3)).await }
        });
        tokio::task::yield_now().await;
        for want in 1..=3 {
            assert_eq!(mailbox.take().await.unwrap().payload[0], want);
        }
        waiting.await.unwrap().unwrap();
        assert!(mailbox.try_take().is_none());
        // The node lets go: queued messages drain, then the end.
        mailbox.try_put(envelope(4)).unwrap();
        mailbox.close_senders();
        assert!(matches!(
            mailbox.try_put(envelope(5)),
            Err(TryPutError::Closed)
        ));
        assert_eq!(mailbox.take().await.unwrap().payload[0], 4);
        assert!(mailbox.take().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_process_refuses_and_frees_a_waiting_sender() {
        let mailbox = Arc::new(Mailbox::new(1));
        mailbox.try_put(envelope(1)).unwrap();
        let waiting = tokio::spawn({
            let mailbox = Arc::clone(&mailbox);
            async move { mailbox.put(envelope(2)).await }
        });
        tokio::task::yield_now().await;
        mailbox.close_receiver();
        assert!(matches!(waiting.await.unwrap(), Err(TryPutError::Closed)));
        assert!(mailbox.try_take().is_none(), "queued messages are dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_waiting_sees_the_end_when_the_node_lets_go() {
        let mailbox = Arc::new(Mailbox::new(4));
        let receiver = tokio::spawn({
            let mailbox = Arc::clone(&mailbox);
            async move { mailbox.take().await }
        });
        tokio::task::yield_now().await;
        mailbox.close_senders();
        assert!(receiver.await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_waiting_wakes_on_a_message() {
        let mailbox = Arc::new(Mailbox::new(4));
        let receiver = tokio::spawn({
            let mailbox = Arc::clone(&mailbox);
            async move { mailbox.take().await }
        });
        tokio::task::yield_now().await;
        mailbox.try_put(envelope(9)).unwrap();
        assert_eq!(receiver.await.unwrap().unwrap().payload[0], 9);
    }
}
