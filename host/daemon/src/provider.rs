//! The provider loop, now in [`crate::grant`] (split by concern; issue 18):
//! re-exported at its old path until the re-cut's last move.

pub use crate::grant::*;
