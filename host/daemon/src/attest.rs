//! TDX attestation of the provider card, the provider's half: it takes a
//! quote whose report data binds the card's identity ([`Attester`], over a
//! [`QuoteSource`]: the kernel's configfs-tsm, or emulated TDX in tests).
//!
//! The requester's half — verifying a card, the report data's layout
//! ([`CardIdentity`]), the trust rules — is the coalition floor's
//! ([`compute_bridge_coalition::attest`]); this file uses it and names none
//! of it again.

use std::fmt;
use std::sync::Arc;

use compute_bridge_coalition::attest::{CardIdentity, Measurements, parse_quote};
use compute_bridge_contract::measurement::Measurement;

/// Where the kernel's configfs-tsm report interface lives.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// Why the provider could not take a quote.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// No configfs-tsm interface: not a TDX guest, or a kernel without it.
    #[error(
        "this machine has no TDX quote interface: \
         {TSM_REPORT_DIR} does not exist (it needs a TDX guest with Linux 6.7 or later and \
         configfs mounted on /sys/kernel/config). To run without TDX, set \
         `[attestation] mode = \"none\"` in the boot config: the card, dashboard and \
         /snapshot.json then say attestation is off."
    )]
    TsmMissing,
    /// The interface is there but the quote failed.
    #[error("taking a TDX quote through {TSM_REPORT_DIR} failed: {0}")]
    Tsm(String),
    /// The platform's quote is not one the bridge can read.
    #[error("the platform's TDX quote is unusable: {0}")]
    Unusable(String),
}

/// Where quotes come from: the kernel in production ([`ConfigfsTsm`]), a
/// test's mock otherwise.
pub trait QuoteSource: Send + Sync {
    /// A raw quote over `report_data`.
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError>;
}

/// The kernel's configfs-tsm interface (`/sys/kernel/config/tsm/report`),
/// checked to be a `tdx_guest` provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigfsTsm;

impl QuoteSource for ConfigfsTsm {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        if !std::path::Path::new(TSM_REPORT_DIR).is_dir() {
            return Err(QuoteError::TsmMissing);
        }
        configfs_tsm::create_tdx_quote(report_data).map_err(|e| match e {
            configfs_tsm::QuoteGenerationError::CannotFindTsmDir => QuoteError::TsmMissing,
            e => QuoteError::Tsm(e.to_string()),
        })
    }
}

/// Emulated TDX for tests (`COMPUTE_BRIDGE_EMULATED_RTMR3`, see
/// [`crate::measure`]): `tdx-quote`'s mock quote (every register zero, no
/// certificate chain, signed by a fixed test attestation key) with RTMR3
/// set to the emulated register's value and signed again over header and
/// body (tdx-quote 0.0.5 `src/mock.rs`: the attestation key signs bytes
/// `[..48 + 584]`). Requesters refuse these quotes unless they accept
/// untrusted chains (`--allow-untrusted-quote-chain`), so they cannot pass
/// for a real TD.
#[derive(Debug, Clone)]
pub struct EmulatedTdx {
    /// The register the quotes carry as RTMR3.
    pub rtmr3: Arc<dyn crate::measure::MeasurementRegister>,
}

impl EmulatedTdx {
    /// The fixed test attestation key.
    const AK: [u8; 32] = [0x11; 32];
    /// The fixed test "PCK" signing the QE report.
    const PCK: [u8; 32] = [0x22; 32];
}

impl QuoteSource for EmulatedTdx {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        use p256::ecdsa::signature::Signer;
        let rtmr3 = self
            .rtmr3
            .read()
            .map_err(|e| QuoteError::Tsm(e.to_string()))?;
        let key = |b: [u8; 32]| {
            tdx_quote::SigningKey::from_bytes(&b.into()).expect("a fixed valid P-256 key")
        };
        let ak = key(Self::AK);
        let mut q = tdx_quote::Quote::mock(ak.clone(), key(Self::PCK), report_data, Vec::new());
        q.body.rtmr3 = rtmr3.0;
        let signed = q.as_bytes();
        q.signature = ak.sign(&signed[..48 + 584]);
        Ok(q.as_bytes())
    }
}

/// A quote taken for a card, with what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The raw quote, as published in the card.
    pub quote: Vec<u8>,
    /// Its measurements.
    pub measurements: Measurements,
    /// MR_TD against `attestation.expected_mrtd` (`None`: nothing expected).
    pub mrtd_ok: Option<bool>,
}

/// Takes quotes for the card and checks MR_TD against the expected value.
#[derive(Clone)]
pub struct Attester {
    source: Arc<dyn QuoteSource>,
    expected_mrtd: Option<Measurement>,
}

impl fmt::Debug for Attester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attester")
            .field("expected_mrtd", &self.expected_mrtd)
            .finish_non_exhaustive()
    }
}

impl Attester {
    /// An attester over `source`.
    pub fn new(source: Arc<dyn QuoteSource>, expected_mrtd: Option<Measurement>) -> Self {
        Self {
            source,
            expected_mrtd,
        }
    }

    /// A fresh quote bound to `identity`. Blocking (file I/O into the
    /// kernel): call it off the async runtime's threads.
    pub fn attest(&self, identity: &CardIdentity) -> Result<Attested, QuoteError> {
        let report_data = identity.report_data();
        let quote = self.source.quote(report_data)?;
        let parsed = parse_quote(&quote).map_err(QuoteError::Unusable)?;
        if parsed.report_input_data() != report_data {
            return Err(QuoteError::Unusable(
                "its report data is not the report data asked for".into(),
            ));
        }
        let measurements = Measurements::of(&parsed);
        Ok(Attested {
            mrtd_ok: self.expected_mrtd.map(|m| m == measurements.mrtd),
            quote,
            measurements,
        })
    }
}
