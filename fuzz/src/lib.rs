//! Fuzz targets for the bridge's untrusted inputs, as plain functions.
//!
//! Each target takes arbitrary bytes, feeds them to the code that meets
//! such input in production, and checks a property that must hold for
//! every input (beyond "does not panic"). The libFuzzer binaries in
//! `fuzz_targets/` call these; so does the smoke test (`tests/smoke.rs`),
//! which runs each over its seeds and a few thousand mutations on stable
//! Rust as part of the normal test suite. Longer runs, with their figures,
//! are in RELIABILITY.md.
//!
//! | target            | input                                  | where it comes from            |
//! |-------------------|----------------------------------------|--------------------------------|
//! | `config`          | a boot config (TOML, with `${ENV}`)    | the operator's file            |
//! | `cloud_response`  | an HTTP status and body                | the EC2 API (or what answers)  |
//! | `workload_key`    | a login, a public key, an image        | a grant, via the provider loop |
//! | `http_allow_list` | `allowed_hosts` lines, then a URL      | the config, and a component    |
//! | `grant`           | a grant as it comes off the wire       | any coalition peer             |
//! | `envelope`        | a tampered copy of a sealed grant      | any coalition peer             |

pub mod mutate;

use std::sync::OnceLock;

use cb_aws::ec2::{self, HttpResponse};
use compute_bridge_coalition::envelope::{self, EnvelopeKey};
use compute_bridge_contract::backend::TdxRequirement;
use compute_bridge_contract::events::DeclineReason;
use compute_bridge_contract::protocol::{ComputeGrant, Manifest};
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_daemon::grant;
use compute_bridge_sandbox::capabilities::http::HttpConfig;
use compute_bridge_sandbox::capabilities::http::{HttpPolicy, Origin, is_forbidden};

/// Parse and validate a boot config. Errors must be located in the text
/// and name the file; an accepted config must hold the invariants the rest
/// of the bridge relies on. `${NAME}` expands to a value that itself looks
/// like a reference, which must not be expanded again.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source::embedded("fuzz.toml", text);
    let env = |k: &str| (k.len() < 8).then(|| format!("${{{k}}}"));
    match BootConfig::from_source(&source, &env) {
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("fuzz.toml"), "{shown}");
            if let Some(line) = e.line {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "{e:?}"
                );
            }
        }
        Ok(cfg) => {
            assert!(cfg.bridge.concurrency_cap >= 1);
            assert!(cfg.bridge.max_concurrent_calls >= 1);
            let _ = cfg.state_dir();
            let mut names = std::collections::HashSet::new();
            for b in &cfg.backends {
                assert!(names.insert(b.name.clone()), "duplicate backend {}", b.name);
                assert!(b.memory_limit_mib >= 1 && b.call_timeout_sec >= 1);
                HttpPolicy::new(&b.sections.http).expect("accepted allowed_hosts parse");
                let _ = b.component_source();
                let _ = b.sections.ssh.parsed_hosts();
            }
        }
    }
}

/// What the AWS backend makes of an EC2 answer: the first two bytes are
/// the HTTP status, the rest the body. Nothing panics; an error answer
/// maps to an error whatever its body; an exit code is read only from a
/// marker line.
pub fn cloud_response(data: &[u8]) {
    let (status, body) = match data {
        [a, b, rest @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, rest.to_vec()),
        _ => (200, data.to_vec()),
    };
    let resp = HttpResponse { status, body };
    let ok = (200..300).contains(&status);
    let run = ec2::parse_run_instances(&resp);
    assert!(ok || run.is_err(), "HTTP {status} parsed as a success");
    if let Ok(list) = run {
        for i in list {
            let _ = (
                i.public_host(),
                i.stopped_at(),
                i.tag("compute-bridge:request"),
            );
        }
    }
    let described = ec2::parse_describe_instances(&resp);
    assert!(
        ok || described.is_err(),
        "HTTP {status} parsed as a success"
    );
    if let Ok((list, _next)) = described {
        for i in list {
            let _ = (
                i.public_host(),
                i.stopped_at(),
                i.tag("compute-bridge:provider"),
            );
        }
    }
    let _ = ec2::parse_terminate_instances(&resp);
    if let Ok(console) = ec2::parse_console_output(&resp)
        && cb_aws::userdata::exit_code(&console).is_some()
    {
        assert!(console.contains(cb_aws::userdata::EXIT_MARKER));
    }
    let e = cb_aws::error::Ec2Error::parse(status, &resp.body);
    let _ = e.is_instance_not_found();
    let _ = e.into_error("RunInstances");
    if let Ok(text) = std::str::from_utf8(&resp.body) {
        let code = cb_aws::userdata::exit_code(text);
        assert!(code.is_none() || text.contains(cb_aws::userdata::EXIT_MARKER));
    }
}

