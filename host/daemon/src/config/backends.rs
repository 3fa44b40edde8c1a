//! How a `[[backends]]` entry is read: the bridge's own keys (`name`,
//! `component`, the limits, `sweep_orphans`) and, for every other key, the
//! capability whose section it is ([`Sections::take`]), so this file names
//! no capability. Not `#[serde(flatten)]`: serde cannot flatten with
//! `deny_unknown_fields`, and buffering the sections would lose the line
//! and column of their errors. An unknown key is refused while its name is
//! read, so the error points at the key, as the derived reader's did.
//! Keeps nothing.

use std::fmt;
use std::sync::LazyLock;

use compute_bridge_sandbox::Sections;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::BackendConfig;

/// The bridge's own keys of a `[[backends]]` entry.
const OWN: &[&str] = &[
    "name",
    "component",
    "enabled",
    "memory_limit_mib",
    "call_timeout_sec",
    "capabilities_timeout_sec",
    "can_satisfy_timeout_sec",
    "max_concurrent_calls",
    "sweep_orphans",
];

/// Every key a `[[backends]]` entry accepts: its own, then the capability
/// sections in list order (the "expected one of" of an unknown key).
static FIELDS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| OWN.iter().chain(Sections::KEYS).copied().collect());

/// Reads one key, refusing a key no one owns.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field identifier")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if OWN.contains(&key) || Sections::KEYS.contains(&key) {
            Ok(key.to_string())
        } else {
            Err(E::unknown_field(key, FIELDS.as_slice()))
        }
    }
}

impl<'de> serde::Deserialize<'de> for BackendConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("BackendConfig", FIELDS.as_slice(), Entry)
    }
}

struct Entry;

impl<'de> Visitor<'de> for Entry {
    type Value = BackendConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct BackendConfig")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BackendConfig, A::Error> {
        let mut name = None;
        let mut component = None;
        let mut b = BackendConfig {
            name: String::new(),
            component: String::new(),
            enabled: super::yes(),
            memory_limit_mib: super::default_memory(),
            call_timeout_sec: super::default_call_timeout(),
            capabilities_timeout_sec: super::default_capabilities_timeout(),
            can_satisfy_timeout_sec: super::default_can_satisfy_timeout(),
            max_concurrent_calls: None,
            sweep_orphans: false,
            sections: Sections::default(),
        };
        while let Some(key) = map.next_key_seed(Key)? {
            match key.as_str() {
                "name" => name = Some(map.next_value()?),
                "component" => component = Some(map.next_value()?),
                "enabled" => b.enabled = map.next_value()?,
                "memory_limit_mib" => b.memory_limit_mib = map.next_value()?,
                "call_timeout_sec" => b.call_timeout_sec = map.next_value()?,
                "capabilities_timeout_sec" => b.capabilities_timeout_sec = map.next_value()?,
                "can_satisfy_timeout_sec" => b.can_satisfy_timeout_sec = map.next_value()?,
                "max_concurrent_calls" => b.max_concurrent_calls = map.next_value()?,
                "sweep_orphans" => b.sweep_orphans = map.next_value()?,
                section => {
                    if !b.sections.take(section, &mut map)? {
                        return Err(de::Error::unknown_field(section, FIELDS.as_slice()));
                    }
                }
            }
        }
        b.name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        b.component = component.ok_or_else(|| de::Error::missing_field("component"))?;
        Ok(b)
    }
}
