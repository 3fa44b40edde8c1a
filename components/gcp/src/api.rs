//! Compute Engine REST v1: the requests the backend sends, the parts of the
//! answers it reads, and what its errors mean.
//!
//! Reference: <https://cloud.google.com/compute/docs/reference/rest/v1>
//! (`instances.insert`, `instances.get`, `instances.delete`,
//! `instances.list`, `zoneOperations.wait`) and the error catalogue of
//! <https://cloud.google.com/compute/docs/troubleshooting/troubleshooting-vm-creation>.

use std::collections::BTreeMap;

use cb_cloud::EXIT_UNKNOWN;
use cb_cloud::allocation::Allocation;
use cb_cloud::tags::TagNames;
use compute_bridge_sdk::http::{Request, Response, url_encode};
use compute_bridge_sdk::{BackendError, InstanceState};
use rsa::sha2::{Digest, Sha256};
use serde::{Deserialize, Serialize};

/// Label keys the backend puts on every instance. Label values are
/// [`label_value`]s: the request label holds the id's label-safe form, the
/// exact id is in the [`REQUEST_ID_METADATA`] item.
pub const LABELS: TagNames = TagNames::GCP;

/// Metadata key holding the exact request id.
pub const REQUEST_ID_METADATA: &str = "cb-request-id";

/// Where the API lives and which project it acts in.
#[derive(Debug, Clone, Copy)]
pub struct Api<'a> {
    /// `https://compute.googleapis.com` (no trailing slash).
    pub base: &'a str,
    /// Project id.
    pub project: &'a str,
}

impl Api<'_> {
    fn zone_url(&self, zone: &str) -> String {
        format!(
            "{}/compute/v1/projects/{}/zones/{}",
            self.base,
            url_encode(self.project),
            url_encode(zone)
        )
    }

    /// `instances.insert`.
    pub fn insert(&self, zone: &str, body: &serde_json::Value) -> Request {
        Request::post(format!("{}/instances", self.zone_url(zone))).json(body)
    }

    /// `instances.get`.
    pub fn get(&self, zone: &str, name: &str) -> Request {
        Request::get(format!(
            "{}/instances/{}",
            self.zone_url(zone),
            url_encode(name)
        ))
    }

    /// `instances.delete`.
    pub fn delete(&self, zone: &str, name: &str) -> Request {
        Request::delete(format!(
            "{}/instances/{}",
            self.zone_url(zone),
            url_encode(name)
        ))
    }

    /// `instances.list` in one zone with a filter, one page.
    pub fn list(&self, zone: &str, filter: &str, page_token: Option<&str>) -> Request {
        let mut url = format!(
            "{}/instances?filter={}&maxResults=500",
            self.zone_url(zone),
            url_encode(filter)
        );
        if let Some(t) = page_token {
            url.push_str(&format!("&pageToken={}", url_encode(t)));
        }
        Request::get(url)
    }

    /// `instances.aggregatedList`: every zone of the project at once, with
    /// a filter, one page. `returnPartialSuccess` so that a zone that does
    /// not answer is named in `unreachables` instead of failing the call.
    pub fn aggregated_list(&self, filter: &str, page_token: Option<&str>) -> Request {
        let mut url = format!(
            "{}/compute/v1/projects/{}/aggregated/instances?filter={}&maxResults=500\
             &returnPartialSuccess=true",
            self.base,
            url_encode(self.project),
            url_encode(filter)
        );
        if let Some(t) = page_token {
            url.push_str(&format!("&pageToken={}", url_encode(t)));
        }
        Request::get(url)
    }

    /// `zoneOperations.wait`: returns when the operation is `DONE` or after
    /// about two minutes, whichever is first.
    pub fn wait(&self, zone: &str, operation: &str) -> Request {
        Request::post(format!(
            "{}/operations/{}/wait",
            self.zone_url(zone),
            url_encode(operation)
        ))
    }
}

/// What an instance is created from.
#[derive(Debug, Clone)]
pub struct InstanceSpec<'a> {
    /// Instance name.
    pub name: &'a str,
    /// Zone.
    pub zone: &'a str,
    /// Machine type name.
    pub machine_type: &'a str,
    /// TDX Confidential VM.
    pub tdx: bool,
    /// Boot image.
    pub image: &'a str,
    /// Boot disk size, GB.
    pub disk_gb: u32,
    /// Network.
    pub network: &'a str,
    /// Subnetwork, if any.
    pub subnetwork: Option<&'a str>,
    /// Network tags.
    pub tags: &'a [String],
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The exact request id (metadata).
    pub request_id: &'a str,
    /// The first-boot script.
    pub startup_script: &'a str,
}

