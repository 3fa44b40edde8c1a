//! Key paths as an operator writes them (`backends[1].http.allowed_hosts[0]`):
//! how a config error names the key it is about, whichever floor found it.
//! Keeps nothing.

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// `a.b`
    Key(String),
    /// `a[3]`
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_string())
    }
}
impl From<String> for Seg {
    fn from(s: String) -> Self {
        Seg::Key(s)
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// Render a key path the way an operator writes it: `backends[1].http.allowed_hosts[0]`.
pub fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parse a key path as [`render_path`] writes it (`a.b[2].c`); `None` if
/// it is not one (spaces, quotes, brackets that do not hold a number).
pub fn parse_path(text: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return None;
        }
        out.push(Seg::Key(key.to_string()));
        while !rest.is_empty() {
            let close = rest.find(']')?;
            out.push(Seg::Index(rest.get(1..close)?.parse().ok()?));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    Some(out)
}

/// A section's value refused by the floor that owns the section: the path
/// (relative to the section) and what is wrong. The daemon locates it in
/// the config file (line, column) and prefixes the section's own path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}`: {message}", render_path(path))]
pub struct Invalid {
    /// Where in the section.
    pub path: Vec<Seg>,
    /// What is wrong, and how to fix it.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_parse_back_from_their_rendering() {
        let path: Vec<Seg> = vec!["a".into(), "b_c".into(), 2.into(), 0.into(), "d-e".into()];
        assert_eq!(render_path(&path), "a.b_c[2][0].d-e");
        assert_eq!(parse_path("a.b_c[2][0].d-e"), Some(path));
        for bad in ["", "a..b", "a[x]", "a[1", "a b", "a[1]b", "\"a\""] {
            assert_eq!(parse_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_refusal_names_its_path_within_the_section() {
        let e = Invalid {
            path: vec!["allowed_hosts".into(), 1.into()],
            message: "not an origin".into(),
        };
        assert_eq!(e.to_string(), "`allowed_hosts[1]`: not an origin");
    }
}
