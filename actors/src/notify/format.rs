//! The request each kind of target gets for one delivery: a signed JSON webhook, an ntfy
//! publish (text body, headers as ntfy documents them), or a Slack incoming-webhook message.
//! Pure: the sender does the I/O.

use super::event::Facts;
use super::message::Message;
use super::target::{Auth, Kind, Target};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// The header carrying the body's HMAC-SHA256 (`sha256=<hex>`), as GitHub names its own.
pub const SIGNATURE_HEADER: &str = "X-TeleCoder-Signature-256";
/// The delivery id: the same on every retry of one notification to one target.
pub const DELIVERY_HEADER: &str = "X-TeleCoder-Delivery";
/// The notification's `type`.
pub const EVENT_HEADER: &str = "X-TeleCoder-Event";

/// ntfy turns longer messages into attachments; stay well below its 4096-byte limit.
const NTFY_BODY_MAX: usize = 3500;
/// Slack's limits: a header block's text, a section's text.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;

/// One delivery of one notification to one target.
#[derive(Clone, Debug)]
pub struct Delivery<'a> {
    pub id: &'a str,
    /// When the event that caused it was committed.
    pub created_at: &'a str,
    pub facts: &'a Facts,
    pub message: &'a Message,
}

/// What to send: the sender adds nothing but timeouts.
#[derive(Clone, Debug)]
pub struct Request {
    pub url: String,
    /// Header names and values; `authorization` is marked sensitive by the sender.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The request `target` gets for `delivery`; webhooks are signed with `secret` when one is set.
pub fn render(target: &Target, delivery: &Delivery<'_>, secret: Option<&str>) -> Request {
    let mut headers = vec![
        (
            "user-agent",
            format!("TeleCoder/{}", env!("CARGO_PKG_VERSION")),
        ),
        (DELIVERY_HEADER, delivery.id.to_owned()),
        (EVENT_HEADER, delivery.facts.name().wire_type().to_owned()),
    ];
    match &target.auth {
        Some(Auth::Bearer(token)) => headers.push(("authorization", format!("Bearer {token}"))),
        Some(Auth::Basic { user, password }) => {
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers.push(("authorization", format!("Basic {pair}")));
        }
        None => {}
    }
    let body = match target.kind {
        Kind::Webhook => {
            let body = webhook_body(delivery);
            headers.push(("content-type", "application/json".into()));
            if let Some(secret) = secret {
                headers.push((SIGNATURE_HEADER, signature(secret, &body)));
            }
            body
        }
        Kind::Ntfy => {
            headers.push(("content-type", "text/plain; charset=utf-8".into()));
            headers.extend(ntfy_headers(delivery.message));
            ntfy_body(delivery.message).into_bytes()
        }
        Kind::Slack => {
            headers.push(("content-type", "application/json".into()));
            slack_body(delivery.message).to_string().into_bytes()
        }
    };
    Request {
        url: target.url().as_str().to_owned(),
        headers,
        body,
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The generic webhook's JSON: the envelope, the message as text, and the facts.
fn webhook_body(delivery: &Delivery<'_>) -> Vec<u8> {
    let message = delivery.message;
    let mut object = Map::new();
    object.insert("id".into(), json!(delivery.id));
    object.insert("type".into(), json!(delivery.facts.name().wire_type()));
    object.insert("createdAt".into(), json!(delivery.created_at));
    object.insert("title".into(), json!(message.title));
    object.insert("text".into(), json!(message.lines.join("\n")));
    object.insert("commands".into(), json!(message.commands));
    if let Some(url) = &message.url {
        object.insert("url".into(), json!(url));
    }
    if let Ok(Value::Object(facts)) = serde_json::to_value(delivery.facts) {
        object.extend(facts);
    }
    Value::Object(object).to_string().into_bytes()
}

fn ntfy_headers(message: &Message) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("x-title", header_text(&message.title)),
        ("x-priority", message.priority.clamp(1, 5).to_string()),
    ];
    if !message.tags.is_empty() {
        headers.push(("x-tags", message.tags.join(",")));
    }
    if let Some(url) = &message.url {
        headers.push(("x-click", url.clone()));
    }
    headers
}

/// ntfy reads UTF-8 headers, but HTTP only promises ASCII: anything else goes as RFC 2047
/// base64 (`=?UTF-8?B?…?=`), which ntfy documents for exactly this.
fn header_text(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.is_ascii() {
        one_line
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(one_line.as_bytes())
        )
    }
}

fn ntfy_body(message: &Message) -> String {
    let mut text = message.lines.join("\n");
    for command in &message.commands {
        text.push_str("\n$ ");
        text.push_str(command);
    }
    truncate_bytes(&text, NTFY_BODY_MAX)
}

/// Slack's message: `text` (the notification and fallback), and blocks: a header, a section
/// with the lines and commands, and a context line with the link.
fn slack_body(message: &Message) -> Value {
    let emoji = message
        .tags
        .first()
        .map(|tag| format!(":{tag}: "))
        .unwrap_or_default();
    let mut section = message
        .lines
        .iter()
        .map(|line| slack_escape(line))
        .collect::<Vec<_>>()
        .join("\n");
    for command in &message.commands {
        section.push_str(&format!("\n`{}`", slack_escape(command)));
    }
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate_chars(&format!("{emoji}{}", message.title), SLACK_HEADER_MAX), "emoji": true}
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate_chars(&section, SLACK_SECTION_MAX)}
        }),
    ];
    if let Some(url) = &message.url {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("<{}|Open in TeleCoder>", slack_escape(url))}]
        }));
    }
    let fallback = format!(
        "{emoji}{}: {}",
        slack_escape(&message.title),
        slack_escape(
            message
                .lines
                .first()
                .map(String::as_str)
                .unwrap_or_default()
        )
    );
    json!({"text": truncate_chars(&fallback, SLACK_SECTION_MAX), "blocks": blocks})
}

