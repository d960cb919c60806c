//! Redaction of secrets from anything stored or shown: configured secret values and the
//! well-known token shapes (GitHub tokens, bearer credentials).
//!
//! Agent output arrives in pieces, and a secret split across two pieces is in neither of them:
//! [`StreamRedactor`] holds back the tail of the stream that could still grow into a secret, so
//! what it lets through is exactly what redacting the whole text at once would give.

use std::ops::Range;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// Shorter runs after a prefix are ordinary words (`ghp_` in prose), not tokens.
const MIN_TOKEN_BODY: usize = 16;
/// The most a stream holds back because a token's body keeps growing; past this the token is
/// masked and the rest of its body is dropped as it arrives (memory stays bounded).
const MAX_HELD_BYTES: usize = 8 * 1024;

/// A token shape: a fixed prefix followed by a run of body characters.
struct Shape {
    prefix: &'static str,
    body: fn(char) -> bool,
    /// `Bearer <credential>` keeps the scheme word readable; a GitHub token is masked whole.
    keep_prefix: bool,
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn credential_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
}

const fn github(prefix: &'static str) -> Shape {
    Shape {
        prefix,
        body: token_char,
        keep_prefix: false,
    }
}

const fn scheme(prefix: &'static str) -> Shape {
    Shape {
        prefix,
        body: credential_char,
        keep_prefix: true,
    }
}

const SHAPES: [Shape; 9] = [
    github("github_pat_"),
    github("ghp_"),
    github("gho_"),
    github("ghu_"),
    github("ghs_"),
    github("ghr_"),
    scheme("Bearer "),
    scheme("bearer "),
    scheme("token "),
];

/// One occurrence of a shape's prefix, as a left-to-right scan meets it.
struct Occurrence {
    /// Where the prefix starts.
    at: usize,
    /// Where the body starts (just after the prefix).
    body_start: usize,
    /// Where the body's run of characters ends.
    body_end: usize,
}

/// Whether a token may begin at `at`: tokens start a word (`xghp_…` is not a GitHub token, and
/// `hanging` does not end in the start of one). `lead` says whether the text before `text`
/// (already shown, in a stream) ended a word.
fn starts_word(text: &str, at: usize, lead: bool) -> bool {
    match text[..at].chars().next_back() {
        Some(before) => !token_char(before),
        None => lead,
    }
}

/// The prefixes of `shape` a scan meets, skipping over each body (a prefix inside a body is
/// part of that body, as it is for the masking). Only prefixes that start a word count.
fn occurrences<'a>(
    text: &'a str,
    shape: &'a Shape,
    lead: bool,
) -> impl Iterator<Item = Occurrence> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || loop {
        let at = from + text.get(from..)?.find(shape.prefix)?;
        if !starts_word(text, at, lead) {
            // Prefixes start with an ASCII character, so the next byte is a char boundary.
            from = at + 1;
            continue;
        }
        let body_start = at + shape.prefix.len();
        let body_len: usize = text[body_start..]
            .chars()
            .take_while(|c| (shape.body)(*c))
            .map(char::len_utf8)
            .sum();
        let body_end = body_start + body_len;
        from = body_end;
        return Some(Occurrence {
            at,
            body_start,
            body_end,
        });
    })
}

/// Knows the configured secrets; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
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
        secrets.dedup();
        Self { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        apply(text, &self.spans(text, true))
    }

    /// A redactor for one stream of pieces (an agent's output).
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor {
            redactor: self.clone(),
            held: String::new(),
            swallow: None,
            lead: true,
        }
    }

    /// The byte ranges of `text` to mask, sorted and merged (`lead`: see [`starts_word`]).
    fn spans(&self, text: &str, lead: bool) -> Vec<Range<usize>> {
        let mut spans: Vec<Range<usize>> = Vec::new();
        for secret in &self.secrets {
            spans.extend(
                text.match_indices(secret.as_str())
                    .map(|(at, found)| at..at + found.len()),
            );
        }
        for shape in &SHAPES {
            spans.extend(
                occurrences(text, shape, lead)
                    .filter(|o| o.body_end - o.body_start >= MIN_TOKEN_BODY)
                    .map(|o| {
                        let start = if shape.keep_prefix {
                            o.body_start
                        } else {
                            o.at
                        };
                        start..o.body_end
                    }),
            );
        }
        spans.sort_by_key(|span| span.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
                _ => merged.push(span),
            }
        }
        merged
    }

    /// Where the part of `text` that could still grow into a secret begins (`text.len()` when
    /// nothing could): a proper prefix of a secret, or of a token prefix that starts a word, at
    /// the very end, or a token whose body runs to the end.
    fn open_tail(&self, text: &str, lead: bool) -> usize {
        let partial = |whole: &str, word_start: bool| {
            (1..whole.len())
                .rev()
                .filter(|k| whole.is_char_boundary(*k))
                .find(|k| {
                    text.ends_with(&whole[..*k])
                        && (!word_start || starts_word(text, text.len() - k, lead))
                })
                .map_or(text.len(), |k| text.len() - k)
        };
        let secrets = self.secrets.iter().map(|s| partial(s, false));
        let shapes = SHAPES.iter().flat_map(|shape| {
            let open_body = occurrences(text, shape, lead)
                .last()
                .filter(|o| o.body_end == text.len())
                .map_or(text.len(), |o| o.at);
            [partial(shape.prefix, true), open_body]
        });
        secrets.chain(shapes).min().unwrap_or(text.len())
    }

    /// The shape whose body runs to the end of `text` and is long enough to be masked.
    fn open_token(&self, text: &str, lead: bool) -> Option<fn(char) -> bool> {
        SHAPES.iter().find_map(|shape| {
            occurrences(text, shape, lead)
                .last()
                .filter(|o| o.body_end == text.len() && o.body_end - o.body_start >= MIN_TOKEN_BODY)
                .map(|_| shape.body)
        })
    }
}