/// A workload's login, public key and image (separated by 0x1f), as the
/// backends put them on a machine. Whatever is accepted cannot break out
/// of its place: the bare-metal backend's key is exactly `type base64`,
/// and the AWS user-data is `#cloud-config` + JSON holding the very key,
/// with a runner script whose single-quoted values stay quoted.
pub fn workload_key(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1f}');
    let (user, key, image) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );

    for candidate in [key, user] {
        if let Some(k) = cb_baremetal::keys::parse_public_key(candidate) {
            let (kind, blob) = k.split_once(' ').expect("type and base64");
            assert!(
                kind.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.@".contains(&b))
            );
            assert!(
                !blob.is_empty()
                    && blob
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
                "{k:?}"
            );
            assert_eq!(
                cb_baremetal::keys::parse_public_key(&k).as_deref(),
                Some(k.as_str())
            );
        }
    }

    let w = cb_aws::userdata::Workload {
        user,
        public_key: key,
        image,
        cpu_millicores: 1500,
        ram_mib: 2048,
        valid_to: 1_900_000_000,
    };
    if let Ok(doc) = w.cloud_config() {
        let json = doc
            .strip_prefix("#cloud-config\n")
            .expect("a cloud-config header");
        let v: serde_json::Value = serde_json::from_str(json).expect("the body is JSON");
        assert_eq!(v["users"][1]["name"], user);
        assert_eq!(v["users"][1]["ssh_authorized_keys"][0], key);
        assert!(
            !key.contains(['\n', '\r']),
            "a key smuggling a line: {key:?}"
        );
        for quoted in [user, image] {
            assert!(!quoted.contains(['\'', '\n', '\\']), "{quoted:?}");
        }
    }
}

/// An `allowed_hosts` list (one origin a line) and, on the last line, a
/// URL a component asks for. A URL is allowed only if its origin is listed
/// exactly; an allowed IP literal that is forbidden (loopback, metadata,
/// private) is reachable only for an origin listed at that very address
/// (scheme, IP and port); every listed
/// origin prints as a string that parses back to itself.
pub fn http_allow_list(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines: Vec<&str> = text.lines().collect();
    let Some(url) = lines.pop() else {
        return;
    };
    let cfg = HttpConfig {
        allowed_hosts: lines.iter().map(|l| l.to_string()).collect(),
        ..HttpConfig::default()
    };
    let Ok(policy) = HttpPolicy::new(&cfg) else {
        return;
    };
    let listed: Vec<Origin> = lines.iter().map(|l| Origin::parse(l).unwrap()).collect();
    for o in &listed {
        assert_eq!(Origin::parse(&o.to_string()).as_ref(), Ok(o), "{o}");
    }
    let Ok(url) = reqwest::Url::parse(url) else {
        return;
    };
    if let Ok(origin) = policy.allows_url(&url) {
        assert!(listed.contains(&origin), "{url} allowed as {origin}");
        assert_eq!(Origin::of(&url).as_ref(), Some(&origin));
        if let Some(ip) = origin.ip() {
            // A listed address origin is reachable as itself.
            assert!(policy.allows_ip_for(&origin, ip), "{origin}");
        }
    }
    // Addresses: a forbidden one is reachable only for its own listed
    // origin (scheme, address and port), never for another port of it.
    if let Some(origin) = Origin::of(&url)
        && let Some(ip) = origin.ip()
        && is_forbidden(ip)
        && policy.allows_ip_for(&origin, ip)
    {
        assert!(listed.contains(&origin), "{origin}");
    }
}

/// A provider's envelope key, a grant sealed to it and the reply key
/// inside: the fixture the `grant` and `envelope` targets tamper with.
struct Sealed {
    key: EnvelopeKey,
    grant: ComputeGrant,
    reply: [u8; 32],
}

