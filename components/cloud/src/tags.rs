//! The tags (Azure) or labels (GCP) a backend puts on every resource it
//! creates, and finds its resources by: the same four, which each cloud
//! spells its own way ([`TagNames::AZURE`], [`TagNames::GCP`]). Names
//! only: what a value may hold is the cloud's rule, applied by its backend.

use std::collections::BTreeMap;

/// The names of the four tags, by what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagNames {
    /// The bridge's provider id.
    pub provider: &'static str,
    /// The grant's request id.
    pub request: &'static str,
    /// The backend's name in the boot config.
    pub backend: &'static str,
    /// The workload's login.
    pub user: &'static str,
}

impl TagNames {
    /// Azure's tag names.
    pub const AZURE: Self = Self {
        provider: "cb-provider",
        request: "cb-request",
        backend: "cb-backend",
        user: "cb-user",
    };

    /// Compute Engine's label keys.
    pub const GCP: Self = Self {
        provider: "cb_provider",
        request: "cb_request",
        backend: "cb_backend",
        user: "cb_user",
    };

    /// The four tags with these values, as a resource carries them.
    pub fn map(
        &self,
        provider: String,
        request: String,
        backend: String,
        user: String,
    ) -> BTreeMap<String, String> {
        BTreeMap::from([
            (self.provider.to_string(), provider),
            (self.request.to_string(), request),
            (self.backend.to_string(), backend),
            (self.user.to_string(), user),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_goes_under_its_own_name() {
        let m = TagNames::GCP.map("p".into(), "r".into(), "b".into(), "u".into());
        let pairs: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("cb_backend", "b"),
                ("cb_provider", "p"),
                ("cb_request", "r"),
                ("cb_user", "u")
            ]
        );
    }
}