/// The `Instance` resource for `instances.insert`.
///
/// TDX: `confidentialInstanceConfig.confidentialInstanceType = "TDX"` with
/// `scheduling.onHostMaintenance = "TERMINATE"` (a confidential VM cannot
/// live-migrate); C3 needs a balanced or SSD persistent disk, never
/// `pd-standard`, so the boot disk is `pd-balanced`.
pub fn instance_body(s: &InstanceSpec<'_>) -> serde_json::Value {
    let mut nic = serde_json::json!({
        "network": s.network,
        "accessConfigs": [{ "type": "ONE_TO_ONE_NAT", "name": "External NAT" }],
    });
    if let Some(sub) = s.subnetwork {
        nic["subnetwork"] = sub.into();
    }
    let mut body = serde_json::json!({
        "name": s.name,
        "machineType": format!("zones/{}/machineTypes/{}", s.zone, s.machine_type),
        "labels": s.labels,
        "metadata": { "items": [
            { "key": "startup-script", "value": s.startup_script },
            { "key": REQUEST_ID_METADATA, "value": s.request_id },
        ]},
        "disks": [{
            "boot": true,
            "autoDelete": true,
            "type": "PERSISTENT",
            "initializeParams": {
                "sourceImage": s.image,
                "diskSizeGb": s.disk_gb.to_string(),
                "diskType": format!("zones/{}/diskTypes/pd-balanced", s.zone),
            },
        }],
        "networkInterfaces": [nic],
    });
    if !s.tags.is_empty() {
        body["tags"] = serde_json::json!({ "items": s.tags });
    }
    if s.tdx {
        body["confidentialInstanceConfig"] =
            serde_json::json!({ "confidentialInstanceType": "TDX" });
        body["scheduling"] =
            serde_json::json!({ "onHostMaintenance": "TERMINATE", "automaticRestart": false });
    }
    body
}

/// The instance name for a grant: `cb-` and 16 hex digits of
/// SHA-256(provider id `/` request id), so a valid name
/// (`[a-z]([-a-z0-9]*[a-z0-9])?`, 19 characters). It carries nothing the
/// requester chose: the name reaches the operator's log (a failed
/// `terminate`, the orphan sweep), which never names a request. The same
/// grant always gets the same name (a repeated provision finds its
/// instance instead of making a second); two grants get the same one with
/// odds of 2^-64.
pub fn instance_name(provider_id: &str, request_id: &str) -> String {
    let digest = Sha256::digest(format!("{provider_id}/{request_id}").as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("cb-{hash}")
}

/// A label value: lower-case letters, digits, `_` and `-`, at most 63.
pub fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if v.is_empty() { "none".into() } else { v }
}

/// The list filter for this provider's instances of this backend.
///
/// The `filter` parameter of `instances.list` and `instances.aggregatedList`
/// (`google/cloud/compute/v1/compute.proto`, `ListInstancesRequest.filter`):
/// several expressions go each in its own parentheses, joined by `AND`
/// (or by nothing, which means `AND`). Without the parentheses the API
/// refuses the filter ("Invalid list filter expression"), so this is
/// `(labels.a = "x") AND (labels.b = "y")`. Label values are
/// [`label_value`]s: nothing in them needs quoting.
pub fn list_filter(provider_id: &str, backend: &str) -> String {
    conjunction(&[
        (LABELS.provider, label_value(provider_id)),
        (LABELS.backend, label_value(backend)),
    ])
}

/// The list filter for the instances one grant may have made: this
/// provider's, of this backend, for this request (its label form; the
/// caller still checks the name, which the exact request id decides).
pub fn request_filter(provider_id: &str, backend: &str, request_id: &str) -> String {
    conjunction(&[
        (LABELS.provider, label_value(provider_id)),
        (LABELS.backend, label_value(backend)),
        (LABELS.request, label_value(request_id)),
    ])
}