fn sealed() -> &'static Sealed {
    static FIXTURE: OnceLock<Sealed> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = EnvelopeKey::derive(b"compute-bridge fuzz provider");
        let reply = EnvelopeKey::derive(b"compute-bridge fuzz requester").public();
        let mut grant = ComputeGrant::unsealed(
            key.provider_id(),
            Manifest {
                image: format!("scratch@sha256:{}", "ab".repeat(32)),
                cpu_millicores: 500,
                ram_mib: 256,
                region: Some("local".into()),
                tdx: TdxRequirement::None,
            },
            GRANT_NOW - 10,
            GRANT_NOW + 600,
        );
        // Fixed, so the committed seed (sealed in another run) has the
        // fixture's public fields.
        grant.request_id = "00112233445566778899aabbccddeeff".parse().unwrap();
        grant.envelope = envelope::seal_grant(&key.public(), &grant, &reply).unwrap();
        Sealed { key, grant, reply }
    })
}

/// The clock the `grant` target validates at (inside the fixture's window).
const GRANT_NOW: u64 = 1_800_000_000;

/// The wire encoding (postcard, as mosaik sends it) of the sealed fixture
/// grant: the seed of the `grant` target.
pub fn grant_seed() -> Vec<u8> {
    postcard::to_allocvec(&sealed().grant).unwrap()
}

/// Whether `data` decodes to a grant the provider loop accepts under the
/// fixture's key and clock (the committed seeds must be such grants).
pub fn grant_is_accepted(data: &[u8]) -> bool {
    postcard::from_bytes::<ComputeGrant>(data)
        .is_ok_and(|g| grant::validate(&g, &sealed().key, GRANT_NOW).is_ok())
}

/// A grant decoded from the wire, then checked as the provider loop checks
/// it. Nothing panics, and nothing is accepted but a grant with exactly
/// the fixture's public fields whose envelope really was sealed to the
/// fixture's key with its reply key inside (the fixture itself, or the
/// same grant sealed in another run, as the committed seed was): forging
/// an envelope, or moving one onto other public fields, must not work.
pub fn grant(data: &[u8]) {
    let Ok(g) = postcard::from_bytes::<ComputeGrant>(data) else {
        return;
    };
    let f = sealed();
    match grant::validate(&g, &f.key, GRANT_NOW) {
        Ok(reply) => {
            let public = ComputeGrant {
                envelope: f.grant.envelope.clone(),
                ..g.clone()
            };
            assert_eq!(
                public, f.grant,
                "a grant with other public fields was accepted"
            );
            assert_eq!(reply, f.reply);
        }
        Err(reason) => assert!(g != f.grant || reason != DeclineReason::Malformed),
    }
}

/// A sealed grant with one part replaced or bit-flipped (the first byte
/// picks the part, the rest is the material). The envelope opens only if
/// the grant is unchanged: the AEAD binds every public field, and no
/// change to `enc` or the ciphertext gets past it.
pub fn envelope(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let f = sealed();
    let mut g = f.grant.clone();
    let xor = |target: &mut Vec<u8>| {
        for (i, b) in rest.iter().enumerate() {
            if let Some(t) = target.get_mut(i) {
                *t ^= b;
            }
        }
    };
    let word = |n: usize| {
        let mut b = [0u8; 8];
        for (i, x) in rest.iter().take(n).enumerate() {
            b[i] = *x;
        }
        u64::from_le_bytes(b)
    };
    match which % 8 {
        0 => g.envelope.enc = rest.to_vec(),
        1 => g.envelope.ciphertext = rest.to_vec(),
        2 => xor(&mut g.envelope.enc),
        3 => xor(&mut g.envelope.ciphertext),
        4 => g.manifest.cpu_millicores ^= word(4) as u32,
        5 => g.valid_to ^= word(8),
        6 => g.manifest.image = String::from_utf8_lossy(rest).into_owned(),
        _ => {
            // Every public field from the input, the envelope kept.
            let Ok(other) = postcard::from_bytes::<ComputeGrant>(rest) else {
                return;
            };
            g = ComputeGrant {
                envelope: g.envelope,
                ..other
            };
        }
    }
    match f.key.open_grant(&g) {
        Ok(reply) => {
            assert_eq!(g, f.grant, "a changed grant opened");
            assert_eq!(reply, f.reply);
        }
        Err(_) => assert_ne!(g, f.grant, "the untouched grant did not open"),
    }
}
