//! `compute-bridge attest`: a TDX quote bound to this bridge's provider
//! card, with its measurements.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::load_config;

pub(crate) fn run(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    use compute_bridge_coalition::attest::CardIdentity;
    use compute_bridge_daemon::attest::{Attester, ConfigfsTsm};
    let cfg = load_config(config)?;
    let state_dir = cfg.state_dir();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let identity = compute_bridge_daemon::identity::Identity::load_or_create(&state_dir)?;
    let id = CardIdentity {
        provider_id: identity.provider_id,
        envelope_key: identity.envelope.public(),
        coalition: cfg.coalition.network.clone(),
    };
    let expected = cfg.attestation.expected();
    let a = Attester::new(Arc::new(ConfigfsTsm), expected).attest(&id)?;
    let m = &a.measurements;
    println!(
        "TDX quote for provider {} on coalition {:?}",
        id.provider_id, id.coalition
    );
    println!(
        "MR_TD  {}  {}",
        m.mrtd,
        match (a.mrtd_ok, expected) {
            (Some(true), _) => "ok (matches attestation.expected_mrtd)".to_string(),
            (Some(false), Some(e)) => format!("MISMATCH: attestation.expected_mrtd is {e}"),
            _ => "(no attestation.expected_mrtd to compare with)".to_string(),
        }
    );
    for (i, r) in m.rtmr.iter().enumerate() {
        println!("RTMR{i}  {r}");
    }
    println!(
        "report data  {} (SHA-512 of the card identity; see README, Attestation)",
        hex::encode(id.report_data())
    );
    println!("quote ({} bytes, base64):", a.quote.len());
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(&a.quote)
    );
    Ok(if a.mrtd_ok == Some(false) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
