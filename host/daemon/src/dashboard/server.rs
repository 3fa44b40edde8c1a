//! The dashboard's HTTP server: 127.0.0.1 only, loopback Host names only,
//! no scripts.
//!
//! - It listens on `127.0.0.1:<port>` and refuses any other address (the
//!   config refuses them too; this is the last line).
//! - Every request whose `Host` (and absolute-form authority) is not
//!   `localhost`, `127.0.0.1` or `[::1]` with the listening port gets 403:
//!   a DNS-rebinding page in the operator's browser cannot read it.
//! - Every response, 403 and 404 included, carries a Content-Security-Policy
//!   that forbids scripts, and `nosniff`, `no-store`, `DENY` framing.
//!
//! Beside the server a ticker samples the fleet's capacity (for idle %) and
//! saves the lifetime counters; both stop, and the counters are saved, on
//! [`DashboardServer::stop`].
//!
//! Server and ticker run on a thread of their own (a current-thread tokio
//! runtime), not on the bridge's workers: when thousands of grants keep the
//! workers busy, a dashboard request would otherwise queue behind them; on
//! its own thread it gets the OS scheduler's fair share instead.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use super::{Dashboard, html, metrics};

/// How often the ticker samples capacity and saves the counters.
pub const TICK: Duration = Duration::from_secs(5);

/// How long [`DashboardServer::stop`] waits for open connections.
const DRAIN: Duration = Duration::from_secs(5);

/// Why the dashboard could not listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address is not 127.0.0.1.
    #[error(
        "the dashboard binds to 127.0.0.1 only, not {bind:?}; reach it from your \
         workstation with `ssh -L {port}:localhost:{port} <host>`"
    )]
    NotLoopback {
        /// The refused address.
        bind: String,
        /// The port asked for.
        port: u16,
    },
    /// Listening failed (the port is taken, say).
    #[error(
        "cannot listen on {addr}: {source} (is another bridge running? \
         pick another [dashboard] port or `run --dashboard-port`)"
    )]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// `127.0.0.1:<port>` if `bind` is exactly 127.0.0.1.
pub fn loopback_addr(bind: &str, port: u16) -> Result<SocketAddr, BindError> {
    match bind.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip == Ipv4Addr::LOCALHOST => Ok(SocketAddr::new(ip.into(), port)),
        _ => Err(BindError::NotLoopback {
            bind: bind.to_string(),
            port,
        }),
    }
}

/// Whether `host` (a `Host` header or URI authority) names this server
/// through loopback: `localhost`, `127.0.0.1` or `[::1]`, with `port`
/// (which a browser omits only for port 80).
pub fn host_allowed(host: &str, port: u16) -> bool {
    for name in ["localhost", "127.0.0.1", "[::1]"] {
        let Some(head) = host.get(..name.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(name) {
            continue;
        }
        let rest = &host[name.len()..];
        if rest.is_empty() {
            return port == 80;
        }
        return rest.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse() == Ok(port)
        });
    }
    false
}

/// The routes, behind the Host check and the security headers. `port` is
/// the port the server listens on (the Host header must carry it).
pub fn router(dashboard: Dashboard, port: u16) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(page))
        .route("/snapshot.json", get(snapshot_json))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(dashboard)
        .layer(from_fn_with_state(port, guard))
}

async fn page(State(d): State<Dashboard>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html::render(&d.snapshot()),
    )
        .into_response()
}

async fn snapshot_json(State(d): State<Dashboard>) -> Response {
    let body = serde_json::to_vec(&d.snapshot()).expect("the snapshot serializes");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics_text(State(d): State<Dashboard>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&d.snapshot()),
    )
        .into_response()
}

