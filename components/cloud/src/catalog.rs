//! Choosing from the operator's catalog: among the entries big enough for
//! a grant, offered where it asks, and TDX if it requires it, the cheapest
//! (TDX first when the grant prefers it; then fewer vCPUs, then less
//! memory, then catalog order), at its first matching place.
//!
//! An entry's *places* are where the cloud creates it: zones for GCP
//! (`us-central1-a`), regions for Azure (`westeurope`). Which places match
//! a grant's region, and the region of a place, are the cloud's rules,
//! passed in.

use compute_bridge_sdk::{GrantSpec, TdxRequirement};

/// One catalog entry, as the choice sees it.
pub trait Entry {
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

/// Implement [`Entry`] for a catalog struct with the fields `cpus`,
/// `ram_mib`, `usd_per_hour` and `tdx`, and its places in the named field
/// (`cb_cloud::catalog_entry!(MachineType, zones)`).
#[macro_export]
macro_rules! catalog_entry {
    ($ty:ty, $places:ident) => {
        impl $crate::catalog::Entry for $ty {
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
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct E {
        name: &'static str,
        cpus: u32,
        ram_mib: u32,
        usd_per_hour: f64,
        tdx: bool,
        sites: Vec<String>,
    }

    crate::catalog_entry!(E, sites);

    fn e(name: &'static str, cpus: u32, gib: u32, usd: f64, tdx: bool, places: &[&str]) -> E {
        E {
            name,
            cpus,
            ram_mib: gib * 1024,
            usd_per_hour: usd,
            tdx,
            sites: places.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn want(cpu: u32, gib: u32, region: Option<&str>, tdx: TdxRequirement) -> Want<'_> {
        Want {
            cpu_millicores: cpu,
            ram_mib: gib * 1024,
            region,
            tdx,
        }
    }

    fn same(p: &str, asked: &str) -> bool {
        p == asked
    }

    fn catalog() -> Vec<E> {
        vec![
            e("small", 2, 8, 0.10, false, &["east", "west"]),
            e("small-tdx", 2, 8, 0.12, true, &["west"]),
            e("big-tdx", 4, 16, 0.23, true, &["east", "west"]),
            e("cheap-big", 4, 16, 0.05, false, &[]),
        ]
    }

    #[test]
    fn the_cheapest_fit_wins_and_tdx_only_when_asked() {
        let c = catalog();
        let pick = |w| pick(&c, w, same).map(|ch| (ch.entry.name, ch.place));
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
        assert!(!tdx_capable(&[e("t", 2, 8, 0.1, true, &[])]));
    }
}
