//! Redaction of secrets from anything stored or shown: configured secret values and the
//! well-known token shapes (GitHub tokens, bearer credentials).

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// GitHub token prefixes; the token is the prefix plus a run of `[A-Za-z0-9_]`.
const TOKEN_PREFIXES: [&str; 6] = ["github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"];
/// Shorter runs after a prefix are ordinary words (`ghp_` in prose), not tokens.
const MIN_TOKEN_BODY: usize = 16;

/// Knows the configured secrets; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn credential_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
}

/// Masks `prefix<body>` wherever `body` (chars accepted by `body_char`) is long enough.
fn mask_after(text: &str, prefix: &str, body_char: fn(char) -> bool, keep_prefix: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let body_len: usize = after
            .chars()
            .take_while(|c| body_char(*c))
            .map(char::len_utf8)
            .sum();
        out.push_str(&rest[..at]);
        if body_len >= MIN_TOKEN_BODY {
            if keep_prefix {
                out.push_str(prefix);
            }
            out.push_str(MASK);
        } else {
            out.push_str(&rest[at..at + prefix.len() + body_len]);
        }
        rest = &after[body_len..];
    }
    out.push_str(rest);
    out
}

impl Redactor {
    /// Secrets shorter than 8 characters are ignored: masking them would mangle ordinary text.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| s.len() >= 8)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        for prefix in TOKEN_PREFIXES {
            if out.contains(prefix) {
                out = mask_after(&out, prefix, token_char, false);
            }
        }
        for bearer in ["Bearer ", "bearer ", "token "] {
            if out.contains(bearer) {
                out = mask_after(&out, bearer, credential_char, true);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_configured_secrets_and_token_shapes() {
        let redactor = Redactor::new(["super-secret-value".to_owned(), "short".to_owned()]);
        let text = "key super-secret-value, ghp_0123456789abcdefghijABCDEFGHIJ012345 and \
                    github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz and \
                    Authorization: Bearer abcdef0123456789abcdef. short stays";
        let clean = redactor.redact(text);
        assert!(!clean.contains("super-secret-value"));
        assert!(!clean.contains("ghp_0123"));
        assert!(!clean.contains("github_pat_11"));
        assert!(!clean.contains("abcdef0123456789abcdef"));
        assert!(clean.contains("Bearer [REDACTED]"));
        assert!(clean.contains("short stays"));
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let redactor = Redactor::default();
        let text = "the ghp_ prefix, a Bearer token, and émoji ✓";
        assert_eq!(redactor.redact(text), text);
    }
}
