//! The `label_selector` query parameter of Hetzner Cloud's list endpoints,
//! as the API reference's "Label Selector" section defines it, parsed and
//! applied to a resource's labels.
//!
//! Source: <https://docs.hetzner.cloud/#label-selector> (read in the
//! reference's OpenAPI text, `info.description`). Its table:
//!
//! | Expression           | Meaning                                              |
//! | -------------------- | ---------------------------------------------------- |
//! | `k==v` / `k=v`       | Value of key `k` does equal value `v`                |
//! | `k!=v`               | Value of key `k` does not equal value `v`            |
//! | `k`                  | Key `k` is present                                   |
//! | `!k`                 | Key `k` is not present                               |
//! | `k in (v1,v2,v3)`    | Value of key `k` is `v1`, `v2`, or `v3`              |
//! | `k notin (v1,v2,v3)` | Value of key `k` is neither `v1`, nor `v2`, nor `v3` |
//! | `k1==v,!k2`          | Value of key `k1` is `v` and key `k2` is not present |
//!
//! Terms are joined by `,` (and); a `,` inside `( )` separates set values.
//! Keys and values follow the "Labels" section's syntax (a value may be
//! empty). Where the reference is silent this module decides, and says so:
//! - `k!=v` on a resource without `k`: the reference's own example
//!   (`env=production,type!=database` "don't have a `type=database` label")
//!   reads as "not that value", so a missing key matches.
//! - `k notin (...)` without `k`: likewise matches.
//! - Anything else (an empty term, an unbalanced parenthesis, a key the
//!   "Labels" rules refuse, an unknown operator) is a syntax error, which
//!   the fake answers with 400 `invalid_input`; the real API's answer to a
//!   malformed selector is not documented.

use std::collections::BTreeMap;

/// A parsed selector: every term must hold.
#[derive(Debug, Clone)]
pub struct Selector(Vec<Term>);

#[derive(Debug, Clone)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    Has(String),
    HasNot(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A label key as the "Labels" section allows: an optional DNS-subdomain
/// prefix and `/`, then a name of 1 to 63 characters, alphanumeric at both
/// ends, with `-`, `_`, `.` and alphanumerics between.
pub fn valid_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && valid_value(name)
}

/// A label value as the "Labels" section allows: at most 63 characters,
/// empty or alphanumeric at both ends, with `-`, `_`, `.` between.
pub fn valid_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let b = v.as_bytes();
    v.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

impl Selector {
    /// Parse `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for raw in split_terms(text)? {
            terms.push(term(raw.trim())?);
        }
        Ok(Self(terms))
    }

    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|t| match t {
            Term::Eq(k, v) => labels.get(k) == Some(v),
            Term::Ne(k, v) => labels.get(k) != Some(v),
            Term::Has(k) => labels.contains_key(k),
            Term::HasNot(k) => !labels.contains_key(k),
            Term::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Term::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

/// Split on the commas outside parentheses.
fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced parentheses in {text:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {text:?}"));
    }
    out.push(&text[start..]);
    Ok(out)
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if valid_key(k) {
        Ok(k.to_string())
    } else {
        Err(format!("{k:?} is not a valid label key"))
    }
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if valid_value(v) {
        Ok(v.to_string())
    } else {
        Err(format!("{v:?} is not a valid label value"))
    }
}

fn set(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected (v1,v2,...) after in/notin, got {rest:?}"))?;
    inner.split(',').map(value).collect()
}

fn term(t: &str) -> Result<Term, String> {
    if t.is_empty() {
        return Err("an empty term".into());
    }
    if let Some((k, v)) = t.split_once("!=") {
        return Ok(Term::Ne(key(k)?, value(v)?));
    }
    if let Some((k, v)) = t.split_once("==") {
        return Ok(Term::Eq(key(k)?, value(v)?));
    }
    if let Some((k, v)) = t.split_once('=') {
        return Ok(Term::Eq(key(k)?, value(v)?));
    }
    if let Some(k) = t.strip_prefix('!') {
        return Ok(Term::HasNot(key(k)?));
    }
    if let Some((k, rest)) = t.split_once(" notin ") {
        return Ok(Term::NotIn(key(k)?, set(rest)?));
    }
    if let Some((k, rest)) = t.split_once(" in ") {
        return Ok(Term::In(key(k)?, set(rest)?));
    }
    Ok(Term::Has(key(t)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_references_examples_select_what_it_says() {
        let prod = labels(&[("env", "production")]);
        let db = labels(&[("env", "production"), ("type", "database")]);
        let s = Selector::parse("env=production,type!=database").unwrap();
        assert!(s.matches(&prod) && !s.matches(&db));
        let s = Selector::parse("env in (testing,staging)").unwrap();
        assert!(s.matches(&labels(&[("env", "staging")])) && !s.matches(&prod));
        let s = Selector::parse("!type").unwrap();
        assert!(s.matches(&prod) && !s.matches(&db));
        let s = Selector::parse("env==production,!type").unwrap();
        assert!(s.matches(&prod) && !s.matches(&db));
        let s = Selector::parse("env notin (testing)").unwrap();
        assert!(s.matches(&prod) && s.matches(&labels(&[])));
        assert!(Selector::parse("type").unwrap().matches(&db));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in [
            "",
            "env==",
            "a,,b",
            "env in (a,b",
            "env in a,b",
            "-env==x",
            "env==-x",
            "env==a b",
        ] {
            let r = Selector::parse(bad);
            if bad == "env==" {
                // An empty value is a valid label value.
                assert!(r.is_ok(), "{bad}");
            } else {
                assert!(r.is_err(), "{bad:?} parsed");
            }
        }
    }
}
