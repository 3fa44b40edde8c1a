//! `cb_aws::sigv4` against AWS's published SigV4 test suite (header
//! signing): for every vector, the signature must match AWS's byte for
//! byte, and the `Authorization` header must name the signed headers of
//! AWS's canonical request and the scope of its string to sign. (The
//! canonical request and the string to sign themselves stay inside
//! `aws-sigv4`, which signs; a signature that matches is one over the same
//! canonical request.) See `sigv4-suite/README.md` for where the vectors
//! come from.

use std::path::{Path, PathBuf};

use cb_aws::sigv4::{self, Credentials, Options};

struct Vector {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    creds: Credentials,
    region: String,
    service: String,
    time: u64,
    opts: Options,
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigv4-suite")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

/// `request.txt`: a request line, headers (continuation lines start with
/// whitespace), a blank line, the body.
fn parse_request(text: &str) -> (String, String, String, Vec<(String, String)>, Vec<u8>) {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b.as_bytes().to_vec()),
        None => (text.trim_end_matches('\n'), Vec::new()),
    };
    let mut lines = head.lines();
    let first = lines.next().expect("request line");
    let (method, rest) = first.split_once(' ').expect("method");
    let target = rest.strip_suffix(" HTTP/1.1").expect("HTTP/1.1");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("continuation after a header");
            last.1.push('\n');
            last.1.push_str(line);
        } else {
            let (k, v) = line.split_once(':').expect("header line");
            headers.push((k.to_string(), v.to_string()));
        }
    }
    (method.into(), path.into(), query.into(), headers, body)
}

fn load(dir: &Path) -> Vector {
    let ctx: serde_json::Value = serde_json::from_str(&read(dir, "context.json")).unwrap();
    let (method, path, query, headers, body) = parse_request(&read(dir, "request.txt"));
    let c = &ctx["credentials"];
    let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    Vector {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        method,
        path,
        query,
        headers,
        body,
        creds: Credentials {
            access_key_id: s(&c["access_key_id"]),
            secret_access_key: s(&c["secret_access_key"]),
            session_token: c["token"].as_str().map(str::to_string),
        },
        region: s(&ctx["region"]),
        service: s(&ctx["service"]),
        time: cb_aws::utc::parse(ctx["timestamp"].as_str().unwrap()).expect("timestamp"),
        opts: Options {
            normalize_path: ctx["normalize"].as_bool().unwrap_or(true),
            content_sha256_header: ctx["sign_body"].as_bool().unwrap_or(false),
            sign_session_token: !ctx["omit_session_token"].as_bool().unwrap_or(false),
        },
    }
}

#[test]
fn every_published_vector_signs_identically() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 30, "the suite is missing: {dirs:?}");
    let mut failures = Vec::new();
    for dir in &dirs {
        let v = load(dir);
        let signed = sigv4::sign(
            &sigv4::Request {
                method: &v.method,
                path: &v.path,
                query: &v.query,
                headers: &v.headers,
                body: &v.body,
            },
            &v.creds,
            &v.region,
            &v.service,
            v.time,
            v.opts,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let want_creq = read(dir, "header-canonical-request.txt");
        let want_sts = read(dir, "header-string-to-sign.txt");
        let want_sig = read(dir, "header-signature.txt");
        // The canonical request's last two lines: signed headers, payload
        // hash; the string to sign's third line: the scope.
        let want_signed_headers = want_creq.lines().rev().nth(1).unwrap();
        let want_scope = want_sts.lines().nth(2).unwrap();
        let authz = &signed.headers.last().unwrap();
        assert_eq!(authz.0, "authorization");
        let want_authz = format!(
            "{} Credential={}/{want_scope}, SignedHeaders={want_signed_headers}, Signature={}",
            sigv4::ALGORITHM,
            v.creds.access_key_id,
            want_sig.trim()
        );
        if signed.signature != want_sig.trim() {
            failures.push(format!(
                "{}: signature {} (AWS's canonical request:\n{want_creq})",
                v.name, signed.signature
            ));
        } else if authz.1 != want_authz {
            failures.push(format!("{}: {} is not {want_authz}", v.name, authz.1));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_wrong_secret_gives_a_different_signature() {
    let v = load(&suite_dir().join("get-vanilla"));
    let mut wrong = v.creds.clone();
    wrong.secret_access_key.push('x');
    let req = sigv4::Request {
        method: &v.method,
        path: &v.path,
        query: &v.query,
        headers: &v.headers,
        body: &v.body,
    };
    let a = sigv4::sign(&req, &v.creds, &v.region, &v.service, v.time, v.opts).unwrap();
    let b = sigv4::sign(&req, &wrong, &v.region, &v.service, v.time, v.opts).unwrap();
    assert_ne!(a.signature, b.signature);
    // Everything but the signature is the same.
    let strip = |h: &str| h.rsplit_once("Signature=").unwrap().0.to_string();
    assert_eq!(
        strip(&a.headers.last().unwrap().1),
        strip(&b.headers.last().unwrap().1)
    );
}
