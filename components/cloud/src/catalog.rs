//! Choosing from the operator's catalog: among the entries big enough for
//! a grant, offered where it asks, and TDX if it requires it, the cheapest
//! (TDX first when the grant prefers it; then fewer vCPUs, then less
//! memory, then catalog order), at its first matching place.
//!
//! An entry's *places* are where the cloud creates it: zones for GCP
//! (`us-central1-a`), regions for Azure (`westeurope`). Which places match
//! a grant's region, and the region of a place, are the cloud's rules,
//! passed in.
//!
//! The fields every cloud's entry has, as the operator writes them, are
//! declared once ([`catalog_entry!`](crate::catalog_entry)), with the
//! checks of their sizes ([`check_sizes`]); what a valid name or place is
//! stays the cloud's.

use compute_bridge_sdk::{GrantSpec, TdxRequirement};

/// One catalog entry, as the choice sees it.
pub trait Entry {
    /// Its name in the cloud's API (`c3-standard-4`, `Standard_DC4es_v5`).
    fn name(&self) -> &str;
    /// vCPUs.
    fn cpus(&self) -> u32;
    /// Memory, MiB.
    fn ram_mib(&self) -> u32;
    /// Price per hour, USD (only compared).
    fn usd_per_hour(&self) -> f64;
    /// Whether it is a TDX confidential VM.
    fn tdx(&self) -> bool;
    /// Where it can be created, in the operator's order.
    fn places(&self) -> &[String];
}

