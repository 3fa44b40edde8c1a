//! The `filter` parameter of Compute Engine's list methods, as the
//! reference defines it, parsed and applied to resources as JSON.
//!
//! Source: the `filter` field of `ListInstancesRequest` (the same text is on
//! `AggregatedListInstancesRequest` and every other list request) in
//! `google/cloud/compute/v1/compute.proto` (googleapis/googleapis), also
//! <https://cloud.google.com/compute/docs/reference/rest/v1/instances/list>.
//! What it says, and what this module does with it:
//!
//! - Two kinds of expression, which "cannot be mixed in one request":
//!   AIP-160 comparisons (`field OP value`, OP one of `=`, `!=`, `>`, `<`,
//!   `<=`, `>=`, `:`; the value a string, a number or a boolean) and
//!   regular-expression matches (`field eq literal`, `field ne literal`; the
//!   literal, bare, single- or double-quoted, is RE2 syntax and "must match
//!   the entire field"). Mixing them is refused.
//! - `:*` tests whether a key is defined (`labels.owner:*`).
//! - Nested fields by dots (`scheduling.automaticRestart = false`,
//!   `labels.KEY = "value"`).
//! - "To filter on multiple expressions, provide each separate expression
//!   within parentheses"; "by default, each expression is an AND
//!   expression", and `AND` and `OR` may be written. So one bare expression
//!   is accepted, and several must each be parenthesised: `a = "x" AND b =
//!   "y"` is refused as Compute Engine refuses it (400, "Invalid list filter
//!   expression", the message the outside review quotes).
//!
//! Where the reference is silent or ambiguous, this module decides, and
//! says so:
//! - Precedence of `AND` and `OR` between parenthesised expressions: not
//!   stated. AIP-160 (<https://google.aip.dev/160>) binds `OR` tighter than
//!   `AND`; this module does the same.
//! - "You cannot combine constraints on multiple fields using regular
//!   expressions" contradicts the reference's own example
//!   `(fieldname1 eq literal) (fieldname2 ne "literal")`; the example is
//!   accepted.
//! - `NOT`, `-` and functions (AIP-160) are not mentioned by the reference:
//!   refused as not modelled.
//! - A field the resource does not have compares as absent (`=` false,
//!   `!=` true); whether the real API refuses an unknown field name is not
//!   stated.
//! - String `=` compares exactly; AIP-160's `*` wildcards inside a value
//!   are not modelled (a value with `*` other than `:*` is refused).

use regex::Regex;
use serde_json::Value;

/// A parsed filter: a conjunction of disjunctions of terms.
#[derive(Debug, Clone)]
pub struct Filter {
    all: Vec<Vec<Term>>,
}

#[derive(Debug, Clone)]
enum Term {
    Compare {
        field: String,
        op: Op,
        value: Lit,
    },
    Has {
        field: String,
    },
    Regex {
        field: String,
        re: Regex,
        negate: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Le,
    Ge,
    Colon,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bare(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Aip,
    Regex,
}

impl Filter {
    /// Parse `text`; `Err` with the reason when Compute Engine would refuse
    /// it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self { all: Vec::new() });
        }
        let mut kinds = Vec::new();
        let filter = if text.starts_with('(') {
            parse_groups(text, &mut kinds)?
        } else {
            // One bare expression: the whole text must be exactly one.
            let term = parse_expr(text, &mut kinds)?;
            Self {
                all: vec![vec![term]],
            }
        };
        if kinds.contains(&Kind::Aip) && kinds.contains(&Kind::Regex) {
            return Err("AIP-160 and regular expressions cannot be mixed in one request".into());
        }
        Ok(filter)
    }

    /// Whether `resource` (a resource as the API returns it) matches.
    pub fn matches(&self, resource: &Value) -> bool {
        self.all
            .iter()
            .all(|any| any.iter().any(|t| t.matches(resource)))
    }
}

