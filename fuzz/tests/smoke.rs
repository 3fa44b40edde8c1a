//! The smoke run of every fuzz target, part of the normal test suite: the
//! seeds (and the shipped configs, for `config`), any regression inputs,
//! then twenty thousand deterministic mutations of each. Coverage-guided
//! runs with libFuzzer go much further (RELIABILITY.md has the commands
//! and figures); this keeps each target, and its property checks, honest
//! on every change.

use std::path::{Path, PathBuf};

use compute_bridge_fuzz::mutate::smoke;

/// Mutations per target: twenty thousand each keep the whole run around a
/// second.
const GENERATED: usize = 20_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file in `dir` (none if it does not exist), sorted by name.
fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Seeds and regression inputs of `target`.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut s = files(&root().join("seeds").join(target));
    s.extend(files(&root().join("regressions").join(target)));
    assert!(!s.is_empty(), "no seeds for {target}");
    s
}

#[test]
fn config_parsing() {
    let mut s = seeds("config");
    s.extend(files(&root().join("../config")));
    let dict = [
        "[bridge]\n",
        "[[backends]]\n",
        "[backends.http]\n",
        "[backends.ssh.hosts.h]\n",
        "[backends.config]\n",
        "[dashboard]\n",
        "[attestation]\n",
        "[rates.x]\n",
        "name = \"b\"\n",
        "component = \"builtin:aws\"\n",
        "allowed_hosts = [\"http://127.0.0.1:1\"]\n",
        "resolve = { \"a.b\" = \"169.254.169.254\" }\n",
        "transport = \"local\"\n",
        "concurrency_cap = 0\n",
        "${X}",
        "${",
        "\"\"\"",
        "'''",
        "\\u0000",
        "18446744073709551616",
        "-1",
        "1e400",
        "nan",
        "inf",
        "= [",
        "= {",
    ];
    let n = smoke(compute_bridge_fuzz::config, &s, &dict, GENERATED, 1);
    assert!(n > GENERATED);
}

#[test]
fn cloud_responses() {
    let dict = [
        "<Response>",
        "<Errors><Error><Code>",
        "</Code><Message>",
        "InvalidInstanceID.NotFound",
        "RequestLimitExceeded",
        "<instancesSet><item>",
        "</item></instancesSet>",
        "<instanceId>i-1</instanceId>",
        "<ipAddress>",
        "<launchTime>2023-02-29T25:61:61.000Z</launchTime>",
        "<tagSet><item><key>",
        "<reason>User initiated (",
        "&amp;",
        "&#0;",
        "<![CDATA[",
        "<?xml version=\"1.0\"?>",
        "<!DOCTYPE x [<!ENTITY a \"b\">]>",
        "<nextToken>",
        "<output>",
        "compute-bridge: workload exited ",
        "-2147483649",
        "99999999999999999999",
    ];
    let n = smoke(
        compute_bridge_fuzz::cloud_response,
        &seeds("cloud_response"),
        &dict,
        GENERATED,
        2,
    );
    assert!(n > GENERATED);
}

#[test]
fn workload_keys() {
    let dict = [
        "ssh-ed25519 ",
        "ssh-rsa ",
        "ecdsa-sha2-nistp256 ",
        "AAAAC3NzaC1lZDI1NTE5",
        "AAAAB3NzaC1yc2E",
        "==",
        "\n",
        "\r",
        "\t",
        "\u{1f}",
        ",command=\"sh\" ",
        "'",
        "\\",
        "$(id)",
        "@sha256:",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ];
    let n = smoke(
        compute_bridge_fuzz::workload_key,
        &seeds("workload_key"),
        &dict,
        GENERATED,
        3,
    );
    assert!(n > GENERATED);
}

#[test]
fn http_allow_list() {
    let dict = [
        "http://",
        "https://",
        "\n",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "127.0.0.1",
        "169.254.169.254",
        "0x7f.1",
        "2130706433",
        "@",
        ":",
        ":0",
        ":65536",
        "%2e",
        "%00",
        "\\",
        "#",
        "?",
        "xn--",
        "localhost.",
        "user:pass@",
    ];
    let n = smoke(
        compute_bridge_fuzz::http_allow_list,
        &seeds("http_allow_list"),
        &dict,
        GENERATED,
        4,
    );
    assert!(n > GENERATED);
}

#[test]
fn grants_off_the_wire() {
    let mut s = vec![compute_bridge_fuzz::grant_seed()];
    s.extend(seeds("grant"));
    let n = smoke(
        compute_bridge_fuzz::grant,
        &s,
        &[
            "\0",
            "\x01",
            "\x7f",
            "\u{ff}\u{ff}\u{ff}\u{ff}\x0f",
            "@sha256:",
        ],
        GENERATED,
        7,
    );
    assert!(n > GENERATED);
}

/// The committed `grant` seeds (the long libFuzzer runs start from them)
/// are grants the fixture accepts, so the fuzzer starts on the path where
/// an envelope opens. After a change to the grant or its sealing they stop
/// being accepted; `COMPUTE_BRIDGE_FUZZ_WRITE_SEEDS=1` writes them again.
#[test]
fn the_committed_grant_seed_is_a_grant_the_fixture_accepts() {
    let path = root().join("seeds").join("grant").join("sealed-fixture");
    if std::env::var_os("COMPUTE_BRIDGE_FUZZ_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, compute_bridge_fuzz::grant_seed()).unwrap();
    }
    let seeds = files(path.parent().unwrap());
    assert!(!seeds.is_empty(), "no seeds in {}", path.display());
    for s in seeds {
        assert!(
            compute_bridge_fuzz::grant_is_accepted(&s),
            "a seed in fuzz/seeds/grant is no longer an accepted grant; write it again with \
             COMPUTE_BRIDGE_FUZZ_WRITE_SEEDS=1 cargo test --release -p compute-bridge-fuzz committed"
        );
    }
}

#[test]
fn sealed_envelopes() {
    // A selector byte for each part with the untouched material (which
    // must open), the fixture's encoded public fields (which must open
    // too), and a flip of the first 16 bytes of the ciphertext.
    let mut s = seeds("envelope");
    s.push([&[3u8][..], &[0xffu8; 16][..]].concat());
    let n = smoke(
        compute_bridge_fuzz::envelope,
        &s,
        &["\x01", "\u{80}", "\0\0\0\0"],
        GENERATED,
        8,
    );
    assert!(n > GENERATED);
}
