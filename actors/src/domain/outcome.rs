//! Structured outcomes: Changed / Verified / Uncertain / Next pulled out of the agent's text,
//! so a person reviews results without rereading a transcript.

use serde::Serialize;

/// The outcome as stored on a session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub headline: String,
    pub changed: String,
    pub verified: String,
    pub uncertain: String,
    pub next: String,
}

/// Headlines are for inbox lines, not essays.
pub const HEADLINE_MAX_CHARS: usize = 280;
const NO_OUTPUT: &str = "Completed without agent output.";
const FAILED_NEXT: &str = "Inspect the error and rerun or intervene manually.";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Changed,
    Verified,
    Uncertain,
    Next,
}

/// The four sections as the agent wrote them (empty when absent).
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Sections {
    pub changed: String,
    pub verified: String,
    pub uncertain: String,
    pub next: String,
}

impl Sections {
    fn slot(&mut self, section: Section) -> &mut String {
        match section {
            Section::Changed => &mut self.changed,
            Section::Verified => &mut self.verified,
            Section::Uncertain => &mut self.uncertain,
            Section::Next => &mut self.next,
        }
    }
}

/// A line starting a section, with the rest of the line after the colon.
fn heading(line: &str) -> Option<(Section, &str)> {
    let trimmed = line.trim_start();
    [
        ("changed:", Section::Changed),
        ("verified:", Section::Verified),
        ("uncertain:", Section::Uncertain),
        ("next:", Section::Next),
    ]
    .into_iter()
    .find_map(|(label, section)| {
        let head = trimmed.get(..label.len())?;
        head.eq_ignore_ascii_case(label)
            .then(|| (section, &trimmed[label.len()..]))
    })
}

/// Splits the agent's text into the four sections; each is the rest of its heading line plus
/// the following lines up to the next heading, joined with single spaces.
pub fn parse_sections(text: &str) -> Sections {
    let mut sections = Sections::default();
    let mut current: Option<Section> = None;
    for line in text.lines() {
        let rest = match heading(line) {
            Some((section, rest)) => {
                current = Some(section);
                rest
            }
            None => line,
        };
        let Some(section) = current else { continue };
        let slot = sections.slot(section);
        for word in rest.split_whitespace() {
            if !slot.is_empty() {
                slot.push(' ');
            }
            slot.push_str(word);
        }
    }
    sections
}

fn first_non_empty_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|line| !line.is_empty())
}

fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

impl Outcome {
    /// The outcome of a session that finished successfully.
    pub fn complete(text: &str) -> Self {
        let sections = parse_sections(text);
        let first_line = first_non_empty_line(text).unwrap_or_default();
        let changed = if sections.changed.is_empty() {
            first_line.to_owned()
        } else {
            sections.changed
        };
        let headline = if changed.is_empty() {
            NO_OUTPUT.to_owned()
        } else {
            clip(&changed, HEADLINE_MAX_CHARS)
        };
        Self {
            headline,
            changed,
            verified: sections.verified,
            uncertain: sections.uncertain,
            next: sections.next,
        }
    }

    /// The outcome of a failed session: the error leads, with sensible defaults.
    pub fn failed(error: &str, text: &str) -> Self {
        let sections = parse_sections(text);
        Self {
            headline: clip(&format!("Failed: {error}"), HEADLINE_MAX_CHARS),
            changed: sections.changed,
            verified: sections.verified,
            uncertain: if sections.uncertain.is_empty() {
                error.to_owned()
            } else {
                sections.uncertain
            },
            next: if sections.next.is_empty() {
                FAILED_NEXT.to_owned()
            } else {
                sections.next
            },
        }
    }

    /// The provisional headline of a session that has not finished.
    pub fn in_progress(status: &str, text: &str) -> Self {
        Self {
            headline: first_non_empty_line(text)
                .map(|line| clip(line, HEADLINE_MAX_CHARS))
                .unwrap_or_else(|| format!("Session is {status}.")),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_case_insensitively_across_lines() {
        let text = "Looked around.\nchanged: fixed auth.ts\n  and the test\n\nVERIFIED: ran npm test\nUncertain: none\nNext: publish";
        let outcome = Outcome::complete(text);
        assert_eq!(outcome.headline, "fixed auth.ts and the test");
        assert_eq!(outcome.changed, "fixed auth.ts and the test");
        assert_eq!(outcome.verified, "ran npm test");
        assert_eq!(outcome.uncertain, "none");
        assert_eq!(outcome.next, "publish");
    }

    #[test]
    fn without_sections_the_first_line_leads() {
        let outcome = Outcome::complete("\n  All good here.\nmore text");
        assert_eq!(outcome.headline, "All good here.");
        assert_eq!(outcome.changed, "All good here.");
        assert_eq!(outcome.verified, "");
    }

    #[test]
    fn empty_output_has_a_fallback_headline() {
        assert_eq!(Outcome::complete("  \n").headline, NO_OUTPUT);
    }

    #[test]
    fn failures_lead_with_the_error() {
        let outcome = Outcome::failed("acpx exited with code 1", "");
        assert_eq!(outcome.headline, "Failed: acpx exited with code 1");
        assert_eq!(outcome.uncertain, "acpx exited with code 1");
        assert_eq!(outcome.next, FAILED_NEXT);
        let long = "x".repeat(1000);
        assert_eq!(Outcome::failed(&long, "").headline.chars().count(), 280);
    }

    #[test]
    fn in_progress_headline() {
        assert_eq!(
            Outcome::in_progress("running", "").headline,
            "Session is running."
        );
    }

    #[test]
    fn multibyte_headlines_clip_on_char_boundaries() {
        let text = "é".repeat(400);
        assert_eq!(Outcome::complete(&text).headline.chars().count(), 280);
    }
}