/// `(expr) [AND|OR] (expr) ...`: each expression in its own parentheses.
fn parse_groups(text: &str, kinds: &mut Vec<Kind>) -> Result<Filter, String> {
    let mut all: Vec<Vec<Term>> = Vec::new();
    let mut rest = text;
    let mut joiner_or = false;
    let mut first = true;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if !first {
            if let Some(r) = strip_keyword(rest, "AND") {
                rest = r;
                joiner_or = false;
            } else if let Some(r) = strip_keyword(rest, "OR") {
                rest = r;
                joiner_or = true;
            } else {
                joiner_or = false;
            }
            rest = rest.trim_start();
        }
        let inner;
        (inner, rest) = take_group(rest)?;
        let term = parse_expr(inner, kinds)?;
        match all.last_mut() {
            Some(any) if joiner_or => any.push(term),
            _ => all.push(vec![term]),
        }
        joiner_or = false;
        first = false;
    }
    if all.is_empty() {
        return Err("an empty filter group".into());
    }
    Ok(Filter { all })
}

fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let r = s.strip_prefix(kw)?;
    (r.starts_with(char::is_whitespace) || r.starts_with('(')).then_some(r)
}

/// `( ... )` at the start of `s` (quotes respected): its inside, and what
/// follows.
fn take_group(s: &str) -> Result<(&str, &str), String> {
    if !s.starts_with('(') {
        return Err(format!(
            "expected '(' at {s:?}: each expression goes in parentheses"
        ));
    }
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' => return Err("nested parentheses are not modelled".into()),
                ')' => return Ok((&s[1..i], &s[i + 1..])),
                _ => {}
            },
        }
    }
    Err("unbalanced parentheses".into())
}

/// One expression: `field OP value` or `field eq|ne literal`.
fn parse_expr(text: &str, kinds: &mut Vec<Kind>) -> Result<Term, String> {
    let text = text.trim();
    let field_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .unwrap_or(text.len());
    let field = &text[..field_end];
    if field.is_empty()
        || field.starts_with('.')
        || field.ends_with('.')
        || field.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!("{text:?} does not start with a field name"));
    }
    if ["NOT", "AND", "OR"].contains(&field) {
        return Err(format!("{field} here is not modelled"));
    }
    let rest = text[field_end..].trim_start();
    // The regular-expression form.
    for (kw, negate) in [("eq", false), ("ne", true)] {
        if let Some(lit) = rest.strip_prefix(kw)
            && lit.starts_with(char::is_whitespace)
        {
            let lit = lit.trim();
            let pattern = match unquote(lit)? {
                Some((p, tail)) if tail.trim().is_empty() => p,
                Some(_) => return Err(format!("text after the quoted literal in {text:?}")),
                None if lit.is_empty() => return Err(format!("no literal in {text:?}")),
                None => lit.to_string(),
            };
            let re = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("{pattern:?} is not a regular expression: {e}"))?;
            kinds.push(Kind::Regex);
            return Ok(Term::Regex {
                field: field.to_string(),
                re,
                negate,
            });
        }
    }
    let (op, after) = [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        (":", Op::Colon),
    ]
    .into_iter()
    .find_map(|(t, op)| rest.strip_prefix(t).map(|a| (op, a)))
    .ok_or_else(|| format!("no comparison operator in {text:?}"))?;
    let after = after.trim();
    kinds.push(Kind::Aip);
    if op == Op::Colon && after == "*" {
        return Ok(Term::Has {
            field: field.to_string(),
        });
    }
    let value = match unquote(after)? {
        Some((v, tail)) => {
            if !tail.trim().is_empty() {
                // `labels.a = "x" AND labels.b = "y"` ends up here.
                return Err(format!(
                    "{:?} follows the value in {text:?}; several expressions each go in \
                     parentheses",
                    tail.trim()
                ));
            }
            Lit::Str(v)
        }
        None => {
            if after.is_empty() || after.contains(char::is_whitespace) {
                return Err(format!(
                    "the value of {text:?} is not one string, number or boolean; several \
                     expressions each go in parentheses"
                ));
            }
            Lit::Bare(after.to_string())
        }
    };
    let raw = match &value {
        Lit::Str(v) | Lit::Bare(v) => v,
    };
    if raw.contains('*') {
        return Err("wildcards in values are not modelled".into());
    }
    Ok(Term::Compare {
        field: field.to_string(),
        op,
        value,
    })
}

