//! The operator's VM-size catalog and the choice of a size and region for a
//! grant.

pub use cb_cloud::catalog::Want;

cb_cloud::catalog_entry! {
    /// One VM size the backend may use, and where.
    pub struct VmSize {
        /// Azure size name, e.g. `Standard_DC4es_v5`.
        name,
        /// Regions it is used in, in order of preference (`eastus`).
        regions,
    }
}

/// True for the Intel TDX confidential sizes: the DCesv5/ECesv5 families
/// (and their `eds` and v6 siblings), `Standard_<DC|EC><n>e[d]s_v<5|6>`.
/// The AMD SEV-SNP sizes (`DCas`, `ECads`, ...) are not TDX.
pub fn is_tdx_size(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("standard_") else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("dc").or_else(|| rest.strip_prefix("ec")) else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let Some((features, version)) = rest[digits..].split_once('_') else {
        return false;
    };
    matches!(features, "es" | "eds") && matches!(version, "v5" | "v6")
}

impl VmSize {
    /// Whether the values make sense; a message naming the field if not.
    pub fn validate(&self) -> Result<(), String> {
        if !self.name.starts_with("Standard_")
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "`name` {:?} is not a VM size (Standard_...)",
                self.name
            ));
        }
        cb_cloud::catalog::check_sizes(self)?;
        if self.tdx && !is_tdx_size(&self.name) {
            return Err(format!(
                "`tdx = true` needs a TDX confidential size (DCesv5/ECesv5 family), not {}",
                self.name
            ));
        }
        for r in &self.regions {
            if !is_region_name(r) {
                return Err(format!(
                    "{r:?} in `regions` is not a region name like eastus"
                ));
            }
        }
        Ok(())
    }
}

/// A region's programmatic name: lower-case letters and digits
/// (`eastus`, `westeurope`, `eastus2`).
pub fn is_region_name(r: &str) -> bool {
    !r.is_empty()
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Regions the catalog can place in, in first-listed order.
pub fn regions(sizes: &[VmSize]) -> Vec<String> {
    cb_cloud::catalog::regions(sizes, |r| r)
}

/// True when some TDX size is configured for some region.
pub fn tdx_capable(sizes: &[VmSize]) -> bool {
    cb_cloud::catalog::tdx_capable(sizes)
}

/// A size and the region to create it in.
pub type Choice<'a> = cb_cloud::catalog::Choice<'a, VmSize>;

/// The size and region for `want` ([`cb_cloud::catalog::pick`]): a grant
/// that names a region is served only there.
pub fn pick<'a>(sizes: &'a [VmSize], want: Want<'_>) -> Option<Choice<'a>> {
    cb_cloud::catalog::pick(sizes, want, |r, asked| r == asked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cb_cloud::catalog::testing::{named, want};
    use compute_bridge_sdk::TdxRequirement;

    fn catalog() -> Vec<VmSize> {
        vec![
            VmSize::test_entry(
                "Standard_D2s_v5",
                2,
                8,
                0.096,
                false,
                &["eastus", "westeurope"],
            ),
            VmSize::test_entry("Standard_DC2es_v5", 2, 8, 0.12, true, &["westeurope"]),
            VmSize::test_entry(
                "Standard_DC4es_v5",
                4,
                16,
                0.23,
                true,
                &["eastus", "westeurope"],
            ),
            VmSize::test_entry("Standard_EC8es_v5", 8, 64, 0.62, true, &["eastus"]),
        ]
    }

    fn pick_name(w: Want<'_>) -> Option<(String, String)> {
        named(pick(&catalog(), w))
    }

    #[test]
    fn tdx_sizes_are_recognised() {
        for yes in [
            "Standard_DC2es_v5",
            "Standard_EC64es_v5",
            "Standard_DC4eds_v5",
            "standard_dc8es_v6",
        ] {
            assert!(is_tdx_size(yes), "{yes}");
        }
        for no in [
            "Standard_DC4as_v5",
            "Standard_EC4ads_v5",
            "Standard_D4s_v5",
            "Standard_DCs_v5",
            "DC4es_v5",
            "Standard_DC4es",
        ] {
            assert!(!is_tdx_size(no), "{no}");
        }
    }

    #[test]
    fn choice_follows_size_region_and_tdx() {
        assert_eq!(
            pick_name(want(1000, 4, None, TdxRequirement::None)),
            Some(("Standard_D2s_v5".into(), "eastus".into()))
        );
        assert_eq!(
            pick_name(want(1000, 4, None, TdxRequirement::Required)),
            Some(("Standard_DC2es_v5".into(), "westeurope".into()))
        );
        assert_eq!(
            pick_name(want(1000, 4, Some("eastus"), TdxRequirement::Required)),
            Some(("Standard_DC4es_v5".into(), "eastus".into()))
        );
        assert_eq!(
            pick_name(want(1000, 4, None, TdxRequirement::Preferred))
                .unwrap()
                .0,
            "Standard_DC2es_v5"
        );
        assert_eq!(
            pick_name(want(6000, 32, None, TdxRequirement::Required))
                .unwrap()
                .0,
            "Standard_EC8es_v5"
        );
        assert_eq!(
            pick_name(want(16_000, 32, None, TdxRequirement::Required)),
            None
        );
        assert_eq!(
            pick_name(want(1000, 4, Some("japaneast"), TdxRequirement::None)),
            None
        );
    }

    #[test]
    fn offer_and_validation() {
        let c = catalog();
        assert_eq!(regions(&c), vec!["eastus", "westeurope"]);
        assert!(tdx_capable(&c));
        assert!(!tdx_capable(&[VmSize::test_entry(
            "Standard_D2s_v5",
            2,
            8,
            0.1,
            false,
            &["eastus"]
        )]));
        assert!(!tdx_capable(&[VmSize::test_entry(
            "Standard_DC2es_v5",
            2,
            8,
            0.1,
            true,
            &[]
        )]));
        assert!(
            VmSize::test_entry("Standard_D2s_v5", 2, 8, 0.1, true, &["eastus"])
                .validate()
                .is_err()
        );
        assert!(
            VmSize::test_entry("Standard_DC2es_v5", 2, 8, 0.1, true, &["East US"])
                .validate()
                .is_err()
        );
        assert!(
            VmSize::test_entry("Standard_DC2es_v5", 2, 8, 0.1, true, &["eastus"])
                .validate()
                .is_ok()
        );
    }
}