fn conjunction(terms: &[(&str, String)]) -> String {
    terms
        .iter()
        .map(|(k, v)| format!("(labels.{k} = \"{v}\")"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// An `Operation` resource (the parts used).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Its name, for `wait`.
    pub name: String,
    /// `PENDING`, `RUNNING` or `DONE`.
    pub status: String,
    /// Set when it failed.
    #[serde(default)]
    pub error: Option<OperationErrors>,
    /// The HTTP status the failure corresponds to.
    #[serde(default)]
    pub http_error_status_code: Option<u16>,
    /// Its text.
    #[serde(default)]
    pub http_error_message: Option<String>,
}

/// `Operation.error`.
#[derive(Debug, Clone, Deserialize)]
pub struct OperationErrors {
    /// The errors.
    #[serde(default)]
    pub errors: Vec<OperationError>,
}

/// One `Operation.error.errors[]` item (`Errors` in compute.proto).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationError {
    /// `ZONE_RESOURCE_POOL_EXHAUSTED`, `QUOTA_EXCEEDED`, ...
    #[serde(default)]
    pub code: String,
    /// Text.
    #[serde(default)]
    pub message: String,
    /// Structured details (`ErrorDetails`): the `errorInfo` of a stockout
    /// says `reason: resource_availability`.
    #[serde(default)]
    pub error_details: Vec<ErrorDetail>,
}

/// One `ErrorDetails` item (the part used).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// `ErrorInfo`.
    #[serde(default)]
    pub error_info: Option<ErrorInfo>,
}

/// `ErrorInfo` (the part used).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorInfo {
    /// `resource_availability` for a zone's stockout.
    #[serde(default)]
    pub reason: String,
}

/// A refused call or a failed operation, classified: the error the fleet
/// acts on, and whether it is a stockout of one zone (so another zone of
/// the same region may still have room). The table in the crate docs
/// ("Capacity and errors") lists every code and what it becomes.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// What goes back to the host.
    pub error: BackendError,
    /// The zone had no room for this machine type: worth another zone of
    /// the region before answering `no-capacity`.
    pub zonal: bool,
}

impl From<BackendError> for Refusal {
    /// A refusal that another zone would not change.
    fn from(error: BackendError) -> Self {
        Self {
            error,
            zonal: false,
        }
    }
}

impl Refusal {
    fn stockout(error: BackendError) -> Self {
        Self { error, zonal: true }
    }
}

/// Operation error codes that mean the zone has no room for the request
/// (<https://cloud.google.com/compute/docs/resource-error>: "A resource
/// availability error occurs when a zone doesn't have enough available
/// capacity"). `RESOURCE_POOL_EXHAUSTED` is not named in that page or in
/// compute.proto; it is reported by users for the same condition and
/// treated alike.
pub const STOCKOUT_CODES: &[&str] = &[
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    "RESOURCE_POOL_EXHAUSTED",
];

/// Operation error codes for a project quota: no room in this region (or
/// everywhere) for this project, which another zone of the region does not
/// change (<https://cloud.google.com/docs/quotas/troubleshoot>: Compute
/// Engine answers an exceeded quota with `QUOTA_EXCEEDED`).
pub const QUOTA_CODES: &[&str] = &["QUOTA_EXCEEDED"];

/// Operation error codes for a rate limit: try again later
/// (<https://cloud.google.com/compute/api-quota>, and the operation-rate
/// limit of <https://cloud.google.com/compute/docs/troubleshooting/troubleshoot-operation-limits>).
pub const RATE_CODES: &[&str] = &["RATE_LIMIT_EXCEEDED", "RESOURCE_OPERATION_RATE_EXCEEDED"];

impl Operation {
    /// True once it finished (successfully or not).
    pub fn done(&self) -> bool {
        self.status == "DONE"
    }

    /// Its failure, classified; `None` if it did not fail.
    pub fn failure(&self) -> Option<BackendError> {
        self.refusal().map(|r| r.error)
    }

    /// Its failure, classified with its scope; `None` if it did not fail.
    pub fn refusal(&self) -> Option<Refusal> {
        let errors = &self.error.as_ref()?.errors;
        let text = errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let text = if text.is_empty() {
            self.http_error_message.clone().unwrap_or_default()
        } else {
            text
        };
        let has = |codes: &[&str]| errors.iter().any(|e| codes.contains(&e.code.as_str()));
        let stockout = has(STOCKOUT_CODES)
            || errors.iter().any(|e| {
                e.message.contains("STOCKOUT")
                    || e.error_details.iter().any(|d| {
                        d.error_info
                            .as_ref()
                            .is_some_and(|i| i.reason == "resource_availability")
                    })
            });
        let what = format!("Compute Engine: {text}");
        Some(if stockout {
            Refusal::stockout(BackendError::no_capacity(what))
        } else if has(QUOTA_CODES) {
            Refusal::from(BackendError::no_capacity(what))
        } else if has(RATE_CODES) {
            Refusal::from(BackendError::transient(what))
        } else {
            Refusal::from(classify_status(
                self.http_error_status_code.unwrap_or(0),
                &text,
            ))
        })
    }
}