/// A quoted literal at the start of `s`: its text and what follows;
/// `None` when `s` does not start with a quote.
fn unquote(s: &str) -> Result<Option<(String, &str)>, String> {
    let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Ok(None);
    };
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == q {
            return Ok(Some((out, &s[i + 1..])));
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated quote in {s:?}"))
}

impl Term {
    fn matches(&self, resource: &Value) -> bool {
        match self {
            Term::Has { field } => lookup(resource, field).is_some(),
            Term::Regex { field, re, negate } => {
                let hit = lookup(resource, field)
                    .and_then(scalar)
                    .is_some_and(|v| re.is_match(&v));
                hit != *negate
            }
            Term::Compare { field, op, value } => {
                let Some(actual) = lookup(resource, field).and_then(scalar) else {
                    return *op == Op::Ne;
                };
                let want = match value {
                    Lit::Str(v) | Lit::Bare(v) => v.as_str(),
                };
                let ord = match (actual.parse::<f64>(), want.parse::<f64>()) {
                    (Ok(a), Ok(b)) => a.partial_cmp(&b),
                    _ => Some(actual.as_str().cmp(want)),
                };
                match op {
                    Op::Eq | Op::Colon => actual == want,
                    Op::Ne => actual != want,
                    Op::Gt => ord == Some(std::cmp::Ordering::Greater),
                    Op::Lt => ord == Some(std::cmp::Ordering::Less),
                    Op::Ge => ord.is_some_and(|o| o != std::cmp::Ordering::Less),
                    Op::Le => ord.is_some_and(|o| o != std::cmp::Ordering::Greater),
                }
            }
        }
    }
}

fn lookup<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    field
        .split('.')
        .try_fold(v, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inst() -> Value {
        json!({"name": "cb-one", "status": "RUNNING", "cpuPlatform": "Intel Sapphire Rapids",
               "labels": {"cb_provider": "p1", "cb_backend": "gcp"},
               "scheduling": {"automaticRestart": false}})
    }

    fn hit(f: &str) -> bool {
        Filter::parse(f)
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .matches(&inst())
    }

    #[test]
    fn the_documented_forms_parse_and_match() {
        assert!(hit(r#"labels.cb_provider = "p1""#));
        assert!(hit(
            r#"(labels.cb_provider = "p1") AND (labels.cb_backend = "gcp")"#
        ));
        assert!(hit(
            r#"(labels.cb_provider = "p1") (labels.cb_backend = "gcp")"#
        ));
        assert!(!hit(
            r#"(labels.cb_provider = "p1") AND (labels.cb_backend = "aws")"#
        ));
        assert!(hit(
            r#"(labels.cb_backend = "aws") OR (labels.cb_backend = "gcp")"#
        ));
        assert!(hit("labels.cb_provider:*"));
        assert!(!hit("labels.owner:*"));
        assert!(hit("scheduling.automaticRestart = false"));
        assert!(hit("name != example-instance"));
        assert!(hit(r#"(cpuPlatform = "Intel Sapphire Rapids")"#));
        assert!(hit("name eq cb-.*"));
        assert!(!hit("name eq cb"), "a regex matches the whole field");
        assert!(hit("name ne .*instance"));
        assert!(hit(r#"(name eq 'cb-one') (status ne "STOPPED")"#));
        // OR binds tighter than AND (AIP-160).
        assert!(hit(
            r#"(status = "STOPPED") OR (status = "RUNNING") AND (labels.cb_backend = "gcp")"#
        ));
        assert!(Filter::parse("").unwrap().matches(&inst()));
    }

    #[test]
    fn what_the_reference_refuses_is_refused() {
        for bad in [
            r#"labels.cb_provider = "p1" AND labels.cb_backend = "gcp""#,
            r#"labels.cb_provider = "p1" labels.cb_backend = "gcp""#,
            r#"(labels.cb_provider = "p1") AND labels.cb_backend = "gcp""#,
            r#"(name eq cb-.*) (status = "RUNNING")"#,
            r#"(labels.cb_provider = "p1""#,
            "= x",
            "name",
            "NOT name = x",
            "name = a b",
            "name = a*",
            "name eq (",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
