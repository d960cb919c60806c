//! A session's events on the wire, as a JSON array (`GET …/events`) or as SSE frames, read
//! from the store in bounded pages with long data in slices: however long the session and
//! however slow the client, one reader holds a page and a slice, not the story.

use super::stream::{json_stream, BodyWriter, End};
use super::AppState;
use telecoder_actors::domain::{Event, SessionId};
use telecoder_actors::store::pages::{EventHead, INLINE_EVENT_BYTES};
use telecoder_actors::store::StoreClient;
use warp::reply::Response;

/// Events per page read from the store.
pub const PAGE: u32 = 200;
/// Inline data per page before the page is cut short.
pub const PAGE_BYTES: usize = 64 * 1024;
/// Bytes of long event data read at a time.
const SLICE_BYTES: usize = 64 * 1024;

/// Where an event's data goes: a JSON string's inside, or SSE `data:` lines.
pub enum DataFormat {
    Json,
    /// Carries whether the last piece ended in CR, so a CRLF split across slices stays one
    /// line break.
    Sse {
        after_cr: bool,
    },
}

impl DataFormat {
    fn write(&mut self, text: &str, buf: &mut Vec<u8>) {
        match self {
            Self::Json => {
                let quoted = serde_json::Value::String(text.to_owned()).to_string();
                buf.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
            }
            Self::Sse { after_cr } => {
                for ch in text.chars() {
                    // SSE cannot carry a bare CR inside data: CRLF and CR become LF, and every
                    // line is its own `data:` line with one leading space (clients strip one),
                    // so indented output stays intact.
                    match ch {
                        '\r' => buf.extend_from_slice(b"\ndata: "),
                        '\n' if *after_cr => {}
                        '\n' => buf.extend_from_slice(b"\ndata: "),
                        other => {
                            let mut utf8 = [0u8; 4];
                            buf.extend_from_slice(other.encode_utf8(&mut utf8).as_bytes());
                        }
                    }
                    *after_cr = ch == '\r';
                }
            }
        }
    }
}

/// Writes an event's data in `format`, reading long data slice by slice.
async fn write_data(
    store: &StoreClient,
    head: &EventHead,
    format: &mut DataFormat,
    out: &mut BodyWriter,
) -> Result<(), End> {
    if let Some(data) = &head.data {
        format.write(data, out.buf());
        return Ok(());
    }
    let (mut offset, mut carry) = (0usize, Vec::new());
    while offset < head.len {
        let bytes = store
            .event_bytes(head.id, offset, SLICE_BYTES)
            .await
            .map_err(|err| End::Failed(format!("event {}: {err}", head.id)))?;
        if bytes.is_empty() {
            break;
        }
        offset += bytes.len();
        carry.extend_from_slice(&bytes);
        let valid = complete_utf8(&carry, format, out.buf());
        carry.drain(..valid);
        out.flush().await?;
    }
    if !carry.is_empty() {
        format.write(&String::from_utf8_lossy(&carry), out.buf());
    }
    Ok(())
}

/// Writes the longest prefix of `bytes` that is whole UTF-8 (a slice may end inside a
/// character); returns its length. A byte that can never be valid is replaced.
fn complete_utf8(bytes: &[u8], format: &mut DataFormat, buf: &mut Vec<u8>) -> usize {
    let mut start = 0;
    loop {
        match std::str::from_utf8(&bytes[start..]) {
            Ok(text) => {
                format.write(text, buf);
                return bytes.len();
            }
            Err(err) => {
                let valid = &bytes[start..start + err.valid_up_to()];
                format.write(&String::from_utf8_lossy(valid), buf);
                match err.error_len() {
                    Some(bad) => {
                        format.write("\u{FFFD}", buf);
                        start += err.valid_up_to() + bad;
                    }
                    None => return start + err.valid_up_to(),
                }
            }
        }
    }
}

fn json_text(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// One event as a JSON object, the same shape as [`Event`]'s serialisation.
async fn write_json(
    store: &StoreClient,
    head: &EventHead,
    out: &mut BodyWriter,
) -> Result<(), End> {
    out.push(
        format!(
            "{{\"id\":{},\"sessionId\":{},\"type\":{},\"data\":\"",
            head.id,
            json_text(&head.session_id),
            json_text(head.kind.as_str())
        )
        .as_bytes(),
    );
    write_data(store, head, &mut DataFormat::Json, out).await?;
    out.push(format!("\",\"createdAt\":{}}}", json_text(&head.created_at)).as_bytes());
    Ok(())
}

/// One event as an SSE frame (`id`, `event`, one `data:` line per line), sent at once.
pub async fn write_sse(
    store: &StoreClient,
    head: &EventHead,
    out: &mut BodyWriter,
) -> Result<(), End> {
    out.push(format!("id:{}\nevent:{}\ndata: ", head.id, head.kind.as_str()).as_bytes());
    write_data(store, head, &mut DataFormat::Sse { after_cr: false }, out).await?;
    out.push(b"\n\n");
    out.flush().await
}

/// A live event from the bus as a page head: short data is used as it is, long data is read
/// back from the store in slices.
pub fn head_of(event: &Event) -> EventHead {
    EventHead {
        id: event.id,
        session_id: event.session_id.clone(),
        kind: event.kind,
        created_at: event.created_at.clone(),
        len: event.data.len(),
        data: (event.data.len() <= INLINE_EVENT_BYTES).then(|| event.data.clone()),
    }
}

/// `GET /api/sessions/:id/events` as JSON: the array streamed from the store, starting with
/// the page already read (`first`).
pub fn json_response(state: AppState, id: SessionId, first: Vec<EventHead>) -> Response {
    json_stream(move |mut out| async move {
        let store = state.daemon.store().clone();
        let result = async {
            let mut page = first;
            while let Some(last) = page.last().map(|head| head.id) {
                for head in &page {
                    out.separate();
                    write_json(&store, head, &mut out).await?;
                    out.flush_if_full().await?;
                }
                page = store
                    .event_heads(id.as_str(), last, PAGE, PAGE_BYTES)
                    .await
                    .map_err(|err| End::Failed(err.to_string()))?;
            }
            Ok(())
        }
        .await;
        (out, result)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(pieces: &[&str]) -> String {
        let mut format = DataFormat::Sse { after_cr: false };
        let mut buf = Vec::new();
        for piece in pieces {
            format.write(piece, &mut buf);
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn sse_data_normalises_line_breaks_across_pieces() {
        assert_eq!(sse(&["a\r\nb"]), sse(&["a\r", "\nb"]));
        assert_eq!(sse(&["a\r\nb"]), "a\ndata: b");
        assert_eq!(sse(&["a\rb\n\nc"]), "a\ndata: b\ndata: \ndata: c");
    }

    #[test]
    fn slices_split_inside_a_character_are_joined() {
        let text = "héllo → wörld";
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut format = DataFormat::Json;
        let mut carry = Vec::new();
        for piece in bytes.chunks(3) {
            carry.extend_from_slice(piece);
            let valid = complete_utf8(&carry, &mut format, &mut out);
            carry.drain(..valid);
        }
        assert!(carry.is_empty());
        assert_eq!(String::from_utf8(out).unwrap_or_default(), text);
        let bad = [b'a', 0xff, b'b'];
        let mut replaced = Vec::new();
        let valid = complete_utf8(&bad, &mut DataFormat::Json, &mut replaced);
        assert_eq!(valid, 3);
        assert_eq!(
            String::from_utf8(replaced).unwrap_or_default(),
            "a\u{FFFD}b"
        );
    }
}
