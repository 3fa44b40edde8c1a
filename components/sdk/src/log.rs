//! Structured logging into the operator's log, tagged by the host with the
//! backend's name. Never log secrets or anything about the requester.
//!
//! Records go out through the standard `wasi:logging/logging` import. That
//! interface has no fields, so [`with_fields`] folds them into the message
//! as ` key=value` after it, in order (a value that is empty or holds a
//! space, a quote, a `=` or a control character is written quoted, with
//! Rust's escapes, so each field stays one token). The `context` of every
//! record written here is [`CONTEXT`]; the host shows it as the record's
//! context.

use crate::bindings::wasi::logging::logging as raw;

/// The `context` of the records this module writes: they are the backend's
/// own.
pub const CONTEXT: &str = "backend";

/// Severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Finest detail.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the backend got past.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    fn wasi(self) -> raw::Level {
        match self {
            Self::Trace => raw::Level::Trace,
            Self::Debug => raw::Level::Debug,
            Self::Info => raw::Level::Info,
            Self::Warn => raw::Level::Warn,
            Self::Error => raw::Level::Error,
        }
    }
}

/// Emit a record with key/value fields.
pub fn with_fields(level: Level, message: &str, fields: &[(&str, &str)]) {
    raw::log(level.wasi(), CONTEXT, &fold(message, fields));
}

/// `message` with ` key=value` per field (see the module docs).
pub fn fold(message: &str, fields: &[(&str, &str)]) -> String {
    let mut out = message.to_string();
    for (key, value) in fields {
        out.push(' ');
        out.push_str(&token(key));
        out.push('=');
        out.push_str(&token(value));
    }
    out
}

/// `s` as one token: as it is, or quoted with Rust's escapes.
fn token(s: &str) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

/// Debug-level record.
pub fn debug(message: &str) {
    with_fields(Level::Debug, message, &[]);
}
/// Info-level record.
pub fn info(message: &str) {
    with_fields(Level::Info, message, &[]);
}
/// Warn-level record.
pub fn warn(message: &str) {
    with_fields(Level::Warn, message, &[]);
}
/// Error-level record.
pub fn error(message: &str) {
    with_fields(Level::Error, message, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_fold_into_the_message_one_token_each() {
        assert_eq!(fold("started", &[]), "started");
        assert_eq!(
            fold(
                "instance gone",
                &[("instance", "i-1"), ("region", "eu-west-1")]
            ),
            "instance gone instance=i-1 region=eu-west-1"
        );
        assert_eq!(
            fold(
                "x",
                &[("why", "a b"), ("empty", ""), ("k=v", "line\nforged")]
            ),
            r#"x why="a b" empty="" "k=v"="line\nforged""#
        );
    }
}
