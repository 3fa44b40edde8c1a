//! Reading a boot config: TOML text → spans, `${ENV}` expansion, and errors
//! that point at file, line, column and key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use compute_bridge_contract::keypath::{Seg, render_path};

/// A config error with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<embedded config/local.toml>`).
    pub file: String,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// 1-based column, if known.
    pub column: Option<usize>,
    /// The key path, if known.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": ")?;
        if let Some(k) = &self.key {
            write!(f, "`{k}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The text of a config and where it came from, for locating errors.
pub struct Source {
    /// Display name of the file.
    pub name: String,
    /// Directory relative paths in the config are resolved against.
    pub base_dir: PathBuf,
    /// The TOML text.
    pub text: String,
}

impl Source {
    /// Read a file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Self {
            name: path.display().to_string(),
            base_dir,
            text,
        })
    }

    /// An in-memory config (the embedded default); relative paths resolve
    /// against the current directory.
    pub fn embedded(name: &str, text: &str) -> Self {
        Self {
            name: name.to_string(),
            base_dir: PathBuf::from("."),
            text: text.to_string(),
        }
    }

    /// An error at byte `span` of the text.
    pub fn error_at(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = line_col(&self.text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.name.clone(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    /// An error at the key `path`, located in the text if it is there.
    pub fn error_at_path(&self, path: &[Seg], message: impl Into<String>) -> ConfigError {
        let span = self.span_of(path);
        self.error_at(span, Some(render_path(path)), message)
    }

    /// Byte span of the value at `path` (or of its deepest existing parent).
    pub fn span_of(&self, path: &[Seg]) -> Option<Range<usize>> {
        let doc = DeTable::parse(&self.text).ok()?;
        let mut best = None;
        let mut table: &DeTable<'_> = doc.get_ref();
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for seg in path {
            let next = match (seg, value.map(|v| v.get_ref())) {
                (Seg::Key(k), None) => table.get(k.as_str()),
                (Seg::Key(k), Some(DeValue::Table(t))) => {
                    table = t;
                    t.get(k.as_str())
                }
                (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            match next {
                Some(v) => {
                    best = Some(v.span());
                    value = Some(v);
                }
                None => break,
            }
        }
        best
    }

    /// Turn a `toml` deserialization error into a located one.
    pub fn from_toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let key = span.clone().and_then(|s| self.key_at(s.start));
        self.error_at(span, key, e.message().trim().to_string())
    }

    /// The key path of the innermost value containing byte `offset`.
    fn key_at(&self, offset: usize) -> Option<String> {
        let doc = DeTable::parse(&self.text).ok()?;
        // Spans of `[[array]]` tables cover only their header, so search
        // every child rather than trusting the parent's span.
        fn in_table(t: &DeTable<'_>, offset: usize) -> Option<Vec<Seg>> {
            for (k, v) in t.iter() {
                let here = || vec![Seg::Key(k.get_ref().to_string())];
                if k.span().contains(&offset) {
                    return Some(here());
                }
                if let Some(mut rest) = in_value(v, offset) {
                    let mut p = here();
                    p.append(&mut rest);
                    return Some(p);
                }
            }
            None
        }
        fn in_value(v: &Spanned<DeValue<'_>>, offset: usize) -> Option<Vec<Seg>> {
            match v.get_ref() {
                DeValue::Table(t) => {
                    in_table(t, offset).or_else(|| v.span().contains(&offset).then(Vec::new))
                }
                DeValue::Array(a) => a
                    .iter()
                    .enumerate()
                    .find_map(|(i, item)| {
                        in_value(item, offset).map(|mut rest| {
                            let mut p = vec![Seg::Index(i)];
                            p.append(&mut rest);
                            p
                        })
                    })
                    .or_else(|| v.span().contains(&offset).then(Vec::new)),
                _ => v.span().contains(&offset).then(Vec::new),
            }
        }
        let path = in_table(doc.get_ref(), offset)?;
        (!path.is_empty()).then(|| render_path(&path))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Expand every `${NAME}` in the string values of `value`, with `lookup`
/// giving each variable. `$${` is a literal `${`. A missing variable is an
/// error at its key.
pub fn expand_env(
    source: &Source,
    value: &mut toml::Value,
    path: &mut Vec<Seg>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            *s = expand_one(s, lookup).map_err(|msg| source.error_at_path(path, msg))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                expand_env(source, item, path, lookup)?;
                path.pop();
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                path.push(Seg::Key(k.clone()));
                expand_env(source, v, path, lookup)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_one(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `$${` for a literal)".to_string())?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference"
                ));
            }
            let v = lookup(name).ok_or_else(|| {
                format!(
                    "environment variable `{name}` is not set; export it before starting the bridge \
                     (its value stays out of the config file)"
                )
            })?;
            out.push_str(&v);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_and_escapes() {
        let look = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand_one("a${A}b$${A}c$d", &look).unwrap(), "axb${A}c$d");
        assert!(
            expand_one("${B}", &look)
                .unwrap_err()
                .contains("`B` is not set")
        );
        assert!(expand_one("${A", &look).is_err());
    }

    #[test]
    fn locates_nested_keys() {
        let src = Source::embedded("t.toml", "[a]\nb = 1\n\n[[c]]\nd = [1, \"x\"]\n");
        let e = src.error_at_path(&["c".into(), 0.into(), "d".into(), 1.into()], "bad");
        assert_eq!((e.line, e.column), (Some(5), Some(9)));
        assert_eq!(e.to_string(), "t.toml:5:9: `c[0].d[1]`: bad");
    }
}
