//! Verifying a provider card's TDX attestation, as a requester does before
//! it sends a grant: the quote's signature and certificate chain, its
//! binding to the card's identity (the report data, laid out below), MR_TD,
//! and the measurement log of the card's backends. Taking the quote is the
//! provider's half and stays with it (`compute_bridge::attest`: the
//! `Attester`, its quote sources); both halves share [`CardIdentity`],
//! [`Measurements`] and [`parse_quote`]. Keeps nothing.
//!
//! # Report data
//!
//! The quote's 64-byte `REPORTDATA` is SHA-512 over these bytes, in order
//! (see [`CardIdentity::report_data`]):
//!
//! | bytes | what                                                        |
//! |-------|-------------------------------------------------------------|
//! | 34    | the ASCII tag `compute-bridge/card-report-data/v1`          |
//! | 16    | the provider id (raw bytes, not hex)                        |
//! | 32    | the X25519 envelope public key                              |
//! | 4     | the coalition name's length in bytes, big-endian `u32`      |
//! | n     | the coalition name, UTF-8                                   |
//!
//! The length prefix keeps the encoding unambiguous; the tag keeps the
//! hash from meaning anything in another protocol.
//!
//! # Trust
//!
//! A quote is trusted when it parses, its attestation-key signature over
//! header and body verifies (`tdx-quote`), the QE report is signed by the
//! PCK, and the PCK certificate chain in the quote leads to Intel's SGX
//! root CA (embedded in `tdx-quote`). A quote without such a chain (a test
//! quote, or a platform that leaves the chain out) is refused unless the
//! requester explicitly accepts unverified chains ([`ChainPolicy`]); the
//! binding and MR_TD checks still apply then. Certificate validity dates
//! and revocation (Intel's PCS collateral) are not checked.
//!
//! # Measured backends
//!
//! A TDX card's measurement log (`compute_bridge_contract::measurement`)
//! must replay to the quote's RTMR3; each way a log can be broken has its
//! own reason ([`LogRejected`]). A requester may then pin the components it
//! accepts ([`VerifyPolicy::require_components`]).
//!
//! mosaik's own `tdx` feature was evaluated first: its tickets bind a
//! quote to the mosaik peer id and network in the discovery catalog, not to
//! the card's envelope key, and check only the attestation-key signature.
//! The card needs the envelope-key binding (that is what grants are sealed
//! to), so the bridge uses the same two crates directly (`tdx-quote` here,
//! `configfs-tsm` in the provider's half).

use std::collections::BTreeMap;

use compute_bridge_contract::measurement::{ComponentDigest, LogRejected, Measurement};
use compute_bridge_contract::protocol::{Attestation, ProviderCard, ProviderId};
use sha2::{Digest, Sha512};

/// Domain tag at the start of the report-data preimage.
pub const REPORT_DATA_TAG: &[u8] = b"compute-bridge/card-report-data/v1";

/// The measurements a quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurements {
    /// MR_TD: the TD's build-time measurement (firmware and initial image).
    pub mrtd: Measurement,
    /// RTMR0..3: run-time extendable registers.
    pub rtmr: [Measurement; 4],
}

impl Measurements {
    /// The measurements in a parsed quote.
    pub fn of(q: &tdx_quote::Quote) -> Self {
        Self {
            mrtd: Measurement(q.mrtd()),
            rtmr: [q.rtmr0(), q.rtmr1(), q.rtmr2(), q.rtmr3()].map(Measurement),
        }
    }
}

/// The card fields a quote is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    /// The provider id.
    pub provider_id: ProviderId,
    /// The X25519 envelope public key.
    pub envelope_key: [u8; 32],
    /// The coalition's name.
    pub coalition: String,
}

impl CardIdentity {
    /// The identity a card claims.
    pub fn of(card: &ProviderCard) -> Self {
        Self {
            provider_id: card.provider_id,
            envelope_key: card.envelope_key,
            coalition: card.coalition.clone(),
        }
    }

