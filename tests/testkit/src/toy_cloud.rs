//! The "toy cloud": a tiny REST API on 127.0.0.1 that the component template
//! (templates/backend) speaks, so the template and the conformance runner
//! are tested against a real server. Its contract is in the template's
//! README.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A running toy cloud; stops accepting on drop.
pub struct ToyCloud {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The bearer token it accepts.
    pub token: String,
    /// Servers by id.
    pub servers: Arc<Mutex<BTreeMap<String, Value>>>,
    /// CPU it can host, millicores.
    pub capacity_millicores: u64,
    stop: Arc<AtomicBool>,
}

impl ToyCloud {
    /// Start one that accepts `token` and hosts `capacity_millicores`.
    pub fn start(token: &str, capacity_millicores: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let servers = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, tok) = (servers.clone(), stop.clone(), token.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, tok) = (s.clone(), tok.clone());
                std::thread::spawn(move || serve(conn, &s, &tok, capacity_millicores));
            }
        });
        Self {
            port,
            token: token.to_string(),
            servers,
            capacity_millicores,
            stop,
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ToyCloud {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn respond(conn: &mut TcpStream, status: u16, body: Option<Value>) {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    );
}

fn serve(
    mut conn: TcpStream,
    servers: &Mutex<BTreeMap<String, Value>>,
    token: &str,
    capacity: u64,
) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut length, mut auth) = (0usize, String::new());
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse().unwrap_or(0),
            "authorization" => auth = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    if auth != format!("Bearer {token}") {
        return respond(&mut conn, 401, Some(json!({"error": "unauthorized"})));
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut servers = servers.lock().unwrap();
    match (method.as_str(), path) {
        ("POST", "/v1/servers") => {
            let Ok(req) = serde_json::from_slice::<Value>(&body) else {
                return respond(&mut conn, 400, Some(json!({"error": "body is not JSON"})));
            };
            let cpu = req["cpu_millicores"].as_u64().unwrap_or(0);
            let ram = req["ram_mib"].as_u64().unwrap_or(0);
            if cpu == 0 || ram == 0 || req["ssh_public_key"].as_str().is_none_or(str::is_empty) {
                return respond(
                    &mut conn,
                    400,
                    Some(
                        json!({"error": "cpu_millicores, ram_mib and ssh_public_key are required"}),
                    ),
                );
            }
            let used: u64 = servers
                .values()
                .map(|s| s["cpu_millicores"].as_u64().unwrap_or(0))
                .sum();
            if used + cpu > capacity {
                return respond(&mut conn, 409, Some(json!({"error": "capacity"})));
            }
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let id = format!("srv-{}", NEXT.fetch_add(1, Ordering::Relaxed));
            let server = json!({
                "id": id, "region": req["region"], "ipv4": "127.0.0.1", "ssh_port": 22,
                "status": "running", "exit_code": 0, "created_at": now(),
                "cpu_millicores": cpu, "ram_mib": ram, "labels": req["labels"],
            });
            servers.insert(id, server.clone());
            respond(&mut conn, 201, Some(server));
        }
        ("GET", "/v1/servers") => {
            let want = query.strip_prefix("label=provider:").unwrap_or("");
            let list: Vec<Value> = servers
                .values()
                .filter(|s| s["labels"]["provider"].as_str() == Some(want))
                .cloned()
                .collect();
            respond(&mut conn, 200, Some(json!({"servers": list})));
        }
        ("GET", p) if p.starts_with("/v1/servers/") => {
            match servers.get(&p["/v1/servers/".len()..]) {
                Some(s) => respond(&mut conn, 200, Some(s.clone())),
                None => respond(&mut conn, 404, Some(json!({"error": "not found"}))),
            }
        }
        ("DELETE", p) if p.starts_with("/v1/servers/") => {
            match servers.remove(&p["/v1/servers/".len()..]) {
                Some(_) => respond(&mut conn, 204, None),
                None => respond(&mut conn, 404, Some(json!({"error": "not found"}))),
            }
        }
        _ => respond(&mut conn, 404, Some(json!({"error": "no such route"}))),
    }
}
