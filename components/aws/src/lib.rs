//! The AWS EC2 backend (work in progress).

pub mod sigv4;
pub mod utc;
