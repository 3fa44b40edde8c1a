//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of a real API
//! server (moto, the cloud fakes), for the fault tests: the component talks
//! to the proxy as if it were the cloud, and the test scripts what goes
//! wrong with which call.
//!
//! Requests are forwarded byte for byte (the `Host` header included, so a
//! SigV4 signature made for the proxy's address still verifies upstream),
//! one request per connection. The API action of a request is its `Action`
//! form or query parameter (EC2's Query API), else `METHOD /path`. A rule
//! applies a [`Fault`] to the next `times` requests whose action it names
//! ([`FaultProxy::fail`]) or starts with ([`FaultProxy::fail_prefix`], for
//! REST APIs whose paths carry names, such as Azure Resource Manager's
//! `PUT /subscriptions/…/virtualMachines/<name>`); everything else passes
//! through untouched. An injected 500 is shaped as the API answers it: EC2's
//! XML, or ARM's JSON error for a path under `/subscriptions/`.
//! [`Fault::Answer`] is a canned refusal: the cloud's own error body for a
//! condition its emulator cannot be put in (EC2 out of capacity in one
//! region, say).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What goes wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 without forwarding: the request never reached the cloud.
    Refuse500,
    /// Forward it, then answer 500 instead of the real response: the
    /// request took effect, its answer was lost.
    Lose500,
    /// Forward it, then never answer (the connection stays open until the
    /// client gives up): took effect, the client times out.
    LoseHang,
    /// Forward it, then close the connection without a byte of answer.
    LoseReset,
    /// Never forward and never answer: the cloud is unreachable.
    Hang,
    /// Answer this, without forwarding: the cloud refused the request with
    /// `status` and the error document `body` (XML or JSON, as the cloud
    /// writes its errors; the content type follows the body's first
    /// character).
    Answer {
        /// HTTP status.
        status: u16,
        /// The response body.
        body: &'static str,
    },
}

impl Fault {
    /// Whether the request reaches the upstream server.
    pub fn forwards(self) -> bool {
        matches!(self, Self::Lose500 | Self::LoseHang | Self::LoseReset)
    }
}

#[derive(Debug)]
struct Rule {
    action: String,
    /// Matches any action starting with `action`.
    prefix: bool,
    left: u32,
    fault: Fault,
}

impl Rule {
    fn matches(&self, action: &str) -> bool {
        if self.prefix {
            action.starts_with(&self.action)
        } else {
            action == self.action
        }
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its action (`RunInstances`, `POST /servers`, ...).
    pub action: String,
    /// The fault applied to it, if any.
    pub fault: Option<Fault>,
}

/// A running proxy; stops accepting on drop (hanging connections are
/// released then too).
pub struct FaultProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Start one forwarding to `127.0.0.1:<upstream_port>`.
    pub fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (rules.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, s, st) = (r.clone(), s.clone(), st.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, upstream_port, &r, &s, &st);
                });
            }
        });
        Self {
            port,
            rules,
            seen,
            stop,
        }
    }

    /// `http://127.0.0.1:<port>`: what the component is pointed at.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Apply `fault` to the next `times` requests for `action`.
    pub fn fail(&self, action: &str, times: u32, fault: Fault) {
        self.rules.lock().unwrap().push(Rule {
            action: action.to_string(),
            prefix: false,
            left: times,
            fault,
        });
    }

    /// Apply `fault` to the next `times` requests whose action starts with
    /// `prefix` (`PUT /subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/virtualMachines/`).
    pub fn fail_prefix(&self, prefix: &str, times: u32, fault: Fault) {
        self.rules.lock().unwrap().push(Rule {
            action: prefix.to_string(),
            prefix: true,
            left: times,
            fault,
        });
    }

    /// Drop every rule still pending.
    pub fn heal(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Actions of the requests so far, in order.
    pub fn actions(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.action).collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Read one request: head (up to the blank line) and its body by
/// Content-Length.
fn read_request(conn: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..head_end].to_vec();
    let len = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head).lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The request's action: `Action=` in the form body or the query, else
/// `METHOD /path`.
fn action(head: &[u8], body: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let body = String::from_utf8_lossy(body);
    for params in [body.as_ref(), query] {
        if let Some(a) = params.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
            return a.to_string();
        }
    }
    format!("{method} {}", target.split('?').next().unwrap_or(""))
}

/// `head` with its Connection header replaced by `connection: close`.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let is_conn = line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"));
        if !is_conn {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    out.into_bytes()
}