    /// The quote's report data for this identity (layout in the module
    /// docs).
    pub fn report_data(&self) -> [u8; 64] {
        let mut h = Sha512::new();
        h.update(REPORT_DATA_TAG);
        h.update(self.provider_id.0);
        h.update(self.envelope_key);
        let len = u32::try_from(self.coalition.len()).expect("coalition names are short");
        h.update(len.to_be_bytes());
        h.update(self.coalition.as_bytes());
        h.finalize().into()
    }
}

/// Parse a quote and verify its attestation-key signature. `tdx-quote`
/// 0.0.5 slices before it checks lengths (a short quote panics), so the
/// length is checked first and a panic is still caught: a hostile card
/// must not crash a requester.
pub fn parse_quote(bytes: &[u8]) -> Result<tdx_quote::Quote, String> {
    const HEADER: usize = 48;
    let body = match bytes.get(..2).map(|v| u16::from_le_bytes([v[0], v[1]])) {
        Some(4) => 584,
        Some(5) => 584 + 64 + 6,
        Some(v) => return Err(format!("quote version {v} is not 4 or 5")),
        None => return Err("it is empty".into()),
    };
    if bytes.len() < HEADER + body + 4 + 64 + 64 + 2 + 4 {
        return Err(format!("it is truncated ({} bytes)", bytes.len()));
    }
    match std::panic::catch_unwind(|| tdx_quote::Quote::from_bytes(bytes)) {
        Ok(Ok(q)) => Ok(q),
        Ok(Err(e)) => Err(format!(
            "it does not parse or its signature does not verify: {e}"
        )),
        Err(_) => Err("it is malformed (the parser gave up)".into()),
    }
}

/// How a requester treats a quote whose certificate chain does not lead to
/// Intel's root CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChainPolicy {
    /// Refuse it (the default, and the only safe choice for real use).
    #[default]
    IntelRoot,
    /// Accept it, still checking the quote's signature, binding and MR_TD:
    /// for test quotes only (`--allow-untrusted-quote-chain`).
    AllowUntrusted,
}

/// What a requester demands of a card.
#[derive(Debug, Clone, Default)]
pub struct VerifyPolicy {
    /// Refuse any card whose quote's MR_TD is not this (and any card
    /// without a quote).
    pub require_mrtd: Option<Measurement>,
    /// Certificate-chain handling.
    pub chain: ChainPolicy,
    /// Backend components the provider must run, by backend name
    /// (`--require-component NAME=sha256:HEX`): each must be the backend's
    /// current measured component, every backend the card offers enabled
    /// must be one of them, and the card must be attested (an unattested
    /// log proves nothing).
    pub require_components: BTreeMap<String, ComponentDigest>,
}

/// A card that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardVerdict {
    /// `attestation = none` and nothing was required: not attested.
    Unattested,
    /// A quote bound to the card.
    Attested {
        /// Its measurements.
        measurements: Box<Measurements>,
        /// True when its PCK chain leads to Intel's root CA; false only
        /// under [`ChainPolicy::AllowUntrusted`].
        chain_verified: bool,
    },
}

/// Why a requester refuses a card. Each failure has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardRejected {
    /// The id does not belong to the envelope key.
    #[error("its provider id does not belong to its envelope key")]
    Inconsistent,
    /// An MR_TD was required and the card has no quote.
    #[error("it is not attested (attestation = none) but MR_TD {required} was required")]
    NotAttested {
        /// The required MR_TD.
        required: Measurement,
    },
    /// The quote does not parse or its signature does not verify.
    #[error("its TDX quote is invalid (tampered or corrupt): {0}")]
    BadQuote(String),
    /// The quote's PCK chain does not lead to Intel's root CA.
    #[error(
        "its TDX quote has no certificate chain to Intel's root CA ({0}); \
         --allow-untrusted-quote-chain accepts such quotes, for test quotes only"
    )]
    UntrustedChain(String),
    /// The quote's report data is not the hash of this card's identity.
    #[error(
        "its TDX quote is not bound to this card: the report data is not the hash of its \
         provider id, envelope key and coalition"
    )]
    NotBound,
    /// The quote's MR_TD is not the required one.
    #[error("MR_TD mismatch: the quote has {actual}, {expected} was required")]
    MrtdMismatch {
        /// Required.
        expected: Measurement,
        /// In the quote.
        actual: Measurement,
    },
    /// The card's measurement log does not prove what it says.
    #[error("{0}")]
    Log(LogRejected),
    /// Components were required and the card is not attested.
    #[error(
        "it is not attested (attestation = none), so its measured backends prove nothing, but \
         components were required ({required})"
    )]
    ComponentsUnproven {
        /// The required backends, named.
        required: String,
    },
    /// A required backend's measured component is not the required one.
    #[error(
        "backend {backend} runs component {}, but {required} was required",
        measured.map_or_else(|| "(none measured)".to_string(), |m| m.to_string())
    )]
    ComponentMismatch {
        /// The backend.
        backend: String,
        /// Required.
        required: ComponentDigest,
        /// Its current measured component, if any.
        measured: Option<ComponentDigest>,
    },
    /// The card offers a backend no requirement names: a grant could be
    /// routed to it.
    #[error(
        "it offers backend {backend} (component {}), which no required component names; a grant \
         could be routed to it",
        measured.map_or_else(|| "not measured".to_string(), |m| m.to_string())
    )]
    ComponentNotRequired {
        /// The backend.
        backend: String,
        /// Its current measured component, if any.
        measured: Option<ComponentDigest>,
    },
}

