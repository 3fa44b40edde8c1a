//! The `log` capability: a component's log records go into the host's
//! tracing output, tagged with the backend's name and capped in size.

use std::sync::Arc;

use crate::bindings::log as wit;

/// Longest message or field list kept, bytes; the rest is cut.
const MAX_LEN: usize = 4096;

/// Per-call view handed to the generated `Host` trait.
pub struct LogHost(pub Arc<str>);

fn cut(s: &str) -> &str {
    if s.len() <= MAX_LEN {
        return s;
    }
    let mut end = MAX_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl wit::Host for LogHost {
    fn log(
        &mut self,
        level: wit::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let backend = &*self.0;
        let fields: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (message, fields) = (cut(&message), cut(&fields));
        match level {
            wit::Level::Trace => tracing::trace!(target: "component", backend, fields, "{message}"),
            wit::Level::Debug => tracing::debug!(target: "component", backend, fields, "{message}"),
            wit::Level::Info => tracing::info!(target: "component", backend, fields, "{message}"),
            wit::Level::Warn => tracing::warn!(target: "component", backend, fields, "{message}"),
            wit::Level::Error => tracing::error!(target: "component", backend, fields, "{message}"),
        }
        Ok(())
    }
}