/// The error body every Compute Engine call returns on failure
/// (`{"error": {"code", "message", "errors": [{"reason", ...}], "status"}}`).
#[derive(Debug, Clone, Default, Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
}

/// The `reason`s of an error response (empty if it is not one).
pub fn error_reasons(resp: &Response) -> Vec<String> {
    serde_json::from_slice::<ErrorBody>(&resp.body)
        .map(|b| b.error.errors.into_iter().map(|e| e.reason).collect())
        .unwrap_or_default()
}

/// A failed response, classified (see [`refusal`]).
pub fn api_error(resp: &Response) -> BackendError {
    refusal(resp).error
}

/// A failed response, classified with its scope: a stockout of the zone →
/// `no-capacity` (zonal); a project quota (403 `quotaExceeded`) →
/// `no-capacity`; rate limits (403 `rateLimitExceeded`, any 429) and 5xx →
/// `transient`; 401/403 and refused settings → `config`; the rest
/// `internal`.
pub fn refusal(resp: &Response) -> Refusal {
    let body: ErrorBody = serde_json::from_slice(&resp.body).unwrap_or_default();
    let reasons: Vec<&str> = body
        .error
        .errors
        .iter()
        .map(|e| e.reason.as_str())
        .collect();
    let message = if body.error.message.is_empty() {
        resp.text().chars().take(300).collect()
    } else {
        body.error.message.clone()
    };
    let text = format!("HTTP {}: {message}", resp.status);
    let what = format!("Compute Engine: {text}");
    let has = |r: &[&str]| reasons.iter().any(|x| r.contains(x));
    // Rate limits first: a 429 is a rate quota whatever its reason
    // (<https://cloud.google.com/docs/quotas/troubleshoot>), and a 403
    // `rateLimitExceeded` is one too (<https://cloud.google.com/compute/api-quota>).
    if resp.status == 429 || has(&["rateLimitExceeded", "userRateLimitExceeded"]) {
        return Refusal::from(BackendError::transient(what));
    }
    // 503 `insufficientCapacity`: "the region or zone you tried to create
    // VMs in has insufficient capacity"
    // (<https://cloud.google.com/compute/docs/troubleshooting/troubleshooting-bulk-vm-creation>).
    if has(&["insufficientCapacity"])
        || STOCKOUT_CODES.iter().any(|c| message.contains(c))
        || message.contains("STOCKOUT")
    {
        return Refusal::stockout(BackendError::no_capacity(what));
    }
    if has(&["quotaExceeded"]) {
        return Refusal::from(BackendError::no_capacity(what));
    }
    Refusal::from(classify_status(resp.status, &text))
}

fn classify_status(status: u16, text: &str) -> BackendError {
    match status {
        429 | 500..=599 => BackendError::transient(format!("Compute Engine: {text}")),
        401 => BackendError::config(format!(
            "Compute Engine refused the token of the account in `service_account_key`: {text}"
        )),
        403 => BackendError::config(format!(
            "the account in `service_account_key` may not do this in `project`: {text}"
        )),
        400 | 404 => BackendError::config(format!(
            "Compute Engine refused a setting (check `project`, `image`, `network`, \
             `subnetworks` and `machine_types`): {text}"
        )),
        _ => BackendError::internal(format!("Compute Engine: {text}")),
    }
}

/// An `Instance` resource (the parts used).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GceInstance {
    /// Name.
    pub name: String,
    /// `Instance.Status` (see [`GceInstance::state`]).
    #[serde(default)]
    pub status: String,
    /// Full or partial URL of its machine type.
    #[serde(default)]
    pub machine_type: String,
    /// Zone URL.
    #[serde(default)]
    pub zone: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// NICs.
    #[serde(default)]
    pub network_interfaces: Vec<Nic>,
    /// RFC 3339.
    #[serde(default)]
    pub creation_timestamp: String,
    /// RFC 3339, set once it stopped.
    #[serde(default)]
    pub last_stop_timestamp: Option<String>,
}

/// A network interface.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nic {
    /// External access.
    #[serde(default)]
    pub access_configs: Vec<AccessConfig>,
}

/// An access config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessConfig {
    /// The external IPv4 address.
    #[serde(default, rename = "natIP")]
    pub nat_ip: Option<String>,
}

impl GceInstance {
    /// Its external IPv4 address, once assigned.
    pub fn external_ip(&self) -> Option<&str> {
        self.network_interfaces
            .iter()
            .flat_map(|n| &n.access_configs)
            .find_map(|a| a.nat_ip.as_deref())
            .filter(|ip| !ip.is_empty())
    }