/// Verify `card` under `policy`: the id's binding to the envelope key, and
/// for a TDX card the quote's signature, its certificate chain, its
/// binding to the card and MR_TD.
pub fn verify_card(
    card: &ProviderCard,
    policy: &VerifyPolicy,
) -> Result<CardVerdict, CardRejected> {
    if !card.is_self_consistent() {
        return Err(CardRejected::Inconsistent);
    }
    let quote = match &card.attestation {
        Attestation::None => {
            return match policy.require_mrtd {
                Some(required) => Err(CardRejected::NotAttested { required }),
                None if !policy.require_components.is_empty() => {
                    Err(CardRejected::ComponentsUnproven {
                        required: policy
                            .require_components
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
                None => Ok(CardVerdict::Unattested),
            };
        }
        Attestation::Tdx { quote } => quote,
    };
    let parsed = parse_quote(quote).map_err(CardRejected::BadQuote)?;
    if parsed.header.tee_type != tdx_quote::TEEType::TDX {
        return Err(CardRejected::BadQuote("it is not a TDX quote".into()));
    }
    let chain_verified = match parsed.verify() {
        Ok(_) => true,
        Err(e) if policy.chain == ChainPolicy::AllowUntrusted => {
            tracing::warn!("accepting a quote without a verifiable Intel chain ({e})");
            false
        }
        Err(e) => return Err(CardRejected::UntrustedChain(e.to_string())),
    };
    if parsed.report_input_data() != CardIdentity::of(card).report_data() {
        return Err(CardRejected::NotBound);
    }
    let measurements = Measurements::of(&parsed);
    if let Some(expected) = policy.require_mrtd
        && expected != measurements.mrtd
    {
        return Err(CardRejected::MrtdMismatch {
            expected,
            actual: measurements.mrtd,
        });
    }
    card.measurements
        .verify(&measurements.rtmr[3])
        .map_err(CardRejected::Log)?;
    check_components(card, &policy.require_components)?;
    Ok(CardVerdict::Attested {
        measurements: Box::new(measurements),
        chain_verified,
    })
}

/// Every required component is its backend's current measured one, and
/// every enabled backend the card offers is required (nothing to check when
/// nothing is required).
fn check_components(
    card: &ProviderCard,
    required: &BTreeMap<String, ComponentDigest>,
) -> Result<(), CardRejected> {
    if required.is_empty() {
        return Ok(());
    }
    let measured = |b: &str| card.measurements.current(b).map(|e| e.component_sha256);
    for (backend, want) in required {
        let got = measured(backend);
        if got != Some(*want) {
            return Err(CardRejected::ComponentMismatch {
                backend: backend.clone(),
                required: *want,
                measured: got,
            });
        }
    }
    if let Some(b) = card
        .backends
        .iter()
        .find(|b| b.enabled && !required.contains_key(&b.name))
    {
        return Err(CardRejected::ComponentNotRequired {
            backend: b.name.clone(),
            measured: measured(&b.name),
        });
    }
    Ok(())
}
