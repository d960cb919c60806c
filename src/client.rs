//! The CLI's HTTP client for the daemon's API, including an SSE reader for live events.

use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use telecoder_actors::domain::Event;

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the TeleCoder daemon at {url} ({reason}); start it with `telecoder serve`"
    )]
    Unreachable { url: String, reason: String },
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    /// Writing what arrived failed (the reader of our stdout went away).
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

/// Talks to one daemon.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let mut headers = reqwest::header::HeaderMap::new();
        // Every answer the CLI reads is JSON (the diff route also speaks text/x-diff).
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    ClientError::Protocol("the API token contains invalid characters".into())
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn unreachable(&self, err: &reqwest::Error) -> ClientError {
        let reason = if err.is_connect() {
            "connection refused".to_owned()
        } else if err.is_timeout() {
            "timed out".to_owned()
        } else {
            err.to_string()
        };
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|err| ClientError::Protocol(err.to_string()))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        Self::decode(response).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    /// Sends a request body (one of the API's request types) as JSON with `method`.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let request = self.http.request(method, self.url(path)).json(body);
        self.send(request).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Whether a daemon answers `/health` at this address.
    pub async fn healthy(&self) -> bool {
        let request = self
            .http
            .get(self.url("/health"))
            .timeout(Duration::from_secs(5));
        matches!(request.send().await, Ok(response) if response.status().is_success())
    }

    /// Follows a session's events over SSE, calling `on_event` for each, until the terminal
    /// event; returns it. A stream that breaks is resumed after the last event seen, as SSE
    /// clients do.
    pub async fn follow(
        &self,
        session_id: &str,
        after: i64,
        mut on_event: impl FnMut(&Event) -> std::io::Result<()>,
    ) -> Result<Option<Event>, ClientError> {
        let mut after = after;
        let mut resumes = 0;
        loop {
            match self
                .follow_once(session_id, &mut after, &mut on_event)
                .await
            {
                Ok(Some(terminal)) => return Ok(Some(terminal)),
                Ok(None) | Err(ClientError::Protocol(_)) if resumes < MAX_RESUMES => {
                    resumes += 1;
                    tokio::time::sleep(Duration::from_millis(200 * resumes)).await;
                }
                other => return other,
            }
        }
    }

    async fn follow_once(
        &self,
        session_id: &str,
        after: &mut i64,
        on_event: &mut impl FnMut(&Event) -> std::io::Result<()>,
    ) -> Result<Option<Event>, ClientError> {
        let mut response = self
            .http
            .get(self.url(&format!("/api/sessions/{session_id}/events")))
            .query(&[("after", after.to_string())])
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|err| self.unreachable(&err))?;
        if !response.status().is_success() {
            return Self::decode::<Value>(response).await.map(|_| None);
        }
        let mut parser = SseParser::default();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| ClientError::Protocol(format!("event stream broke: {err}")))?
        {
            for event in parser.push(&chunk, session_id) {
                *after = event.id;
                on_event(&event).map_err(ClientError::Output)?;
                if event.kind.is_terminal() {
                    return Ok(Some(event));
                }
            }
        }
        Ok(None)
    }
}

/// How often a broken event stream is resumed before giving up.
const MAX_RESUMES: u64 = 5;

/// Splits an SSE byte stream into events.
#[derive(Default)]
struct SseParser {
    buffer: String,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8], session_id: &str) -> Vec<Event> {
        self.buffer.push_str(&String::from_utf8_lossy(chunk));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let frame: String = self.buffer.drain(..end + 2).collect();
            if let Some(event) = parse_frame(&frame, session_id) {
                events.push(event);
            }
        }
        events
    }
}

fn parse_frame(frame: &str, session_id: &str) -> Option<Event> {
    let (mut id, mut kind, mut data) = (None, None, Vec::new());
    for line in frame.lines().filter(|line| !line.is_empty()) {
        let (field, value) = line.split_once(':')?;
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.parse::<i64>().ok(),
            "event" => kind = telecoder_actors::domain::EventKind::parse(value),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    Some(Event {
        id: id?,
        session_id: session_id.to_owned(),
        kind: kind?,
        data: data.join("\n"),
        created_at: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames_split_across_chunks() {
        let mut parser = SseParser::default();
        assert!(parser
            .push(b"id:1\nevent:output\ndata: a\n", "s")
            .is_empty());
        let events = parser.push(b"data:  b\n\n:\n\nid:2\nevent:done\ndata: ok\n\n", "s");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "a\n b");
        assert_eq!(events[1].kind, telecoder_actors::domain::EventKind::Done);
    }
}
