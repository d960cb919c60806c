//! Session ids: 8 lowercase hex characters, random, checked before they reach a query.

use std::fmt;

/// A validated session id. Anything that is not 8 lowercase hex characters (say
/// `../../etc/passwd`) never becomes one, so it can safely name a directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
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
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Accepts only the canonical form.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 8
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The git branch the session works on.
    pub fn branch(&self) -> String {
        format!("telecoder/{}", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
        }
    }
}