    /// Its machine type's name (the URL's last segment).
    pub fn machine_type_name(&self) -> &str {
        self.machine_type.rsplit('/').next().unwrap_or("")
    }

    /// Its zone's name.
    pub fn zone_name(&self) -> &str {
        self.zone.rsplit('/').next().unwrap_or("")
    }

    /// The workload's state, from the VM's `status`.
    ///
    /// Every value of `Instance.Status` in
    /// `google/cloud/compute/v1/compute.proto` (googleapis/googleapis), with
    /// the proto's own words for it:
    ///
    /// | status | proto | state |
    /// |---|---|---|
    /// | `PENDING` | Flex Start: waiting for capacity from the Dynamic Workload Scheduler | starting |
    /// | `PROVISIONING` | resources are being allocated | starting |
    /// | `STAGING` | resources allocated, the instance is being started | starting |
    /// | `RUNNING` | the instance is running | running |
    /// | `REPAIRING` | the instance is in repair | starting (not reachable now; it comes back `RUNNING` or stops) |
    /// | `PENDING_STOP` | the instance is gracefully shutting down | exited |
    /// | `STOPPING` | the instance is stopping (being deleted or killed) | exited |
    /// | `STOPPED` | the instance has stopped successfully | exited |
    /// | `SUSPENDING` | the instance is suspending | exited |
    /// | `SUSPENDED` | the instance has suspended | exited |
    /// | `TERMINATED` | stopped, by explicit action or underlying failure | exited |
    /// | `DEPROVISIONING` | halted; tear-down tasks (network, quota, IP, disks) under way | exited |
    /// | `UNDEFINED_STATUS` / absent / a value newer than this table | the field is not set | starting (the watcher keeps looking, and the grant ends at its `valid_to` at the latest) |
    ///
    /// "Exited" is `exited(-1)`: the VM went down, which is how the
    /// workload's end shows (the startup script powers the VM off when the
    /// container exits); the cloud cannot tell the container's exit code. A
    /// suspended VM runs no workload, so it is over too.
    pub fn state(&self) -> InstanceState {
        match self.status.as_str() {
            "RUNNING" => InstanceState::Running,
            "PENDING" | "PROVISIONING" | "STAGING" | "REPAIRING" => InstanceState::Starting,
            "PENDING_STOP" | "STOPPING" | "STOPPED" | "SUSPENDING" | "SUSPENDED" | "TERMINATED"
            | "DEPROVISIONING" => InstanceState::Exited(EXIT_UNKNOWN),
            _ => InstanceState::Starting,
        }
    }

    /// When it stopped, if it did (unix seconds).
    pub fn stopped_at(&self) -> Option<u64> {
        if !matches!(self.state(), InstanceState::Exited(_)) {
            return None;
        }
        self.last_stop_timestamp
            .as_deref()
            .and_then(compute_bridge_sdk::time::unix_from_rfc3339)
    }
}

/// `instances.list`'s answer (`items` is absent when there are none).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceList {
    /// This page.
    #[serde(default)]
    pub items: Vec<GceInstance>,
    /// The next page's token.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `instances.aggregatedList`'s answer (`InstanceAggregatedList` in
/// compute.proto): `items` maps a scope (`zones/us-central1-a`) to its
/// instances, or to a warning when it has none; `unreachables` names the
/// scopes that did not answer (with `returnPartialSuccess`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceAggregatedList {
    /// This page, by scope.
    #[serde(default)]
    pub items: BTreeMap<String, InstancesScopedList>,
    /// The next page's token.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// Scopes that could not be listed.
    #[serde(default)]
    pub unreachables: Vec<String>,
}

/// One scope of an aggregated list (`InstancesScopedList`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstancesScopedList {
    /// Its instances (absent when there are none).
    #[serde(default)]
    pub instances: Vec<GceInstance>,
}

/// What the backend keeps in `instance.handle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    /// Project.
    pub project: String,
    /// Zone.
    pub zone: String,
    /// Instance name.
    pub name: String,
    /// Machine type.
    pub machine_type: String,
    /// Its machine type's vCPUs and memory, and when it was created.
    #[serde(flatten)]
    pub allocation: Allocation,
}

