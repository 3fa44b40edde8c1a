//! A small scripted HTTP/1.1 server on 127.0.0.1 for the http capability's
//! tests: plain answers, redirects, huge bodies and bodies that never end.
//!
//! Routes:
//! - `/ok` → 200 `hello`
//! - `/redirect?to=<url>` → 302 to `<url>`
//! - `/big?mib=<n>` → 200 with an `n` MiB body (streamed)
//! - `/big-unsized?mib=<n>` → the same without Content-Length (chunked)
//! - `/trickle` → 200 that sends one byte per second forever
//! - `/hold` → held (no answer at all) until [`HttpServer::release`], then
//!   200 `released`; [`HttpServer::held`] counts the requests held now
//! - `/headers` → 200 with the request's header lines as it got them
//! - anything else → 404

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A running server; stops accepting on drop.
pub struct HttpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Requests seen.
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    hold: Arc<Hold>,
}

/// Requests to `/hold` wait on this until released.
#[derive(Default)]
struct Hold {
    released: AtomicBool,
    held: AtomicU64,
}

impl HttpServer {
    /// Start one on a free port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let hold = Arc::new(Hold::default());
        let (s, r, h) = (stop.clone(), requests.clone(), hold.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, r, h) = (s.clone(), r.clone(), h.clone());
                std::thread::spawn(move || serve(conn, &s, &r, &h));
            }
        });
        Self {
            port,
            requests,
            stop,
            hold,
        }
    }

    /// Requests to `/hold` being held now.
    pub fn held(&self) -> u64 {
        self.hold.held.load(Ordering::SeqCst)
    }

    /// Answer every request to `/hold`, now and from now on.
    pub fn release(&self) {
        self.hold.released.store(true, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:<port>`
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.release();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn query(path: &str, key: &str) -> Option<String> {
    let q = path.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

fn serve(conn: TcpStream, stop: &AtomicBool, requests: &AtomicU64, hold: &Hold) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut header_lines = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        header_lines.push_str(h.trim_end_matches(['\r', '\n']));
        header_lines.push('\n');
    }
    requests.fetch_add(1, Ordering::Relaxed);
    let route = path.split('?').next().unwrap_or("");
    let _ = match route {
        "/ok" => conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"),
        "/redirect" => {
            let to = query(&path, "to").unwrap_or_default();
            conn.write_all(
                format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
        }
        "/big" | "/big-unsized" => {
            let mib: u64 = query(&path, "mib")
                .and_then(|m| m.parse().ok())
                .unwrap_or(100);
            let sized = route == "/big";
            let head = if sized {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    mib << 20
                )
            } else {
                "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_string()
            };
            let chunk = vec![b'x'; 1 << 20];
            conn.write_all(head.as_bytes()).and_then(|_| {
                for _ in 0..mib {
                    conn.write_all(&chunk)?;
                }
                Ok(())
            })
        }
        "/hold" => {
            hold.held.fetch_add(1, Ordering::SeqCst);
            while !hold.released.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            hold.held.fetch_sub(1, Ordering::SeqCst);
            conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nreleased",
            )
        }
        "/headers" => conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{header_lines}",
                header_lines.len()
            )
            .as_bytes(),
        ),
        "/trickle" => conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\nconnection: close\r\n\r\n")
            .and_then(|_| {
                while !stop.load(Ordering::Relaxed) {
                    conn.write_all(b".")?;
                    conn.flush()?;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Ok(())
            }),
        _ => conn
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
    };
}