/// Slack reads `&`, `<` and `>` as markup (`<!channel>` pings a whole channel), so text from
/// sessions and agents is escaped as Slack documents.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::SessionFacts;
    use crate::notify::message::compose;
    use crate::notify::target::parse_target;

    fn facts() -> Facts {
        Facts::Finished {
            session: SessionFacts {
                id: "1a2b3c4d".into(),
                repo: "acme/widgets".into(),
                agent: "codex".into(),
                status: "complete".into(),
                headline: "Done <!channel> & more ✓".into(),
                ..Default::default()
            },
        }
    }

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn render_for(url: &str, secret: Option<&str>) -> Request {
        let facts = facts();
        let message = compose(&facts, Some("https://tc.example.com"));
        let delivery = Delivery {
            id: "d-1",
            created_at: "2026-01-01T00:00:00.000Z",
            facts: &facts,
            message: &message,
        };
        render(&parse_target(url).expect("target"), &delivery, secret)
    }

    #[test]
    fn signatures_match_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn webhooks_are_signed_json_with_the_facts() {
        let request = render_for("https://example.com/hook", Some("s3cret-s3cret-s3cret"));
        assert_eq!(header(&request, DELIVERY_HEADER), Some("d-1"));
        assert_eq!(header(&request, EVENT_HEADER), Some("session.finished"));
        let expected = signature("s3cret-s3cret-s3cret", &request.body);
        assert_eq!(header(&request, SIGNATURE_HEADER), Some(expected.as_str()));
        let body: Value = serde_json::from_slice(&request.body).expect("json");
        assert_eq!(body["id"], "d-1");
        assert_eq!(body["type"], "session.finished");
        assert_eq!(body["event"], "finished");
        assert_eq!(body["session"]["id"], "1a2b3c4d");
        assert_eq!(body["session"]["status"], "complete");
        assert_eq!(body["commands"][0], "telecoder status 1a2b3c4d");
        assert_eq!(body["url"], "https://tc.example.com/sessions/1a2b3c4d");
        assert!(header(
            &render_for("https://example.com/hook", None),
            SIGNATURE_HEADER
        )
        .is_none());
    }

    #[test]
    fn ntfy_gets_text_and_its_headers() {
        let request = render_for(
            "ntfy://ntfy.example.com/alerts?token=tk_abcdefghijklmnop",
            None,
        );
        assert_eq!(request.url, "https://ntfy.example.com/alerts");
        assert_eq!(header(&request, "x-priority"), Some("3"));
        assert_eq!(header(&request, "x-tags"), Some("white_check_mark"));
        assert_eq!(
            header(&request, "x-click"),
            Some("https://tc.example.com/sessions/1a2b3c4d")
        );
        assert_eq!(
            header(&request, "authorization"),
            Some("Bearer tk_abcdefghijklmnop")
        );
        assert_eq!(
            header(&request, "x-title"),
            Some("Session complete: acme/widgets")
        );
        assert_eq!(
            header_text("Café\nau lait"),
            "=?UTF-8?B?Q2Fmw6kgYXUgbGFpdA==?="
        );
        // A repository name cannot smuggle a header line in.
        assert_eq!(header_text("x\r\nX-Click: evil"), "x  X-Click: evil");
        let body = String::from_utf8(request.body).expect("utf-8");
        assert!(body.starts_with("Done <!channel> & more ✓"), "{body}");
        assert!(body.contains("$ telecoder status 1a2b3c4d"), "{body}");
    }

    #[test]
    fn slack_gets_escaped_blocks_with_a_fallback() {
        let request = render_for(
            "https://hooks.slack.com/services/T0/B0/abcdefghijklmnopqrstuvwx",
            None,
        );
        let body: Value = serde_json::from_slice(&request.body).expect("json");
        let text = body["text"].as_str().expect("text");
        assert!(text.contains("&lt;!channel&gt; &amp; more"), "{text}");
        assert!(!text.contains("<!channel>"), "{text}");
        assert_eq!(body["blocks"][0]["type"], "header");
        assert_eq!(body["blocks"][0]["text"]["type"], "plain_text");
        assert_eq!(body["blocks"][1]["type"], "section");
        assert_eq!(body["blocks"][1]["text"]["type"], "mrkdwn");
        assert_eq!(body["blocks"][2]["type"], "context");
        assert!(body["blocks"][2]["elements"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("<https://tc.example.com/sessions/1a2b3c4d|")));
    }

    #[test]
    fn long_texts_are_cut_on_character_boundaries() {
        let long = "é".repeat(4000);
        let cut = truncate_bytes(&long, NTFY_BODY_MAX);
        assert!(cut.len() <= NTFY_BODY_MAX);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_chars(&long, 150).chars().count(), 150);
    }
}
