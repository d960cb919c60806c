//! Supervised actors keyed by what they run (a session id, a watch id), and found again by
//! actor id when a supervision event names one. No linear scans; one place for the
//! bookkeeping the session queue and the watch supervisor share.

use crate::admin::{Child, ChildKind};
use crate::error::Error;
use ractor::{ActorId, ActorRef, Message};
use std::collections::HashMap;
use std::time::Instant;

/// One supervised actor; `E` is what its supervisor learns about it later (a session's pid).
pub struct Entry<M, E> {
    pub actor: ActorRef<M>,
    pub started: Instant,
    pub extra: E,
}

/// The actors one supervisor runs.
pub struct Registry<M, E = ()> {
    by_key: HashMap<String, Entry<M, E>>,
    by_actor: HashMap<ActorId, String>,
    /// What the actors run ("session"), for errors.
    what: &'static str,
    /// How a fault drill is asked of one of them.
    drill: fn(String) -> M,
}

impl<M: Message, E> Registry<M, E> {
    pub fn new(what: &'static str, drill: fn(String) -> M) -> Self {
        Self {
            by_key: HashMap::new(),
            by_actor: HashMap::new(),
            what,
            drill,
        }
    }

    pub fn insert(&mut self, key: String, actor: ActorRef<M>, extra: E) {
        self.by_actor.insert(actor.get_id(), key.clone());
        let started = Instant::now();
        self.by_key.insert(
            key,
            Entry {
                actor,
                started,
                extra,
            },
        );
    }

    pub fn get(&self, key: &str) -> Option<&Entry<M, E>> {
        self.by_key.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Entry<M, E>> {
        self.by_key.get_mut(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Forgets an actor its supervisor stops on purpose (its end is then no news).
    pub fn remove(&mut self, key: &str) -> Option<Entry<M, E>> {
        let entry = self.by_key.remove(key)?;
        self.by_actor.remove(&entry.actor.get_id());
        Some(entry)
    }

    /// Forgets the actor a supervision event names; its key and entry if it was one of ours.
    pub fn ended(&mut self, actor: &ActorId) -> Option<(String, Entry<M, E>)> {
        let key = self.by_actor.remove(actor)?;
        let entry = self.by_key.remove(&key)?;
        Some((key, entry))
    }

    /// Forgets every actor, handing them over (shutdown).
    pub fn drain(&mut self) -> Vec<(String, ActorRef<M>)> {
        self.by_actor.clear();
        self.by_key.drain().map(|(key, e)| (key, e.actor)).collect()
    }

    /// Every actor with its key.
    pub fn actors(&self) -> Vec<(String, ActorRef<M>)> {
        let entries = self.by_key.iter();
        entries
            .map(|(key, e)| (key.clone(), e.actor.clone()))
            .collect()
    }

    /// Sends `message` to the actor of `key`: `None` when there is none, `Some(false)` when it
    /// is already gone.
    pub fn cast(&self, key: &str, message: M) -> Option<bool> {
        self.by_key.get(key).map(|e| e.actor.cast(message).is_ok())
    }

    /// Fails the actor of `key` on purpose (fault drills).
    pub fn inject(&self, key: &str) -> crate::Result<()> {
        let what = self.what;
        match self.cast(key, (self.drill)("drill".into())) {
            Some(true) => Ok(()),
            Some(false) => Err(Error::Unavailable(format!("{what} {key} actor is gone"))),
            None => Err(Error::NotFound(format!(
                "{what} {key} has no running actor"
            ))),
        }
    }

    /// The actors for the admin tree.
    pub fn children(
        &self,
        kind: fn(String) -> ChildKind,
        restarts: impl Fn(&str) -> u32,
    ) -> Vec<Child> {
        self.by_key
            .iter()
            .map(|(key, entry)| Child {
                cell: entry.actor.get_cell(),
                kind: kind(key.clone()),
                started: entry.started,
                restarts: restarts(key),
            })
            .collect()
    }
}
