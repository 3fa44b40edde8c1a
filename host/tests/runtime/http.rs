//! The http capability, attacked from inside a real component: only listed
//! origins, no forbidden addresses in any spelling, a listed address open
//! for its own origin only, no redirects off the list, the host's own
//! `Host` and no hop-by-hop headers, bounded size and time.

use compute_bridge_contract::backend::{Backend, BackendError};
use compute_bridge_testkit::components;
use compute_bridge_testkit::http_server::HttpServer;

use crate::support::*;

/// Have the hostile component GET `url` with `http_toml` as its
/// `[backends.http]` table; return the error text (the component reports
/// successes as errors too, "got HTTP <status> with <n> bytes").
async fn get(url: &str, http_toml: &str) -> String {
    let state = tempfile::tempdir().unwrap();
    let text = backend_toml(
        "hostile",
        components::HOSTILE,
        &format!(
            "[backends.http]\n{http_toml}\n[backends.config]\nattack = \"http\"\nurl = {url:?}\n"
        ),
    );
    let cfg = config(state.path(), &text);
    let (_rt, b) = load(&cfg);
    match b[0].provision(&grant("g"), &workload()).await {
        Err(BackendError::Internal(m) | BackendError::Config(m) | BackendError::Transient(m)) => m,
        other => panic!("unexpected: {other:?}"),
    }
}

#[tokio::test]
async fn a_listed_ip_origin_is_reachable() {
    let s = HttpServer::start();
    let msg = get(
        &format!("{}/ok", s.origin()),
        &format!("allowed_hosts = [{:?}]", s.origin()),
    )
    .await;
    assert_eq!(msg, "got HTTP 200 with 5 bytes");
}