/// `text` with every span replaced by the mask.
fn apply(text: &str, spans: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for span in spans {
        out.push_str(&text[from..span.start]);
        out.push_str(MASK);
        from = span.end;
    }
    out.push_str(&text[from..]);
    out
}

/// Redacts a stream given in pieces. `push` returns what may be shown now; `finish` returns
/// the rest when the stream ends. Joined, the outputs equal [`Redactor::redact`] of the joined
/// input, however the input was cut.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Redactor,
    /// The raw tail not yet shown, because it could still become (part of) a secret.
    held: String,
    /// Set after a token too long to hold was masked: the rest of its body is dropped.
    swallow: Option<fn(char) -> bool>,
    /// Whether the raw text shown (or dropped) so far ended a word (see [`starts_word`]).
    lead: bool,
}

impl StreamRedactor {
    pub fn push(&mut self, piece: &str) -> String {
        let piece = match self.swallow {
            Some(body) => {
                let rest = piece.trim_start_matches(body);
                if rest.is_empty() {
                    self.lead = !piece.chars().next_back().is_some_and(token_char);
                    return String::new();
                }
                if rest.len() < piece.len() {
                    self.lead = !piece[..piece.len() - rest.len()]
                        .chars()
                        .next_back()
                        .is_some_and(token_char);
                }
                self.swallow = None;
                rest
            }
            None => piece,
        };
        let mut text = std::mem::take(&mut self.held);
        text.push_str(piece);
        let lead = self.lead;
        let spans = self.redactor.spans(&text, lead);
        let mut cut = self.redactor.open_tail(&text, lead);
        // Never cut through something already known to be a secret.
        if let Some(span) = spans.iter().find(|s| s.start < cut && cut < s.end) {
            cut = span.start;
        }
        if text.len() - cut > MAX_HELD_BYTES.max(self.longest_secret() * 2) {
            self.swallow = self.redactor.open_token(&text, lead);
            cut = text.len();
        }
        let settled: Vec<Range<usize>> = spans.into_iter().filter(|s| s.end <= cut).collect();
        self.held = text.split_off(cut);
        if let Some(last) = text.chars().next_back() {
            self.lead = !token_char(last);
        }
        apply(&text, &settled)
    }

    /// The held tail, redacted as it stands (the stream is over, nothing more can join it).
    pub fn finish(&mut self) -> String {
        self.swallow = None;
        let rest = std::mem::take(&mut self.held);
        apply(&rest, &self.redactor.spans(&rest, self.lead))
    }

    fn longest_secret(&self) -> usize {
        self.redactor.secrets.first().map_or(0, String::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

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

    fn streamed(redactor: &Redactor, pieces: &[&str]) -> String {
        let mut stream = redactor.stream();
        let mut out: String = pieces.iter().map(|p| stream.push(p)).collect();
        out.push_str(&stream.finish());
        out
    }

    /// Every way of cutting `text` in two and in three pieces.
    fn cuts(text: &str) -> Vec<Vec<&str>> {
        let bounds: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        let mut all = Vec::new();
        for (n, a) in bounds.iter().enumerate() {
            all.push(vec![&text[..*a], &text[*a..]]);
            for b in bounds.iter().skip(n).step_by(7) {
                all.push(vec![&text[..*a], &text[*a..*b], &text[*b..]]);
            }
        }
        all
    }

    #[test]
    fn a_secret_cut_anywhere_is_masked_as_if_whole() {
        let redactor = Redactor::new(["hunter2-password".to_owned()]);
        for text in [
            format!("token: {TOKEN} end"),
            TOKEN.to_owned(),
            "pw hunter2-password, Bearer abcdef0123456789abcdef.x".to_owned(),
            format!("ghp_ short, then {TOKEN}ghp_tail and é ✓ hunter2-pass"),
            "the token is here and bearer of news: ghp_abc".to_owned(),
            format!("glued x{TOKEN} and _{TOKEN}, spaced {TOKEN}"),
        ] {
            let whole = redactor.redact(&text);
            for pieces in cuts(&text) {
                assert_eq!(streamed(&redactor, &pieces), whole, "{pieces:?}");
            }
        }
    }

    #[test]
    fn only_what_could_become_a_secret_is_held_back() {
        let redactor = Redactor::default();
        let mut stream = redactor.stream();
        assert_eq!(stream.push("compiling... done\n"), "compiling... done\n");
        assert_eq!(stream.push("now ghp_"), "now ");
        assert_eq!(
            stream.push("0123456789abcdefghij rest."),
            "[REDACTED] rest."
        );
        assert_eq!(stream.push(" and gh"), " and ");
        assert_eq!(
            stream.push("ost t"),
            "ghost ",
            "a word `t` may begin `token `"
        );
        assert_eq!(stream.push("oken"), "");
        assert_eq!(stream.push("s, hangin"), "tokens, hangin");
        assert_eq!(stream.push("g"), "g", "tokens begin words");
        assert_eq!(stream.finish(), "");
    }

    #[test]
    fn an_endless_token_is_masked_in_bounded_memory() {
        let redactor = Redactor::default();
        let mut stream = redactor.stream();
        let mut out = stream.push("key ghp_");
        for _ in 0..100 {
            out.push_str(&stream.push(&"a".repeat(1000)));
            assert!(stream.held.len() <= MAX_HELD_BYTES + 1000);
        }
        out.push_str(&stream.push("aaa then text"));
        out.push_str(&stream.finish());
        assert_eq!(out, "key [REDACTED] then text");
    }
}
