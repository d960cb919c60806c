//! Named async locks, so a workspace is never collected while it is diffed, fetched or cloned,
//! and a mirror is never deleted or repacked while a workspace is cloned from it. One daemon
//! owns a data directory, so locks within the process are enough.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

static LOCKS: LazyLock<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>> =
    LazyLock::new(Default::default);

/// Held while the named thing is in use; the entry is forgotten when nobody waits for it.
pub struct Held {
    name: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        if locks
            .get(&self.name)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.name);
        }
    }
}

fn entry(name: &str) -> Arc<AsyncMutex<()>> {
    LOCKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}

/// Waits for the named lock.
pub async fn lock(name: &str) -> Held {
    let guard = entry(name).lock_owned().await;
    Held {
        name: name.to_owned(),
        guard: Some(guard),
    }
}

/// Takes the named lock if it is free right now.
pub fn try_lock(name: &str) -> Option<Held> {
    let guard = entry(name).try_lock_owned().ok()?;
    Some(Held {
        name: name.to_owned(),
        guard: Some(guard),
    })
}

/// The lock of one session's workspace: diff, fetch, collection (and `continue`, which reuses a
/// workspace) take it.
pub async fn session(id: &str) -> Held {
    lock(&format!("session:{id}")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lock_is_not_free_and_is_forgotten_after() {
        let held = lock("t:a").await;
        assert!(try_lock("t:a").is_none());
        drop(held);
        assert!(!LOCKS.lock().expect("locks").contains_key("t:a"));
        assert!(try_lock("t:a").is_some());
    }
}