#[tokio::test]
async fn an_unlisted_origin_is_refused_before_any_connection() {
    let s = HttpServer::start();
    let other = HttpServer::start();
    let msg = get(
        &format!("{}/ok", other.origin()),
        &format!("allowed_hosts = [{:?}]", s.origin()),
    )
    .await;
    assert!(
        msg.contains("denied by the host") && msg.contains("not in this backend's allowed_hosts"),
        "{msg}"
    );
    assert_eq!(other.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn cloud_metadata_is_refused() {
    let msg = get(
        "http://169.254.169.254/latest/meta-data/iam/",
        "allowed_hosts = [\"https://ec2.us-east-1.amazonaws.com\"]",
    )
    .await;
    assert!(
        msg.contains("denied") && msg.contains("169.254.169.254"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_allowed_name_resolving_to_loopback_is_refused() {
    let s = HttpServer::start();
    // The operator allowed a name, and it resolves to 127.0.0.1 (as a
    // rebinding or a poisoned resolver would make it): refused after
    // resolution, and the server never sees a request.
    let msg = get(
        &format!("http://api.example.test:{}/ok", s.port),
        &format!("allowed_hosts = [\"http://api.example.test:{}\"]\nresolve = {{ \"api.example.test\" = \"127.0.0.1\" }}", s.port),
    )
    .await;
    assert!(
        msg.contains("resolves only to forbidden addresses (127.0.0.1)"),
        "{msg}"
    );
    assert_eq!(s.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_allowed_name_resolving_to_metadata_is_refused() {
    let msg = get(
        "http://metadata.example.test/latest",
        "allowed_hosts = [\"http://metadata.example.test\"]\nresolve = { \"metadata.example.test\" = \"169.254.169.254\" }",
    )
    .await;
    assert!(
        msg.contains("resolves only to forbidden addresses (169.254.169.254)"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_redirect_off_the_list_is_refused() {
    let s = HttpServer::start();
    let elsewhere = HttpServer::start();
    let url = format!("{}/redirect?to={}/ok", s.origin(), elsewhere.origin());
    let msg = get(&url, &format!("allowed_hosts = [{:?}]", s.origin())).await;
    assert!(msg.contains("redirect refused"), "{msg}");
    assert_eq!(
        elsewhere
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // A redirect within the list is followed.
    let within = format!("{}/redirect?to={}/ok", s.origin(), s.origin());
    let msg = get(&within, &format!("allowed_hosts = [{:?}]", s.origin())).await;
    assert_eq!(msg, "got HTTP 200 with 5 bytes");
}

#[tokio::test]
async fn a_huge_response_is_cut_at_the_cap() {
    let s = HttpServer::start();
    let allowed = format!(
        "allowed_hosts = [{:?}]\nmax_response_bytes = 1048576",
        s.origin()
    );
    let msg = get(&format!("{}/big?mib=100", s.origin()), &allowed).await;
    assert!(
        msg.contains("larger than the host's cap of 1048576 bytes"),
        "{msg}"
    );
    // Without a Content-Length the stream is cut as it grows.
    let msg = get(&format!("{}/big-unsized?mib=100", s.origin()), &allowed).await;
    assert!(msg.contains("larger than the host's cap"), "{msg}");
}

#[tokio::test]
async fn a_server_that_trickles_forever_times_out() {
    let s = HttpServer::start();
    let msg = get(
        &format!("{}/trickle", s.origin()),
        &format!("allowed_hosts = [{:?}]\ntimeout_sec = 1", s.origin()),
    )
    .await;
    assert!(msg.contains("timed out"), "{msg}");
}

#[tokio::test]
async fn a_listed_ip_origin_does_not_open_its_other_ports_to_a_listed_name() {
    // The operator lists a test server by address, and a name elsewhere.
    // The name resolves to 127.0.0.1 (rebinding, or a resolver the attacker
    // controls), on the port of another server on this machine: that
    // origin was never listed, so nothing may reach it.
    let listed = HttpServer::start();
    let other = HttpServer::start();
    let msg = get(
        &format!("http://api.example.test:{}/ok", other.port),
        &format!(
            "allowed_hosts = [{:?}, \"http://api.example.test:{}\"]\n\
             resolve = {{ \"api.example.test\" = \"127.0.0.1\" }}",
            listed.origin(),
            other.port
        ),
    )
    .await;
    assert!(
        msg.contains("resolves only to forbidden addresses (127.0.0.1)"),
        "{msg}"
    );
    assert_eq!(other.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
    // The name on the listed origin's own port is the listed origin.
    let msg = get(
        &format!("http://api.example.test:{}/ok", listed.port),
        &format!(
            "allowed_hosts = [{:?}, \"http://api.example.test:{}\"]\n\
             resolve = {{ \"api.example.test\" = \"127.0.0.1\" }}",
            listed.origin(),
            listed.port
        ),
    )
    .await;
    assert_eq!(msg, "got HTTP 200 with 5 bytes");
}

/// The `headers` attack against `s`: a GET of `/headers` with `headers`
/// (a TOML array of name/value pairs) set by the guest; what it ended in.
async fn send_headers(
    s: &HttpServer,
    headers: &str,
) -> Result<compute_bridge_contract::backend::Instance, BackendError> {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(
        state.path(),
        &backend_toml(
            "hostile",
            components::HOSTILE_SANDBOX,
            &format!(
                "[backends.http]\nallowed_hosts = [{origin:?}]\n[backends.config]\nattack = \"headers\"\n\
                 url = \"{origin}/headers\"\nheaders = {headers}\n",
                origin = s.origin()
            ),
        ),
    );
    let (_rt, b) = load(&cfg);
    b[0].provision(&grant("g"), &workload()).await
}

#[tokio::test]
async fn the_host_sets_host_and_drops_hop_by_hop_headers() {
    let s = HttpServer::start();
    let sent = send_headers(
        &s,
        "[[\"Host\", \"internal.example\"], [\"Connection\", \"keep-alive, X-Hop\"], \
         [\"X-Hop\", \"hop\"], [\"Keep-Alive\", \"timeout=600\"], \
         [\"Proxy-Authorization\", \"Basic eDp4\"], [\"Proxy-Connection\", \"keep-alive\"], \
         [\"TE\", \"trailers\"], [\"Trailer\", \"X-T\"], [\"Upgrade\", \"websocket\"], \
         [\"Transfer-Encoding\", \"chunked\"], [\"X-Kept\", \"kept\"]]",
    )
    .await;
    let msg = match sent {
        Err(BackendError::Internal(m)) => m,
        other => panic!("unexpected: {other:?}"),
    };
    // What the server got, one header a line (escaped into the error).
    let echoed = msg
        .strip_prefix("got HTTP 200: ")
        .unwrap_or_else(|| panic!("not the server's echo: {msg}"));
    let got: Vec<String> = echoed
        .split("\\n")
        .map(|l| l.trim().to_ascii_lowercase())
        .collect();
    assert!(
        got.iter()
            .any(|l| *l == format!("host: 127.0.0.1:{}", s.port)),
        "{msg}"
    );
    assert!(got.iter().any(|l| l == "x-kept: kept"), "{msg}");
    for dropped in [
        "internal.example",
        "connection:",
        "x-hop:",
        "keep-alive:",
        "proxy-",
        "te:",
        "trailer:",
        "upgrade:",
        "transfer-encoding:",
    ] {
        assert!(
            !got.iter().any(|l| l.contains(dropped)),
            "{dropped} reached the server: {msg}"
        );
    }
}

/// A `Content-Length` that is not the body's length: wasi:http holds the
/// body to what the guest declared, so the request fails before the
/// server ever answers it, instead of going out with a length that lies.
#[tokio::test]
async fn a_content_length_that_lies_about_the_body_fails_the_request() {
    let s = HttpServer::start();
    match send_headers(&s, "[[\"Content-Length\", \"1000\"]]").await {
        Err(BackendError::Transient(m)) => assert!(m.contains("HttpProtocolError"), "{m}"),
        other => panic!("a request with a lying length was answered: {other:?}"),
    }
}

#[tokio::test]
async fn every_ipv6_form_of_a_forbidden_ipv4_address_is_refused() {
    // Names the operator allowed, resolving to IPv6 addresses that carry
    // 127.0.0.1, 10.0.0.1 or 169.254.169.254 inside them, or to site-local
    // and Teredo addresses. Each is refused after resolution.
    let forms = [
        ("compat", "::7f00:1"),
        ("mapped", "::ffff:127.0.0.1"),
        ("translated", "::ffff:0:7f00:1"),
        ("sixtofour", "2002:7f00:1::1"),
        ("sixtofour-metadata", "2002:a9fe:a9fe::1"),
        ("nat64", "64:ff9b::a00:1"),
        ("nat64-local", "64:ff9b:1::a00:1"),
        ("teredo", "2001:0:4136:e378:8000:63bf:80ff:fffe"),
        ("sitelocal", "fec0::1"),
    ];
    let state = tempfile::tempdir().unwrap();
    let text: String = forms
        .iter()
        .map(|(name, ip)| {
            backend_toml(
                name,
                components::HOSTILE,
                &format!(
                    "[backends.http]\nallowed_hosts = [\"http://{name}.example.test:8080\"]\n\
                     resolve = {{ \"{name}.example.test\" = \"{ip}\" }}\ntimeout_sec = 5\n\
                     [backends.config]\nattack = \"http\"\nurl = \"http://{name}.example.test:8080/\"\n"
                ),
            )
        })
        .collect();
    let cfg = config(state.path(), &text);
    let (_rt, backends) = load(&cfg);
    for ((name, ip), b) in forms.iter().zip(&backends) {
        let msg = match b.provision(&grant("g"), &workload()).await {
            Err(
                BackendError::Internal(m) | BackendError::Config(m) | BackendError::Transient(m),
            ) => m,
            other => panic!("{name}: unexpected {other:?}"),
        };
        let shown = ip.parse::<std::net::IpAddr>().unwrap().to_string();
        assert!(
            msg.contains(&format!("resolves only to forbidden addresses ({shown})")),
            "{name} ({ip}): {msg}"
        );
    }
}
