//! Session and watch ids: 8 lowercase hex characters, random, checked before they reach a
//! query. One shape, two types, so a watch id never stands where a session id belongs.

use std::fmt;
use std::marker::PhantomData;

/// A validated id of the thing `K` names. Anything that is not 8 lowercase hex characters
/// (say `../../etc/passwd`) never becomes one, so it can safely name a directory.
pub struct Id<K> {
    text: String,
    kind: PhantomData<fn() -> K>,
}

/// What a [`SessionId`] names.
pub enum OfSession {}
/// What a [`WatchId`] names.
pub enum OfWatch {}

pub type SessionId = Id<OfSession>;
pub type WatchId = Id<OfWatch>;

impl<K> Id<K> {
    fn new(text: String) -> Self {
        Self {
            text,
            kind: PhantomData,
        }
    }

    /// A fresh random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 4];
        // The OS random source only fails on exotic platforms; fall back to the clock there.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
                .unwrap_or_default();
            bytes = nanos.to_le_bytes();
        }
        Self::new(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Accepts only the canonical form.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 8
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self::new(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl SessionId {
    /// The git branch the session works on.
    pub fn branch(&self) -> String {
        format!("telecoder/{}", self.text)
    }
}

// By hand: derives would ask the same of the marker `K`.
impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        Self::new(self.text.clone())
    }
}

impl<K> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<K> Eq for Id<K> {}

impl<K> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state)
    }
}

impl<K> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<K> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_canonical() {
        for _ in 0..100 {
            let id = SessionId::random();
            assert_eq!(SessionId::parse(id.as_str()), Some(id));
        }
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "../../etc/passwd",
            "ABCDEF12",
            "abc",
            "abcdef123",
            "abcdefgh",
            "",
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad}");
            assert_eq!(WatchId::parse(bad), None, "{bad}");
        }
    }
}
