//! X25519, the one cost of a coalition lifecycle large enough to matter
//! (BENCHMARKS.md "Scale": about a third of the process's CPU), as the
//! sealing code does it today beside the faster implementation already in
//! the dependency graph, interleaved in one process:
//!
//! - **dalek**: a fresh secret, its public key and one Diffie-Hellman with
//!   `x25519-dalek` (portable 64-bit field arithmetic), which is what the
//!   `hpke` crate's DHKEM does for every seal (an open does the DH only);
//! - **aws-lc**: the same three steps with `aws-lc-rs`'s X25519 (AWS-LC's
//!   assembly), which `rustls` and `russh` already link into the bridge;
//! - **seal + open**: one HPKE seal of an access bundle and its open through
//!   `compute_bridge_coalition::envelope`, for the share of a seal that is
//!   X25519.
//!
//! Rounds alternate which side goes first; the ratio is per round (dalek ÷
//! aws-lc) with its spread. It measures whether swapping the X25519 under
//! the sealing code would reach the coalition path's lifecycles/s target;
//! nothing in the bridge calls aws-lc's X25519. The production subscriber
//! is installed as in every bench (sealing logs nothing).
//!
//! ```sh
//! cargo bench -p compute-bridge --bench x25519
//! # knobs: X25519_ROUNDS (10) X25519_OPS (2000 per side and round) BENCH_LOG (off)
//! ```

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::agreement;
use compute_bridge_coalition::envelope::{EnvelopeKey, seal_access};
use compute_bridge_contract::protocol::{AccessBundle, ProviderId, RequestId};

use common::{knob, loadavg, production_logging, quantile};

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).expect("the OS random source");
    b
}

/// Per operation: `ops` fresh secrets, each with its public key and one DH
/// against `peer`.
fn dalek(ops: usize, peer: &x25519_dalek::PublicKey) -> Duration {
    let secrets: Vec<[u8; 32]> = (0..ops).map(|_| random32()).collect();
    let start = Instant::now();
    for s in secrets {
        let secret = x25519_dalek::StaticSecret::from(s);
        black_box(x25519_dalek::PublicKey::from(&secret));
        black_box(secret.diffie_hellman(peer));
    }
    start.elapsed() / ops as u32
}

fn aws_lc(ops: usize, peer: &[u8; 32]) -> Duration {
    let secrets: Vec<[u8; 32]> = (0..ops).map(|_| random32()).collect();
    let start = Instant::now();
    for s in secrets {
        let secret = agreement::PrivateKey::from_private_key(&agreement::X25519, &s)
            .expect("32 bytes are an X25519 secret");
        black_box(secret.compute_public_key().expect("public key"));
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, peer);
        agreement::agree(&secret, peer, (), |k| Ok(black_box(k[0]))).expect("agree");
    }
    start.elapsed() / ops as u32
}

fn seal_and_open(ops: usize, key: &EnvelopeKey, bundle: &AccessBundle) -> Duration {
    let provider = ProviderId::from_envelope_key(&random32());
    let start = Instant::now();
    for _ in 0..ops {
        let sealed = seal_access(&key.public(), RequestId::random(), provider, bundle)
            .expect("seals to a valid key");
        black_box(key.open_access(&sealed).expect("opens"));
    }
    start.elapsed() / ops as u32
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let mut log = production_logging("x25519");
    let rounds = knob("X25519_ROUNDS", 10usize).max(1);
    let ops = knob("X25519_OPS", 2000usize).max(1);
    let peer_secret = x25519_dalek::StaticSecret::from(random32());
    let peer = x25519_dalek::PublicKey::from(&peer_secret);
    let key = EnvelopeKey::generate();
    let bundle = AccessBundle {
        host: "203.0.113.7".into(),
        port: 22,
        user: "w1".into(),
        private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\n".repeat(8),
        host_key: String::new(),
    };
    println!(
        "x25519: {rounds} rounds of {ops} per side; load average {}",
        loadavg()
    );
    let (mut d, mut a, mut s, mut ratios) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let (dk, al) = if round % 2 == 0 {
            let dk = dalek(ops, &peer);
            (dk, aws_lc(ops, peer.as_bytes()))
        } else {
            let al = aws_lc(ops, peer.as_bytes());
            (dalek(ops, &peer), al)
        };
        let so = seal_and_open(ops / 4 + 1, &key, &bundle);
        let ratio = dk.as_secs_f64() / al.as_secs_f64();
        println!(
            "round {round:2}: keygen + DH dalek {}, aws-lc {}, ratio {ratio:.2}×; HPKE seal + open {}",
            us(dk),
            us(al),
            us(so)
        );
        ratios.push(ratio);
        d.push(dk);
        a.push(al);
        s.push(so);
    }
    ratios.sort_by(f64::total_cmp);
    let mid = rounds / 2;
    println!(
        "median: keygen + DH dalek {}, aws-lc {}; HPKE seal + open {} (two DH and one keygen, dalek)",
        us(quantile(&mut d, 0.5)),
        us(quantile(&mut a, 0.5)),
        us(quantile(&mut s, 0.5))
    );
    println!(
        "dalek ÷ aws-lc per round: min {:.2}×, median {:.2}×, max {:.2}×",
        ratios[0],
        ratios[mid],
        ratios[rounds - 1]
    );
    println!("load average {}; {}", loadavg(), log.summary());
}
