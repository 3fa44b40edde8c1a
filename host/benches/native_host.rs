//! A native [`Host`] for a cloud backend's core, doing what the sandbox's
//! capabilities do for the same core compiled to wasm, so that a core run
//! natively over it and the shipped component run in the sandbox do the
//! same work and differ only by the sandbox:
//!
//! - `send`: one pooled `reqwest::Client` on the caller's tokio runtime, as
//!   the `http` capability (`host/sandbox/src/capabilities/http`) sends;
//!   none of that capability's policy checks (the allow-list, the address
//!   checks) are done here, since they are part of the sandbox's price;
//! - `log`: a `component`-target event with the backend's name, as the
//!   `log` capability emits, so production logging costs both sides alike;
//! - `cache_get`/`cache_set`: a map with a time-to-live on the system clock,
//!   as the `cache` capability keeps (its size limits are not modelled);
//! - no SSH hosts; the system clock; `sleep` really waits.
//!
//! A core is called on a worker of a multi-threaded runtime inside
//! `tokio::task::block_in_place`, and `send` blocks on the request there.
//! Keeps nothing but the cache, for the life of a bench.

use std::collections::HashMap;
use std::sync::Mutex;

use cb_fake::sdk::Host;
use cb_fake::sdk::http::{HttpError, Method, Request, Response};
use cb_fake::sdk::log::Level;
use cb_fake::sdk::ssh::{ExecOutput, SshError};

pub struct NativeHost {
    backend: String,
    client: reqwest::Client,
    cache: Mutex<HashMap<String, (Vec<u8>, u64)>>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl NativeHost {
    /// A host for the backend named `backend`.
    pub fn new(backend: &str) -> Self {
        Self {
            backend: backend.into(),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            cache: Mutex::default(),
        }
    }

    /// Empty the cache (as the sandboxed side's `granted().cache.clear()`).
    pub fn clear_cache(&self) {
        self.cache.lock().unwrap().clear();
    }
}

impl Host for NativeHost {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let (method, url, headers, body) = req.parts();
        let method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut r = self.client.request(method, url).body(body.to_vec());
        for (k, v) in headers {
            r = r.header(k, v);
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                HttpError::Timeout
            } else {
                HttpError::Transport(e.to_string())
            }
        };
        tokio::runtime::Handle::current().block_on(async {
            let resp = r.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = resp.bytes().await.map_err(transport)?.to_vec();
            Ok(Response {
                status,
                headers,
                body,
            })
        })
    }

    fn ssh_hosts(&self) -> Vec<String> {
        Vec::new()
    }

    fn ssh_exec(&self, host: &str, _command: &str, _stdin: &[u8]) -> Result<ExecOutput, SshError> {
        Err(SshError::UnknownHost(host.to_string()))
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let backend = self.backend.as_str();
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            Level::Trace => tracing::trace!(target: "component", backend, fields, "{message}"),
            Level::Debug => tracing::debug!(target: "component", backend, fields, "{message}"),
            Level::Info => tracing::info!(target: "component", backend, fields, "{message}"),
            Level::Warn => tracing::warn!(target: "component", backend, fields, "{message}"),
            Level::Error => tracing::error!(target: "component", backend, fields, "{message}"),
        }
    }

    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        let mut cache = self.cache.lock().unwrap();
        match cache.get(key) {
            Some((v, expires)) if *expires > now() => Some(v.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn cache_set(&self, key: &str, value: &[u8], ttl_seconds: u32) {
        let mut cache = self.cache.lock().unwrap();
        if ttl_seconds == 0 {
            cache.remove(key);
        } else {
            cache.insert(key.into(), (value.to_vec(), now() + u64::from(ttl_seconds)));
        }
    }

    fn now(&self) -> u64 {
        now()
    }

    fn sleep(&self, secs: u64) {
        std::thread::sleep(std::time::Duration::from_secs(secs))
    }
}
