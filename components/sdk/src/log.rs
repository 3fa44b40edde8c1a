//! Structured logging into the operator's log, tagged by the host with the
//! backend's name. Never log secrets or anything about the requester.

pub use crate::bindings::compute_bridge::backend::log::Level;
use crate::bindings::compute_bridge::backend::log::log as raw;

/// Emit a record with key/value fields.
pub fn with_fields(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    raw(level, message, &fields);
}

/// Debug-level record.
pub fn debug(message: &str) {
    raw(Level::Debug, message, &[]);
}
/// Info-level record.
pub fn info(message: &str) {
    raw(Level::Info, message, &[]);
}
/// Warn-level record.
pub fn warn(message: &str) {
    raw(Level::Warn, message, &[]);
}
/// Error-level record.
pub fn error(message: &str) {
    raw(Level::Error, message, &[]);
}
