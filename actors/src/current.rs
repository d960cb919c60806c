//! Handles on restartable actors, scoped to one daemon instance.
//!
//! A restarted child is a new actor with a new `ActorRef`, so nobody below the root keeps one.
//! The root owns a [`Slot`] per restartable child and puts the current actor in it (or `None`
//! while it is down); everyone else holds a [`Current`] and asks it at the moment of a call.
//! Nothing goes through a process-wide name, so two daemons can run in one process.

use crate::error::{Error, Result};
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a caller rides out a restart of the actor it asks: the root's first backoff steps
/// and the new actor's start fit well within it.
pub const RESTART_PATIENCE: Duration = Duration::from_secs(15);

/// The root's side: where it puts the current actor of one child.
pub struct Slot<M> {
    tx: watch::Sender<Option<ActorRef<M>>>,
    /// What callers are told the child is ("the store", "the session queue").
    what: &'static str,
}

/// Everyone else's side: the actor the root last put in the slot. Cheap to clone.
pub struct Current<M> {
    rx: watch::Receiver<Option<ActorRef<M>>>,
    what: &'static str,
}

impl<M> Clone for Current<M> {
    fn clone(&self) -> Self {
        Self {
            rx: self.rx.clone(),
            what: self.what,
        }
    }
}

impl<M: Message> Slot<M> {
    pub fn new(what: &'static str) -> Self {
        Self {
            tx: watch::Sender::new(None),
            what,
        }
    }

    pub fn current(&self) -> Current<M> {
        Current {
            rx: self.tx.subscribe(),
            what: self.what,
        }
    }

    /// Publishes a (re)started child, or `None` while it is down.
    pub fn set(&self, actor: Option<ActorRef<M>>) {
        self.tx.send_replace(actor);
    }

    pub fn get(&self) -> Option<ActorRef<M>> {
        self.tx.borrow().clone()
    }
}

impl<M: Message> Current<M> {
    /// The actor now, if it is up.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.rx.borrow().clone()
    }

    /// Sends without waiting; a message to a child that is down is dropped (callers use this
    /// for nudges that the child repeats on its own timer anyway).
    pub fn cast(&self, message: M) {
        if let Some(actor) = self.get() {
            let _ = actor.cast(message);
        }
    }

    /// Asks the current actor; rides out a restart for up to `patience` (the request is built
    /// again for the new actor when the old one died with it unanswered), and gives each
    /// attempt `timeout` to answer.
    pub async fn call<T: Send + 'static>(
        &self,
        build: impl Fn(RpcReplyPort<T>) -> M,
        timeout: Duration,
        patience: Duration,
    ) -> Result<T> {
        let deadline = Instant::now() + patience;
        let mut rx = self.rx.clone();
        loop {
            let actor = rx.borrow_and_update().clone();
            if let Some(actor) = actor {
                match actor.call(&build, Some(timeout)).await {
                    Ok(CallResult::Success(value)) => return Ok(value),
                    Ok(CallResult::Timeout) => {
                        return Err(Error::Unavailable(format!(
                            "{} did not answer in time",
                            self.what
                        )))
                    }
                    // It died with our request in hand, or before taking it: wait for the next.
                    Ok(CallResult::SenderError) | Err(_) => {}
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Error::Unavailable(format!(
                        "{} is not running (the daemon stopped)",
                        self.what
                    )))
                }
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "{} is not available (restarting?)",
                        self.what
                    )))
                }
            }
        }
    }
}
