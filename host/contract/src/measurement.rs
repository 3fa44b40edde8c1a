//! A TDX measurement register (MR_TD or an RTMR) as the config, the card
//! check and `compute-bridge attest` name it. Keeps nothing.

use std::fmt;
use std::str::FromStr;

/// A 48-byte TDX measurement register (MR_TD or an RTMR), shown as 96 hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measurement(pub [u8; 48]);

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({self})")
    }
}

impl FromStr for Measurement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        hex::decode(s.trim())
            .ok()
            .and_then(|b| <[u8; 48]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not a measurement (48 bytes: 96 hex digits)"))
    }
}
