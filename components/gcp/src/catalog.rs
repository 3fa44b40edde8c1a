//! The operator's machine-type catalog and the choice of a type and zone
//! for a grant.

pub use cb_cloud::catalog::Want;

/// Machine families on which Compute Engine offers Intel TDX
/// (`confidentialInstanceType = TDX`).
pub const TDX_FAMILIES: &[&str] = &["c3"];

cb_cloud::catalog_entry! {
    /// One machine type the backend may use, and where.
    pub struct MachineType {
        /// Compute Engine name, e.g. `c3-standard-4`.
        name,
        /// Zones it is used in, in order of preference (`us-central1-a`).
        zones,
    }
}

impl MachineType {
    /// Whether the values make sense; a message naming the field if not.
    pub fn validate(&self) -> Result<(), String> {
        let valid_name = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(format!("`name` {:?} is not a machine type name", self.name));
        }
        cb_cloud::catalog::check_sizes(self)?;
        if self.tdx && !TDX_FAMILIES.contains(&family(&self.name)) {
            return Err(format!(
                "`tdx = true` needs a TDX machine family ({}), not {}",
                TDX_FAMILIES.join(", "),
                self.name
            ));
        }
        for z in &self.zones {
            if !is_zone(z) {
                return Err(format!("{z:?} in `zones` is not a zone like us-central1-a"));
            }
        }
        Ok(())
    }
}

/// The family of a machine type name (`c3` for `c3-standard-4`).
pub fn family(name: &str) -> &str {
    name.split('-').next().unwrap_or(name)
}

fn is_zone(z: &str) -> bool {
    let parts: Vec<&str> = z.split('-').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts[2].len() == 1
}

/// Whether `r` looks like a region name (`us-central1`, `europe-west4`).
pub fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts[1].ends_with(|c: char| c.is_ascii_digit())
}

/// The region of a zone (`us-central1` for `us-central1-a`).
pub fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map(|(r, _)| r).unwrap_or(zone)
}

/// Regions the catalog can place in, in first-listed order.
pub fn regions(types: &[MachineType]) -> Vec<String> {
    cb_cloud::catalog::regions(types, region_of)
}

/// True when some TDX type is configured for some zone.
pub fn tdx_capable(types: &[MachineType]) -> bool {
    cb_cloud::catalog::tdx_capable(types)
}

/// A machine type and the zone to create it in.
pub type Choice<'a> = cb_cloud::catalog::Choice<'a, MachineType>;

/// The type and zone for `want` ([`cb_cloud::catalog::pick`]): a grant
/// that names a zone is served there, one that names a region in any of
/// its zones.
pub fn pick<'a>(types: &'a [MachineType], want: Want<'_>) -> Option<Choice<'a>> {
    cb_cloud::catalog::pick(types, want, |z, asked| z == asked || region_of(z) == asked)
}