/// Define a catalog entry struct and implement [`Entry`] for it: the
/// fields every entry has (`name`, `cpus`, `ram_mib`, `usd_per_hour`,
/// `tdx`, in that order) and its places in the named field, read from the
/// operator's config (serde, unknown fields refused; the invoking crate
/// depends on `serde`). The struct's docs, and those of `name` and the
/// places, are the invoker's:
///
/// ```text
/// cb_cloud::catalog_entry! {
///     /// One machine type the backend may use, and where.
///     pub struct MachineType {
///         /// Compute Engine name, e.g. `c3-standard-4`.
///         name,
///         /// Zones it is used in, in order of preference.
///         zones,
///     }
/// }
/// ```
///
/// In the crate's unit tests (`cfg(test)`) the struct also gets
/// `test_entry(name, cpus, ram_gib, usd_per_hour, tdx, places)`, an entry
/// with `ram_gib` GiB of memory, for the tests' catalogs.
#[macro_export]
macro_rules! catalog_entry {
    (
        $(#[$meta:meta])*
        pub struct $ty:ident {
            $(#[$name_meta:meta])*
            name,
            $(#[$places_meta:meta])*
            $places:ident,
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $ty {
            $(#[$name_meta])*
            pub name: String,
            /// vCPUs.
            pub cpus: u32,
            /// Memory, MiB.
            pub ram_mib: u32,
            /// What the operator pays per hour (for picking the cheapest fit).
            #[serde(default)]
            pub usd_per_hour: f64,
            /// Created as a TDX confidential VM.
            #[serde(default)]
            pub tdx: bool,
            $(#[$places_meta])*
            pub $places: Vec<String>,
        }

        impl $crate::catalog::Entry for $ty {
            fn name(&self) -> &str {
                &self.name
            }
            fn cpus(&self) -> u32 {
                self.cpus
            }
            fn ram_mib(&self) -> u32 {
                self.ram_mib
            }
            fn usd_per_hour(&self) -> f64 {
                self.usd_per_hour
            }
            fn tdx(&self) -> bool {
                self.tdx
            }
            fn places(&self) -> &[String] {
                &self.$places
            }
        }

        #[cfg(test)]
        impl $ty {
            /// A catalog entry for a test: `ram_gib` GiB of memory.
            pub fn test_entry(
                name: &str,
                cpus: u32,
                ram_gib: u32,
                usd_per_hour: f64,
                tdx: bool,
                places: &[&str],
            ) -> Self {
                Self {
                    name: name.to_string(),
                    cpus,
                    ram_mib: ram_gib * 1024,
                    usd_per_hour,
                    tdx,
                    $places: places.iter().map(|p| p.to_string()).collect(),
                }
            }
        }
    };
}

/// The checks of the fields every entry has: `cpus` and `ram_mib` above
/// zero, `usd_per_hour` a non-negative number; a message naming the field
/// if not.
pub fn check_sizes(e: &impl Entry) -> Result<(), String> {
    if e.cpus() == 0 || e.ram_mib() == 0 {
        return Err("`cpus` and `ram_mib` must be above zero".into());
    }
    if !(e.usd_per_hour() >= 0.0 && e.usd_per_hour().is_finite()) {
        return Err("`usd_per_hour` must be a non-negative number".into());
    }
    Ok(())
}

/// What a grant asks for, as the catalog sees it.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// CPU, millicores.
    pub cpu_millicores: u32,
    /// Memory, MiB.
    pub ram_mib: u32,
    /// The region (or, for GCP, zone) the grant names, if any.
    pub region: Option<&'a str>,
    /// TDX requirement.
    pub tdx: TdxRequirement,
}

impl<'a> Want<'a> {
    /// What `grant` asks for.
    pub fn of(grant: &'a GrantSpec) -> Self {
        Self {
            cpu_millicores: grant.cpu_millicores,
            ram_mib: grant.ram_mib,
            region: grant.region.as_deref(),
            tdx: grant.tdx,
        }
    }
}

/// An entry and the place to create it.
#[derive(Debug)]
pub struct Choice<'a, E> {
    /// The entry.
    pub entry: &'a E,
    /// The place (zone or region).
    pub place: &'a str,
}

impl<E> Clone for Choice<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Choice<'_, E> {}
impl<E: PartialEq> PartialEq for Choice<'_, E> {
    fn eq(&self, other: &Self) -> bool {
        self.entry == other.entry && self.place == other.place
    }
}

/// The entry and place for `want`: see the module docs. `matches(place,
/// asked)` says whether `place` serves a grant that asks for region
/// `asked`. `None` if nothing fits.
pub fn pick<'a, E: Entry>(
    entries: &'a [E],
    want: Want<'_>,
    matches: impl Fn(&str, &str) -> bool,
) -> Option<Choice<'a, E>> {
    let place_ok = |p: &str| want.region.is_none_or(|asked| matches(p, asked));
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            u64::from(e.cpus()) * 1000 >= u64::from(want.cpu_millicores)
                && e.ram_mib() >= want.ram_mib
                && (e.tdx() || want.tdx != TdxRequirement::Required)
        })
        .filter_map(|(i, e)| {
            e.places()
                .iter()
                .find(|p| place_ok(p))
                .map(|p| (i, Choice { entry: e, place: p }))
        })
        .min_by(|(ia, a), (ib, b)| {
            let prefer_tdx = want.tdx == TdxRequirement::Preferred;
            let rank = |c: &Choice<'_, E>| u8::from(prefer_tdx && !c.entry.tdx());
            rank(a)
                .cmp(&rank(b))
                .then(a.entry.usd_per_hour().total_cmp(&b.entry.usd_per_hour()))
                .then(a.entry.cpus().cmp(&b.entry.cpus()))
                .then(a.entry.ram_mib().cmp(&b.entry.ram_mib()))
                .then(ia.cmp(ib))
        })
        .map(|(_, c)| c)
}

/// The regions the catalog can place in, in first-listed order;
/// `region_of` maps a place to its region.
pub fn regions<E: Entry>(entries: &[E], region_of: impl Fn(&str) -> &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in entries.iter().flat_map(Entry::places) {
        let r = region_of(p);
        if !out.iter().any(|x| x == r) {
            out.push(r.to_string());
        }
    }
    out
}

/// True when some TDX entry is configured for some place.
pub fn tdx_capable<E: Entry>(entries: &[E]) -> bool {
    entries.iter().any(|e| e.tdx() && !e.places().is_empty())
}