impl Handle {
    /// Serialized.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a handle serializes")
    }

    /// Parsed; a handle this backend did not write is `rejected`.
    pub fn decode(s: &str) -> Result<Self, BackendError> {
        serde_json::from_str(s)
            .map_err(|e| BackendError::rejected(format!("not a GCP instance handle: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tdx: bool) -> InstanceSpec<'static> {
        InstanceSpec {
            name: "cb-r1-0a1b2c3d",
            zone: "us-central1-b",
            machine_type: if tdx {
                "c3-standard-4"
            } else {
                "n2-standard-2"
            },
            tdx,
            image: "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
            disk_gb: 20,
            network: "global/networks/default",
            subnetwork: None,
            tags: &[],
            labels: BTreeMap::from([(LABELS.provider.into(), "p1".into())]),
            request_id: "R1",
            startup_script: "#!/bin/sh\ntrue\n",
        }
    }

    #[test]
    fn tdx_instances_carry_the_confidential_config() {
        let b = instance_body(&spec(true));
        assert_eq!(
            b["confidentialInstanceConfig"]["confidentialInstanceType"],
            "TDX"
        );
        assert_eq!(b["scheduling"]["onHostMaintenance"], "TERMINATE");
        assert_eq!(
            b["machineType"],
            "zones/us-central1-b/machineTypes/c3-standard-4"
        );
        assert_eq!(
            b["disks"][0]["initializeParams"]["diskType"],
            "zones/us-central1-b/diskTypes/pd-balanced"
        );
        assert_eq!(b["metadata"]["items"][0]["key"], "startup-script");
        assert_eq!(b["metadata"]["items"][1]["value"], "R1");
        assert_eq!(b["labels"]["cb_provider"], "p1");
        assert_eq!(
            b["networkInterfaces"][0]["accessConfigs"][0]["type"],
            "ONE_TO_ONE_NAT"
        );
        let plain = instance_body(&spec(false));
        assert!(plain.get("confidentialInstanceConfig").is_none());
        assert!(plain.get("scheduling").is_none());
    }

    #[test]
    fn urls_follow_the_reference() {
        let api = Api {
            base: "https://compute.googleapis.com",
            project: "my-project",
        };
        let r = api.insert("us-central1-b", &serde_json::json!({}));
        assert_eq!(
            r.parts().1,
            "https://compute.googleapis.com/compute/v1/projects/my-project/zones/us-central1-b/instances"
        );
        assert_eq!(
            api.wait("us-central1-b", "operation-1").parts().1,
            "https://compute.googleapis.com/compute/v1/projects/my-project/zones/us-central1-b/operations/operation-1/wait"
        );
        let l = api.list("us-central1-b", &list_filter("p1", "gcp"), Some("t2"));
        assert_eq!(
            l.parts().1,
            "https://compute.googleapis.com/compute/v1/projects/my-project/zones/us-central1-b/instances\
             ?filter=%28labels.cb_provider%20%3D%20%22p1%22%29%20AND%20%28labels.cb_backend%20%3D%20%22gcp%22%29\
             &maxResults=500&pageToken=t2"
        );
        let a = api.aggregated_list("(name = x)", None);
        assert_eq!(
            a.parts().1,
            "https://compute.googleapis.com/compute/v1/projects/my-project/aggregated/instances\
             ?filter=%28name%20%3D%20x%29&maxResults=500&returnPartialSuccess=true"
        );
    }

    /// `ListInstancesRequest.filter` in compute.proto: "To filter on
    /// multiple expressions, provide each separate expression within
    /// parentheses"; the API refuses `a = "x" AND b = "y"`.
    #[test]
    fn list_filters_put_each_expression_in_parentheses() {
        assert_eq!(
            list_filter("Prov 1", "gcp"),
            r#"(labels.cb_provider = "prov-1") AND (labels.cb_backend = "gcp")"#
        );
        assert_eq!(
            request_filter("p1", "gcp", "Grant/42"),
            r#"(labels.cb_provider = "p1") AND (labels.cb_backend = "gcp") AND (labels.cb_request = "grant-42")"#
        );
    }

    /// Every value of `Instance.Status` in compute.proto, deliberately.
    #[test]
    fn every_instance_status_of_the_proto_has_its_state() {
        let exited = InstanceState::Exited(EXIT_UNKNOWN);
        for (status, want) in [
            ("UNDEFINED_STATUS", InstanceState::Starting),
            ("DEPROVISIONING", exited),
            ("PENDING", InstanceState::Starting),
            ("PENDING_STOP", exited),
            ("PROVISIONING", InstanceState::Starting),
            ("REPAIRING", InstanceState::Starting),
            ("RUNNING", InstanceState::Running),
            ("STAGING", InstanceState::Starting),
            ("STOPPED", exited),
            ("STOPPING", exited),
            ("SUSPENDED", exited),
            ("SUSPENDING", exited),
            ("TERMINATED", exited),
            ("", InstanceState::Starting),
        ] {
            let i = GceInstance {
                status: status.into(),
                ..GceInstance::default()
            };
            assert_eq!(i.state(), want, "{status}");
        }
    }

    #[test]
    fn names_are_valid_stable_and_distinct() {
        let valid = |n: &str| {
            n.len() <= 63
                && n.starts_with(|c: char| c.is_ascii_lowercase())
                && !n.ends_with('-')
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        let a = instance_name("p1", "Grant/42 é!");
        assert!(valid(&a), "{a}");
        // Nothing of the request id, which the requester chose.
        assert_eq!(a.len(), 19, "{a}");
        assert!(!a.contains("grant") && !a.contains("42"), "{a}");
        assert_eq!(a, instance_name("p1", "Grant/42 é!"));
        assert_ne!(a, instance_name("p2", "Grant/42 é!"));
        assert_ne!(instance_name("p1", "a.b"), instance_name("p1", "a-b"));
        assert!(valid(&instance_name("p1", &"x".repeat(500))));
        assert!(valid(&instance_name("p1", "////")));
    }

    #[test]
    fn operation_errors_are_classified() {
        let op = |code: &str, http: u16| -> Operation {
            serde_json::from_value(serde_json::json!({
                "name": "op", "status": "DONE",
                "error": {"errors": [{"code": code, "message": "m"}]},
                "httpErrorStatusCode": http,
            }))
            .unwrap()
        };
        assert!(matches!(
            op("ZONE_RESOURCE_POOL_EXHAUSTED", 503).failure(),
            Some(BackendError::NoCapacity(_))
        ));
        assert!(matches!(
            op("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", 503).failure(),
            Some(BackendError::NoCapacity(_))
        ));
        assert!(matches!(
            op("QUOTA_EXCEEDED", 403).failure(),
            Some(BackendError::NoCapacity(_))
        ));
        assert!(matches!(
            op("RESOURCE_OPERATION_RATE_EXCEEDED", 403).failure(),
            Some(BackendError::Transient(_))
        ));
        assert!(matches!(
            op("INTERNAL_ERROR", 500).failure(),
            Some(BackendError::Transient(_))
        ));
        assert!(matches!(
            op("RESOURCE_NOT_FOUND", 404).failure(),
            Some(BackendError::Config(_))
        ));
        let ok: Operation =
            serde_json::from_value(serde_json::json!({"name": "op", "status": "DONE"})).unwrap();
        assert!(ok.done() && ok.failure().is_none());
    }

    /// A stockout is worth another zone of the region; a quota or a rate
    /// limit is not.
    #[test]
    fn stockouts_are_zonal_and_quotas_are_not() {
        let op = |v: serde_json::Value| -> Refusal {
            let op: Operation = serde_json::from_value(serde_json::json!({
                "name": "op", "status": "DONE", "error": {"errors": [v]},
                "httpErrorStatusCode": 503,
            }))
            .unwrap();
            op.refusal().unwrap()
        };
        for code in STOCKOUT_CODES {
            let r = op(serde_json::json!({"code": code, "message": "m"}));
            assert!(
                r.zonal && matches!(r.error, BackendError::NoCapacity(_)),
                "{code}"
            );
        }
        // A code this table does not know, with the stockout's errorInfo.
        let r = op(serde_json::json!({"code": "SOMETHING_NEW", "message": "m",
            "errorDetails": [{"errorInfo": {"reason": "resource_availability",
                "domain": "compute.googleapis.com"}}]}));
        assert!(r.zonal && matches!(r.error, BackendError::NoCapacity(_)));
        let r = op(
            serde_json::json!({"code": "QUOTA_EXCEEDED", "message": "Quota 'C3_CPUS' exceeded.",
            "errorDetails": [{"quotaInfo": {"limitName": "C3-CPUS-per-project-region",
                "dimensions": {"region": "us-central1"}}}]}),
        );
        assert!(!r.zonal && matches!(r.error, BackendError::NoCapacity(_)));
        let r = op(serde_json::json!({"code": "RESOURCE_OPERATION_RATE_EXCEEDED", "message": "m"}));
        assert!(!r.zonal && matches!(r.error, BackendError::Transient(_)));

        let http = |status: u16, reason: &str, message: &str| {
            refusal(&Response::new(
                status,
                serde_json::json!({"error": {"code": status, "message": message,
                    "errors": [{"message": message, "domain": "global", "reason": reason}]}})
                .to_string(),
            ))
        };
        let r = http(503, "insufficientCapacity", "m");
        assert!(r.zonal && matches!(r.error, BackendError::NoCapacity(_)));
        let r = http(
            503,
            "backendError",
            "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS: The zone does not have enough resources",
        );
        assert!(r.zonal && matches!(r.error, BackendError::NoCapacity(_)));
        let r = http(403, "quotaExceeded", "Quota 'C3_CPUS' exceeded.");
        assert!(!r.zonal && matches!(r.error, BackendError::NoCapacity(_)));
        // A 429 is a rate quota (requests per minute), whatever its reason.
        let r = http(429, "", "Quota exceeded for quota metric 'Read requests'");
        assert!(!r.zonal && matches!(r.error, BackendError::Transient(_)));
    }

    #[test]
    fn http_errors_are_classified() {
        let error = |code: u16, reason: &str, status: &str| {
            Response::new(
                code,
                format!(
                    r#"{{"error":{{"code":{code},"message":"m","errors":[{{"message":"m","domain":"usageLimits","reason":"{reason}"}}],"status":"{status}"}}}}"#
                ),
            )
        };
        let kind = |r: Response| match api_error(&r) {
            BackendError::NoCapacity(_) => "no-capacity",
            BackendError::Transient(_) => "transient",
            BackendError::Config(_) => "config",
            BackendError::Rejected(_) => "rejected",
            BackendError::Internal(_) => "internal",
        };
        assert_eq!(
            kind(error(403, "quotaExceeded", "PERMISSION_DENIED")),
            "no-capacity"
        );
        assert_eq!(
            kind(error(403, "rateLimitExceeded", "PERMISSION_DENIED")),
            "transient"
        );
        assert_eq!(
            kind(error(429, "rateLimitExceeded", "RESOURCE_EXHAUSTED")),
            "transient"
        );
        assert_eq!(kind(error(503, "backendError", "UNAVAILABLE")), "transient");
        assert_eq!(kind(error(401, "authError", "UNAUTHENTICATED")), "config");
        assert_eq!(kind(error(403, "forbidden", "PERMISSION_DENIED")), "config");
        assert_eq!(kind(error(400, "invalid", "INVALID_ARGUMENT")), "config");
        assert_eq!(
            kind(Response::new(502, "<html>bad gateway</html>")),
            "transient"
        );
        let e = api_error(&error(401, "authError", "UNAUTHENTICATED"));
        assert!(e.message().contains("`service_account_key`"));
    }

    #[test]
    fn instances_are_read_and_mapped() {
        let i: GceInstance = serde_json::from_value(serde_json::json!({
            "name": "cb-x", "status": "TERMINATED",
            "machineType": "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-b/machineTypes/c3-standard-4",
            "zone": "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-b",
            "networkInterfaces": [{"accessConfigs": [{"natIP": "203.0.113.7"}]}],
            "creationTimestamp": "2024-02-29T04:00:00.000-08:00",
            "lastStopTimestamp": "2024-02-29T05:00:00.000-08:00",
        }))
        .unwrap();
        assert_eq!(i.external_ip(), Some("203.0.113.7"));
        assert_eq!(i.machine_type_name(), "c3-standard-4");
        assert_eq!(i.zone_name(), "us-central1-b");
        assert_eq!(i.state(), InstanceState::Exited(EXIT_UNKNOWN));
        assert_eq!(i.stopped_at(), Some(1_709_211_600));
        let running = GceInstance {
            status: "RUNNING".into(),
            ..i.clone()
        };
        assert_eq!(running.state(), InstanceState::Running);
        assert_eq!(running.stopped_at(), None);
        let staging = GceInstance {
            status: "STAGING".into(),
            ..i
        };
        assert_eq!(staging.state(), InstanceState::Starting);
    }

    #[test]
    fn a_handle_round_trips_with_its_allocation_beside_its_fields() {
        use cb_cloud::allocation::testing::{ALLOCATION, assert_allocation_flattened_last};
        let h = Handle {
            project: "p".into(),
            zone: "z".into(),
            name: "n".into(),
            machine_type: "c3-standard-4".into(),
            allocation: ALLOCATION,
        };
        let json = h.encode();
        assert_allocation_flattened_last(&json);
        assert_eq!(Handle::decode(&json).unwrap(), h);
        assert!(matches!(
            Handle::decode("{}"),
            Err(BackendError::Rejected(_))
        ));
    }
}
