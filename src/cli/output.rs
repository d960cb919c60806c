//! Where the CLI's output goes and in which form: text and tables for a person at a terminal,
//! the reference TeleCoder's JSON for a pipe or a file (like `gh`), `--json` / `--human` to
//! choose. A reader that goes away (`telecoder list | head -1`) ends the command quietly.

use serde::Serialize;
use std::io::{IsTerminal, Result, Write};

/// The two audiences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Human,
    Json,
}

/// `--format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    /// Tables and text (also `text`).
    #[value(alias = "text", alias = "human")]
    Table,
}

impl Mode {
    /// What the flags ask for; without any, text on a terminal and JSON elsewhere.
    pub fn choose(json: bool, human: bool, format: Option<Format>) -> Self {
        match (json, human, format) {
            (true, _, _) | (_, _, Some(Format::Json)) => Self::Json,
            (_, true, _) | (_, _, Some(Format::Table)) => Self::Human,
            _ if std::io::stdout().is_terminal() => Self::Human,
            _ => Self::Json,
        }
    }
}

/// Prints results on stdout and progress and notes on stderr.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub mode: Mode,
    /// JSON was asked for (`--json`, `--format json`), not merely chosen for a pipe: commands
    /// whose natural pipe output is text (`diff`) give JSON only then.
    pub forced_json: bool,
}

impl Out {
    pub fn json(&self) -> bool {
        self.mode == Mode::Json
    }

    /// Writes `text` to stdout as is (a closed pipe surfaces as `BrokenPipe`, which the
    /// command turns into a quiet exit).
    pub fn print(&self, text: &str) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()
    }

    /// Writes `text` and a line break.
    pub fn line(&self, text: &str) -> Result<()> {
        self.print(&format!("{text}\n"))
    }

    /// A result: pretty JSON (as the reference prints it) for machines, `human()` for people.
    pub fn data<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> Result<()> {
        match self.mode {
            Mode::Json => self.line(&pretty(value)),
            Mode::Human => self.print(&human()),
        }
    }

    /// Progress of a session being followed: on stdout for a person, on stderr when stdout
    /// carries JSON (so that it stays one parseable document).
    pub fn progress(&self, text: &str) -> Result<()> {
        match self.mode {
            Mode::Human => self.print(text),
            Mode::Json => {
                note_raw(text);
                Ok(())
            }
        }
    }

    /// A remark for the person, on stderr (never mixed into results).
    pub fn note(&self, text: &str) {
        note_raw(&format!("{text}\n"));
    }
}

fn note_raw(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Two-space indented JSON, like the reference's `JSON.stringify(value, null, 2)`.
pub fn pretty<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}