/// The zones to try for `choice`, in the operator's order: its machine
/// type's zones in the chosen zone's region (only the asked zone when the
/// grant names a zone). The first is `choice.place`. A stockout in one zone
/// moves on to the next; the region is never left (the fleet moves a grant
/// between regions).
pub fn zones_to_try<'a>(choice: Choice<'a>, want: Want<'_>) -> Vec<&'a str> {
    let region = region_of(choice.place);
    choice
        .entry
        .zones
        .iter()
        .map(String::as_str)
        .filter(|z| region_of(z) == region)
        .filter(|z| want.region.is_none_or(|r| *z == r || region_of(z) == r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cb_cloud::catalog::testing::{named, want};
    use compute_bridge_sdk::TdxRequirement;

    fn catalog() -> Vec<MachineType> {
        vec![
            MachineType::test_entry(
                "n2-standard-2",
                2,
                8,
                0.10,
                false,
                &["us-central1-a", "europe-west4-b"],
            ),
            MachineType::test_entry("n2-standard-8", 8, 32, 0.39, false, &["us-central1-a"]),
            MachineType::test_entry(
                "c3-standard-4",
                4,
                16,
                0.21,
                true,
                &["us-central1-b", "europe-west4-c"],
            ),
            MachineType::test_entry("c3-standard-22", 22, 88, 1.15, true, &["us-central1-b"]),
        ]
    }

    fn pick_name(w: Want<'_>) -> Option<(String, String)> {
        named(pick(&catalog(), w))
    }

    #[test]
    fn cheapest_fit_wins() {
        let got = pick_name(want(1500, 4, None, TdxRequirement::None));
        assert_eq!(got, Some(("n2-standard-2".into(), "us-central1-a".into())));
        let got = pick_name(want(3000, 12, None, TdxRequirement::None));
        assert_eq!(got, Some(("c3-standard-4".into(), "us-central1-b".into())));
    }

    #[test]
    fn tdx_required_only_takes_tdx_types() {
        let got = pick_name(want(500, 1, None, TdxRequirement::Required));
        assert_eq!(got, Some(("c3-standard-4".into(), "us-central1-b".into())));
        let got = pick_name(want(8000, 32, None, TdxRequirement::Required));
        assert_eq!(got, Some(("c3-standard-22".into(), "us-central1-b".into())));
        assert_eq!(
            pick_name(want(64_000, 32, None, TdxRequirement::Required)),
            None
        );
    }

    #[test]
    fn tdx_preferred_takes_tdx_when_it_fits_and_anything_otherwise() {
        let got = pick_name(want(500, 1, None, TdxRequirement::Preferred));
        assert_eq!(got.unwrap().0, "c3-standard-4");
        let got = pick_name(want(
            500,
            1,
            Some("us-central1-a"),
            TdxRequirement::Preferred,
        ));
        assert_eq!(got.unwrap().0, "n2-standard-2");
    }

    #[test]
    fn region_or_zone_narrows_the_choice() {
        let got = pick_name(want(500, 1, Some("europe-west4"), TdxRequirement::Required));
        assert_eq!(got, Some(("c3-standard-4".into(), "europe-west4-c".into())));
        let got = pick_name(want(500, 1, Some("europe-west4-b"), TdxRequirement::None));
        assert_eq!(got, Some(("n2-standard-2".into(), "europe-west4-b".into())));
        assert_eq!(
            pick_name(want(500, 1, Some("asia-east1"), TdxRequirement::None)),
            None
        );
    }

    #[test]
    fn the_zones_tried_stay_in_the_region_of_the_choice() {
        let c = vec![MachineType::test_entry(
            "c3-standard-4",
            4,
            16,
            0.2,
            true,
            &[
                "us-central1-b",
                "europe-west4-c",
                "us-central1-f",
                "europe-west4-a",
            ],
        )];
        let zones = |w: Want<'_>| zones_to_try(pick(&c, w).unwrap(), w);
        assert_eq!(
            zones(want(500, 1, None, TdxRequirement::None)),
            ["us-central1-b", "us-central1-f"]
        );
        assert_eq!(
            zones(want(500, 1, Some("europe-west4"), TdxRequirement::None)),
            ["europe-west4-c", "europe-west4-a"]
        );
        // A grant that names a zone gets that zone only.
        assert_eq!(
            zones(want(500, 1, Some("us-central1-f"), TdxRequirement::None)),
            ["us-central1-f"]
        );
        assert!(is_region("us-central1") && is_region("northamerica-northeast1"));
        assert!(!is_region("us-central1-a") && !is_region("US-central1") && !is_region("eu"));
    }

    #[test]
    fn offer_follows_the_catalog() {
        let c = catalog();
        assert_eq!(regions(&c), vec!["us-central1", "europe-west4"]);
        assert!(tdx_capable(&c));
        let plain: Vec<MachineType> = c.iter().filter(|t| !t.tdx).cloned().collect();
        assert!(!tdx_capable(&plain));
        // A TDX type with no zone offers no TDX.
        let nowhere = vec![MachineType::test_entry(
            "c3-standard-4",
            4,
            16,
            0.2,
            true,
            &[],
        )];
        assert!(!tdx_capable(&nowhere));
    }

    #[test]
    fn validation_refuses_tdx_outside_c3_and_bad_zones() {
        assert!(
            MachineType::test_entry("n2-standard-2", 2, 8, 0.1, true, &["us-central1-a"])
                .validate()
                .is_err()
        );
        assert!(
            MachineType::test_entry("c3-standard-4", 4, 16, 0.2, true, &["us-central1"])
                .validate()
                .is_err()
        );
        assert!(
            MachineType::test_entry("c3-standard-4", 4, 16, 0.2, true, &["us-central1-a"])
                .validate()
                .is_ok()
        );
    }
}