fn forward(upstream_port: u16, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    up.write_all(&closing(head))?;
    up.write_all(body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    // Tell the client not to reuse this connection either.
    Ok(match find(&resp, b"\r\n\r\n") {
        Some(p) => [closing(&resp[..p + 4]), resp[p + 4..].to_vec()].concat(),
        None => resp,
    })
}

/// Keep the client's connection open, answering nothing, until it gives up
/// or the proxy stops.
fn hang(conn: &mut TcpStream, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut b = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut b) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// An EC2-shaped `InternalError` answer.
fn error_500() -> Vec<u8> {
    let body = "<Response><Errors><Error><Code>InternalError</Code>\
<Message>fault proxy: injected 500</Message></Error></Errors>\
<RequestID>fault-proxy-0000</RequestID></Response>";
    format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/xml\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A canned answer: `status` with `body`, typed as XML or JSON.
fn answer(status: u16, body: &str) -> Vec<u8> {
    let content_type = if body.trim_start().starts_with('<') {
        "text/xml"
    } else {
        "application/json"
    };
    format!(
        "HTTP/1.1 {status} Refused\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The injected 500 for `action`: ARM's `{"error": {"code", "message"}}`
/// (the `CloudError` of azure-rest-api-specs) for a path under
/// `/subscriptions/`, else EC2's.
fn error_500_for(action: &str) -> Vec<u8> {
    let Some((_, path)) = action.split_once(' ') else {
        return error_500();
    };
    if !path.starts_with("/subscriptions/") {
        return error_500();
    }
    let body = r#"{"error":{"code":"InternalServerError","message":"fault proxy: injected 500"}}"#;
    format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn handle(
    mut conn: TcpStream,
    upstream_port: u16,
    rules: &Mutex<Vec<Rule>>,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let (head, body) = read_request(&mut conn)?;
    let action = action(&head, &body);
    let fault = {
        let mut rules = rules.lock().unwrap();
        let hit = rules
            .iter_mut()
            .find(|r| r.left > 0 && r.matches(&action))
            .map(|r| {
                r.left -= 1;
                r.fault
            });
        rules.retain(|r| r.left > 0);
        hit
    };
    seen.lock().unwrap().push(Seen {
        action: action.clone(),
        fault,
    });
    let resp = match fault {
        None => forward(upstream_port, &head, &body)?,
        Some(f) => {
            if f.forwards() {
                forward(upstream_port, &head, &body)?;
            }
            match f {
                Fault::Refuse500 | Fault::Lose500 => error_500_for(&action),
                Fault::LoseHang | Fault::Hang => {
                    hang(&mut conn, stop);
                    return Ok(());
                }
                Fault::LoseReset => return Ok(()),
                Fault::Answer { status, body } => answer(status, body),
            }
        }
    };
    conn.write_all(&resp)?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_injected_500_is_well_formed() {
        let r = error_500();
        let p = find(&r, b"\r\n\r\n").unwrap() + 4;
        let len: usize = header(&r[..p], "content-length").unwrap().parse().unwrap();
        assert_eq!(r.len() - p, len);
        assert!(String::from_utf8_lossy(&r[p..]).ends_with("</Response>"));
    }

    #[test]
    fn a_canned_answer_is_well_formed_and_typed_by_its_body() {
        for (body, ty) in [
            ("<Response><Errors/></Response>", "text/xml"),
            (r#"{"error": {"code": 429}}"#, "application/json"),
        ] {
            let r = answer(400, body);
            let p = find(&r, b"\r\n\r\n").unwrap() + 4;
            assert!(r.starts_with(b"HTTP/1.1 400 "));
            assert_eq!(header(&r[..p], "content-type").as_deref(), Some(ty));
            let len: usize = header(&r[..p], "content-length").unwrap().parse().unwrap();
            assert_eq!(&r[p..], body.as_bytes());
            assert_eq!(len, body.len());
        }
        assert!(
            !Fault::Answer {
                status: 400,
                body: ""
            }
            .forwards()
        );
    }

    #[test]
    fn an_injected_500_for_resource_manager_is_its_json_error() {
        let r = error_500_for(
            "PUT /subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v",
        );
        let p = find(&r, b"\r\n\r\n").unwrap() + 4;
        let len: usize = header(&r[..p], "content-length").unwrap().parse().unwrap();
        assert_eq!(r.len() - p, len);
        let v: serde_json::Value = serde_json::from_slice(&r[p..]).unwrap();
        assert_eq!(v["error"]["code"], "InternalServerError");
        assert_eq!(error_500_for("RunInstances"), error_500());
        assert_eq!(error_500_for("POST /servers"), error_500());
    }

    #[test]
    fn prefix_rules_match_actions_that_start_with_them() {
        let rule = Rule {
            action: "PUT /subscriptions/s/".into(),
            prefix: true,
            left: 1,
            fault: Fault::Lose500,
        };
        assert!(rule.matches("PUT /subscriptions/s/resourceGroups/g"));
        assert!(!rule.matches("GET /subscriptions/s/resourceGroups/g"));
        let exact = Rule {
            prefix: false,
            ..rule
        };
        assert!(!exact.matches("PUT /subscriptions/s/resourceGroups/g"));
    }

    #[test]
    fn actions_come_from_the_form_or_the_path() {
        assert_eq!(
            action(
                b"POST / HTTP/1.1\r\n\r\n",
                b"Action=RunInstances&Version=2016-11-15"
            ),
            "RunInstances"
        );
        assert_eq!(
            action(
                b"GET /?Version=1&Action=DescribeInstances HTTP/1.1\r\n\r\n",
                b""
            ),
            "DescribeInstances"
        );
        assert_eq!(
            action(b"POST /servers?x=1 HTTP/1.1\r\n\r\n", b"{}"),
            "POST /servers"
        );
    }
}