/// What the backends' catalog tests share (the feature `testing`, which
/// only their dev-dependencies turn on).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::{Choice, Entry, Want};
    use compute_bridge_sdk::TdxRequirement;

    /// What a grant of `cpu_millicores` and `ram_gib` GiB asks for.
    pub fn want(
        cpu_millicores: u32,
        ram_gib: u32,
        region: Option<&str>,
        tdx: TdxRequirement,
    ) -> Want<'_> {
        Want {
            cpu_millicores,
            ram_mib: ram_gib * 1024,
            region,
            tdx,
        }
    }

    /// A choice as (entry name, place).
    pub fn named<E: Entry>(choice: Option<Choice<'_, E>>) -> Option<(String, String)> {
        choice.map(|c| (c.entry.name().to_string(), c.place.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::want;
    use super::*;

    crate::catalog_entry! {
        /// A test entry.
        pub struct E {
            /// Its name.
            name,
            /// Its places.
            sites,
        }
    }

    fn same(p: &str, asked: &str) -> bool {
        p == asked
    }

    fn catalog() -> Vec<E> {
        vec![
            E::test_entry("small", 2, 8, 0.10, false, &["east", "west"]),
            E::test_entry("small-tdx", 2, 8, 0.12, true, &["west"]),
            E::test_entry("big-tdx", 4, 16, 0.23, true, &["east", "west"]),
            E::test_entry("cheap-big", 4, 16, 0.05, false, &[]),
        ]
    }

    #[test]
    fn the_cheapest_fit_wins_and_tdx_only_when_asked() {
        let c = catalog();
        let pick = |w| pick(&c, w, same).map(|ch| (ch.entry.name(), ch.place));
        assert_eq!(
            pick(want(1000, 4, None, TdxRequirement::None)),
            Some(("small", "east"))
        );
        assert_eq!(
            pick(want(1000, 4, None, TdxRequirement::Preferred)),
            Some(("small-tdx", "west"))
        );
        assert_eq!(
            pick(want(3000, 4, Some("east"), TdxRequirement::Required)),
            Some(("big-tdx", "east"))
        );
        assert_eq!(
            pick(want(3000, 4, None, TdxRequirement::None)),
            Some(("big-tdx", "east")),
            "an entry with no place is never chosen"
        );
        assert_eq!(pick(want(8000, 4, None, TdxRequirement::None)), None);
        assert_eq!(
            pick(want(1000, 4, Some("north"), TdxRequirement::None)),
            None
        );
    }

    #[test]
    fn regions_keep_first_listed_order_and_tdx_needs_a_place() {
        let c = catalog();
        assert_eq!(regions(&c, |p| p), ["east", "west"]);
        assert!(tdx_capable(&c));
        assert!(!tdx_capable(&[E::test_entry("t", 2, 8, 0.1, true, &[])]));
    }

    #[test]
    fn an_entry_is_read_with_defaults_and_its_sizes_checked() {
        let read = |v| serde_json::from_value::<E>(v);
        let e =
            read(serde_json::json!({"name": "n", "cpus": 2, "ram_mib": 1024, "sites": ["east"]}))
                .unwrap();
        assert_eq!(e, E::test_entry("n", 2, 1, 0.0, false, &["east"]));
        assert!(check_sizes(&e).is_ok());
        let unknown =
            serde_json::json!({"name": "n", "cpus": 2, "ram_mib": 1024, "sites": [], "gpu": 1});
        assert!(read(unknown).is_err(), "unknown fields are refused");
        let zero = E::test_entry("n", 0, 1, 0.1, false, &[]);
        assert_eq!(
            check_sizes(&zero).unwrap_err(),
            "`cpus` and `ram_mib` must be above zero"
        );
        let priceless = E::test_entry("n", 1, 1, f64::NAN, false, &[]);
        assert_eq!(
            check_sizes(&priceless).unwrap_err(),
            "`usd_per_hour` must be a non-negative number"
        );
    }
}