async fn guard(State(port): State<u16>, req: Request, next: Next) -> Response {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_ok = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.to_str().is_ok_and(|h| host_allowed(h, port)),
        _ => false,
    };
    let authority_ok = req
        .uri()
        .authority()
        .is_none_or(|a| host_allowed(a.as_str(), port));
    let mut resp = if host_ok && authority_ok {
        next.run(req).await
    } else {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "403: the dashboard answers only to http://localhost:{port}/ \
                 (or 127.0.0.1 / [::1]); forward the same port: \
                 ssh -L {port}:localhost:{port} <host>\n"
            ),
        )
            .into_response()
    };
    secure(resp.headers_mut());
    resp
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(html::content_security_policy()),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// A running dashboard server and its ticker, on their own thread.
pub struct DashboardServer {
    addr: SocketAddr,
    dashboard: Dashboard,
    /// Stop taking connections and let open ones finish.
    stop: oneshot::Sender<()>,
    /// Close open connections now.
    abort: oneshot::Sender<()>,
    /// The server's outcome, once its thread is done.
    done: oneshot::Receiver<std::io::Result<()>>,
}

impl DashboardServer {
    /// Listen on `bind:port` (which must be 127.0.0.1; port 0 picks one)
    /// and serve `dashboard` from a thread of its own.
    pub async fn start(dashboard: Dashboard, bind: &str, port: u16) -> Result<Self, BindError> {
        let addr = loopback_addr(bind, port)?;
        let listen_err = |source| BindError::Listen { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        let addr = listener.local_addr().map_err(listen_err)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(listen_err)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (abort, aborted) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel();
        let app = router(dashboard.clone(), addr.port());
        let d = dashboard.clone();
        std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || {
                let outcome = rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let ticker = tokio::spawn(tick(d));
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    });
                    let outcome = tokio::select! {
                        r = serve => r,
                        // Dropping the server closes what is still open.
                        Ok(()) = aborted => Ok(()),
                    };
                    ticker.abort();
                    outcome
                });
                let _ = finished.send(outcome);
            })
            .map_err(listen_err)?;
        Ok(Self {
            addr,
            dashboard,
            stop,
            abort,
            done,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://localhost:{}/dashboard", self.addr.port())
    }

    /// Stop serving (open connections get a few seconds to finish), stop the
    /// ticker and save the lifetime counters.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let mut done = self.done;
        let outcome = match tokio::time::timeout(DRAIN, &mut done).await {
            Ok(o) => o,
            Err(_) => {
                tracing::warn!("dashboard connections still open after {DRAIN:?}; closing them");
                let _ = self.abort.send(());
                done.await
            }
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("dashboard server ended with an error: {e}"),
            Err(_) => tracing::warn!("the dashboard's thread ended without an outcome"),
        }
        let d = self.dashboard;
        match tokio::task::spawn_blocking(move || d.persist()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("saving the dashboard's lifetime counters: {e}"),
            Err(e) => tracing::error!("saving the dashboard's lifetime counters: {e}"),
        }
    }
}

async fn tick(d: Dashboard) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        d.sample_capacity();
        let d = d.clone();
        match tokio::task::spawn_blocking(move || d.persist()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("saving the dashboard's lifetime counters: {e}"),
            Err(e) => tracing::warn!("saving the dashboard's lifetime counters: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_with_our_port_are_served() {
        for ok in [
            "localhost:8080",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
        ] {
            assert!(host_allowed(ok, 8080), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost",
            "localhost:8081",
            "localhost:80800",
            "localhost:+8080",
            "localhost.:8080",
            "localhost.evil.example:8080",
            "127.0.0.1.nip.io:8080",
            "127.0.0.2:8080",
            "0.0.0.0:8080",
            "[::1]",
            "[::ffff:127.0.0.1]:8080",
            "",
        ] {
            assert!(!host_allowed(bad, 8080), "{bad}");
        }
        // Port 80 is the one port a browser leaves out.
        assert!(host_allowed("localhost", 80));
        assert!(host_allowed("localhost:80", 80));
    }

    #[test]
    fn only_127_0_0_1_may_be_bound() {
        assert_eq!(
            loopback_addr("127.0.0.1", 8080).unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        for bad in [
            "0.0.0.0",
            "::",
            "::1",
            "localhost",
            "10.0.0.5",
            "127.0.0.2",
            "",
        ] {
            let e = loopback_addr(bad, 8080).unwrap_err();
            assert!(e.to_string().contains("127.0.0.1 only"), "{e}");
            assert!(e.to_string().contains("ssh -L 8080:localhost:8080"), "{e}");
        }
    }
}
