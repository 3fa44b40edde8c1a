//! A fake of the Azure APIs the Azure backend uses, on 127.0.0.1: the
//! Microsoft identity platform's token endpoint (client credentials) and
//! Azure Resource Manager for public IP addresses, network interfaces,
//! virtual machines and (read only) the virtual networks and network
//! security groups an operator creates beforehand, with long-running
//! operations.
//!
//! It is a model of the published API, written from the specifications, not
//! from the backend: every rule below names the text it follows. The
//! specifications are `Azure/azure-rest-api-specs`, read at
//! `specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/virtualMachine.json`
//! (and `.../Microsoft.Compute/common-types/v1/common.json`),
//! `specification/network/resource-manager/Microsoft.Network/stable/2024-05-01/`
//! `networkInterface.json`, `publicIpAddress.json`, `virtualNetwork.json`
//! (errors in `network.json#/definitions/CloudError`), and the Microsoft
//! Learn pages named at each rule.
//!
//! **Regions.** The account has regions ([`AzureAccount::locations`]); each
//! holds one virtual network, `bridge-<region>` with a subnet `default`,
//! and one network security group, `allow-ssh-<region>`. A subnet belongs
//! to its virtual network, and so to that network's region.
//!
//! What it refuses, and why (each with ARM's error body
//! `{"error": {"code", "message"}}`, the `CloudError` of the specs):
//! - No bearer token, an unknown or an expired one: 401
//!   `AuthenticationFailed`, `InvalidAuthenticationToken`,
//!   `ExpiredAuthenticationToken`
//!   (<https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/common-deployment-errors>).
//! - `api-version` missing (400 `MissingApiVersionParameter`) or not one
//!   the provider serves (400 `NoRegisteredProviderFound`): the
//!   `ApiVersionParameter` of both specs is `"required": true`; the codes
//!   are those of
//!   <https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-register-resource-provider>.
//!   The lists of versions here are a subset of the real ones.
//! - A subscription or resource group that does not exist: 404
//!   `SubscriptionNotFound`, `ResourceGroupNotFound` (common-deployment-errors).
//! - A create without `location` (400 `LocationRequired`; Compute's
//!   `Resource` lists `location` as required) or in a region the account
//!   does not have (400 `LocationNotAvailableForResourceType`).
//! - A NIC whose subnet, public address or security group is in another
//!   region than the NIC, or does not exist: 400 `InvalidResourceReference`
//!   "... was not found. Please make sure that the referenced resource
//!   exists, and that both resources are in the same region." (the rule:
//!   "Each NIC must be connected to a virtual network that exists in the
//!   same Azure location and subscription as the NIC",
//!   <https://learn.microsoft.com/en-us/previous-versions/azure/virtual-network/network-overview>;
//!   the answer's shape as ARM gives it, quoted in Azure/azure-cli#332 and
//!   MicrosoftLearning/AZ-103-MicrosoftAzureAdministrator#91).
//! - A VM whose NIC is in another region than the VM: "Each NIC attached to
//!   a VM must exist in the same location and subscription as the VM" (the
//!   same page). **The spec does not give ARM's code for this refusal**;
//!   the fake answers 400 `InvalidParameter`, a guess to confirm with a real
//!   account.
//! - A Standard public address that is not Static (400
//!   `StandardSkuPublicIPAddressesMustBeStatic`,
//!   <https://learn.microsoft.com/en-us/azure/virtual-network/ip-services/public-ip-addresses#sku>).
//! - More public addresses in a region than the subscription's limit there
//!   (400 `PublicIPCountLimitReached`, "Cannot create more than N public IP
//!   addresses for this subscription in this region."; the limit is per
//!   region and subscription:
//!   <https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/azure-subscription-service-limits#networking-limits>,
//!   the answer as quoted in
//!   <https://learn.microsoft.com/en-us/azure/databricks/kb/clusters/azure-ip-limit>).
//!   Off unless a test sets a limit ([`AzureFake::set_public_ip_limit`]).
//! - VM bodies Azure refuses: an unknown size, a missing image field, an SSH
//!   key path other than the admin's `authorized_keys`, `customData` not
//!   base64 (<https://learn.microsoft.com/en-us/rest/api/compute/virtual-machines/create-or-update>);
//!   a DCesv5/ECesv5 size not created as `ConfidentialVM`, `ConfidentialVM`
//!   on another size, or without vTPM or an OS-disk
//!   `securityEncryptionType`
//!   (<https://learn.microsoft.com/en-us/azure/confidential-computing/confidential-vm-overview>).
//!   **Ambiguous:** whether Azure accepts a confidential-VM *image* (`sku =
//!   "cvm"`) on a non-confidential size is not stated in the spec or on
//!   those pages; the fake accepts it.
//! - A NIC or address still in use cannot be deleted (400 `NicInUse`,
//!   `PublicIPAddressCannotBeDeleted`).
//! - Capacity: the next VM create can be told to fail
//!   ([`AzureFake::fail_next_vm`]), or every VM create in a region
//!   ([`AzureFake::set_region_full`]), with the codes and shapes of
//!   <https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-sku-not-available>,
//!   <https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-resource-quota>,
//!   <https://learn.microsoft.com/en-us/troubleshoot/azure/virtual-machines/windows/allocation-failure>
//!   (`AllocationFailed` arrives as the failed long-running operation).
//!
//! Long-running operations follow
//! <https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/async-operations>:
//! PUTs answer 200/201 with `Azure-AsyncOperation` (both specs mark them
//! `x-ms-long-running-operation`), deletes 202 with `Location` (NICs) or
//! both headers. The monitor URLs are on the host the request was sent to,
//! as ARM's are on `management.azure.com`, so a proxy in front of the fake
//! sees the polls too. Lists page with `nextLink` (`x-ms-pageable`).
//!
//! Client credentials follow
//! <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>
//! (`client_id`, `scope` = `https://management.azure.com/.default`,
//! `client_secret`, `grant_type=client_credentials`; AADSTS errors).
//!
//! Every request that breaks the reference is answered with ARM's error and
//! recorded in [`AzureFake::rejections`]; answers a real account gives to a
//! well-formed request (capacity, quota) are not rejections. Token requests
//! are counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use axum::http::Method;
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use cb_fake_server::{
    Fake, Recorder, Req, TokenCheck, Tokens, empty, json as reply, now_unix, random_token, rfc3339,
};

/// The scope a Resource Manager token is asked for.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// `api-version`s the fake's Compute provider accepts (a subset of the
/// real list).
pub const COMPUTE_VERSIONS: &[&str] = &["2023-09-01", "2024-03-01", "2024-07-01", "2024-11-01"];
/// `api-version`s the fake's Network provider accepts.
pub const NETWORK_VERSIONS: &[&str] = &["2023-11-01", "2024-01-01", "2024-03-01", "2024-05-01"];

/// VM sizes the fake knows: (name, TDX confidential).
pub const SIZES: &[(&str, bool)] = &[
    ("Standard_B2s", false),
    ("Standard_D2s_v5", false),
    ("Standard_D4s_v5", false),
    ("Standard_DC2es_v5", true),
    ("Standard_DC4es_v5", true),
    ("Standard_EC8es_v5", true),
];

/// Credentials and placement the fake accepts.
#[derive(Debug, Clone)]
pub struct AzureAccount {
    /// Tenant id.
    pub tenant_id: String,
    /// App (client) id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group (exists).
    pub resource_group: String,
    /// Regions; each has a virtual network and a security group.
    pub locations: Vec<String>,
}

impl Default for AzureAccount {
    fn default() -> Self {
        Self {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "3fa0c2d1-0c8e-4a52-9d6a-1b2c3d4e5f60".into(),
            client_secret: "fake~Secret.Value_1234567890".into(),
            subscription_id: "11111111-2222-3333-4444-555555555555".into(),
            resource_group: "compute-bridge".into(),
            locations: vec!["eastus".into(), "westeurope".into()],
        }
    }
}

impl AzureAccount {
    fn network_id(&self, rest: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/{rest}",
            self.subscription_id, self.resource_group
        )
    }

    /// The virtual network of `location`.
    pub fn vnet_name(location: &str) -> String {
        format!("bridge-{location}")
    }

    /// The subnet that exists in `location` (in its virtual network).
    pub fn subnet_id(&self, location: &str) -> String {
        self.network_id(&format!(
            "virtualNetworks/{}/subnets/default",
            Self::vnet_name(location)
        ))
    }

    /// The network security group that exists in `location`.
    pub fn nsg_id(&self, location: &str) -> String {
        self.network_id(&format!("networkSecurityGroups/allow-ssh-{location}"))
    }
}

/// A failure the fake can be told to return for a VM create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmFailure {
    /// 409 `SkuNotAvailable` at once.
    SkuNotAvailable,
    /// The operation fails with `AllocationFailed`.
    AllocationFailed,
    /// 409 `OperationNotAllowed`: exceeding the approved cores quota.
    QuotaExceeded,
    /// 429 `TooManyRequests` with `Retry-After`.
    Throttled,
    /// 500 `InternalServerError`.
    InternalError,
}

/// The resources the backend creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Ip,
    Nic,
    Vm,
}

impl Kind {
    fn of(provider: &str, ty: &str) -> Option<Self> {
        // ARM resource provider namespaces and types are case-insensitive.
        match (
            provider.to_ascii_lowercase().as_str(),
            ty.to_ascii_lowercase().as_str(),
        ) {
            ("microsoft.network", "publicipaddresses") => Some(Kind::Ip),
            ("microsoft.network", "networkinterfaces") => Some(Kind::Nic),
            ("microsoft.compute", "virtualmachines") => Some(Kind::Vm),
            _ => None,
        }
    }
    fn provider(self) -> &'static str {
        match self {
            Kind::Vm => "Microsoft.Compute",
            _ => "Microsoft.Network",
        }
    }
    fn ty(self) -> &'static str {
        match self {
            Kind::Ip => "publicIPAddresses",
            Kind::Nic => "networkInterfaces",
            Kind::Vm => "virtualMachines",
        }
    }
    fn version(self) -> &'static str {
        match self {
            Kind::Vm => "2024-07-01",
            _ => "2024-05-01",
        }
    }
}

#[derive(Debug, Clone)]
struct Resource {
    body: Value,
    state: &'static str,
    power: &'static str,
    created: u64,
}

impl Resource {
    fn location(&self) -> &str {
        self.body["location"].as_str().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
enum Effect {
    Provisioned(Kind, String),
    Deleted(Kind, String),
    FailCreate(Kind, String, Value),
}

#[derive(Debug, Clone)]
struct Op {
    effect: Effect,
    polls_left: u32,
    done: bool,
}

struct State {
    /// `http://127.0.0.1:PORT`, for URLs when a request has no `Host`.
    base: String,
    account: AzureAccount,
    tokens: Tokens,
    resources: BTreeMap<(Kind, String), Resource>,
    ops: HashMap<String, Op>,
    next_id: u64,
    polls_per_op: u32,
    retry_after: u64,
    page_size: usize,
    vm_failures: VecDeque<VmFailure>,
    full_regions: BTreeMap<String, VmFailure>,
    public_ip_limits: BTreeMap<String, usize>,
    recorder: Recorder,
    vm_bodies: Vec<Value>,
    nic_bodies: Vec<Value>,
}

/// The fake; stopped on drop.
pub struct AzureFake {
    fake: Fake<State>,
}

cb_fake_server::recorder_accessors!(AzureFake, |f| f.fake.state().recorder);
cb_fake_server::token_accessors!(AzureFake, |f| f.fake.state().tokens, 24);

fn arm_error(code: u16, err: &str, message: &str) -> Response {
    reply(
        code,
        &json!({"error": {"code": err, "message": message}}),
        &[],
    )
}

fn reject(s: &mut State, r: &Req, code: u16, err: &str, message: &str) -> Response {
    s.recorder.reject(r, format_args!("{err}: {message}"));
    arm_error(code, err, message)
}

impl AzureFake {
    /// Start a fake for `account`.
    pub fn start(account: AzureAccount) -> Self {
        let state = State {
            base: String::new(),
            account,
            tokens: Tokens::new("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-", 3599),
            resources: BTreeMap::new(),
            ops: HashMap::new(),
            next_id: 1,
            polls_per_op: 1,
            retry_after: 0,
            page_size: 100,
            vm_failures: VecDeque::new(),
            full_regions: BTreeMap::new(),
            public_ip_limits: BTreeMap::new(),
            recorder: Recorder::new(),
            vm_bodies: Vec::new(),
            nic_bodies: Vec::new(),
        };
        let fake = Fake::start("azure", state, handle);
        fake.state().base = fake.url();
        Self { fake }
    }

    /// `http://127.0.0.1:PORT` (both the login and the management URL).
    pub fn url(&self) -> String {
        self.fake.url()
    }

    /// Its port on 127.0.0.1 (to put a proxy in front).
    pub fn port(&self) -> u16 {
        self.fake.port()
    }

    /// The account it accepts.
    pub fn account(&self) -> AzureAccount {
        self.fake.state().account.clone()
    }

    /// Polls each operation answers `InProgress` (or 202) before it ends.
    pub fn set_polls_per_operation(&self, n: u32) {
        self.fake.state().polls_per_op = n;
    }

    /// The `Retry-After` the fake sends with accepted operations, seconds.
    pub fn set_retry_after(&self, secs: u64) {
        self.fake.state().retry_after = secs;
    }

    /// List pages hold at most `n` items.
    pub fn set_page_size(&self, n: usize) {
        self.fake.state().page_size = n.max(1);
    }

    /// The next VM create (in any region) fails this way.
    pub fn fail_next_vm(&self, f: VmFailure) {
        self.fake.state().vm_failures.push_back(f);
    }

    /// Every VM create in `location` fails this way (a region out of
    /// capacity for every size), until set to `None`.
    pub fn set_region_full(&self, location: &str, f: Option<VmFailure>) {
        let mut s = self.fake.state();
        match f {
            Some(f) => s.full_regions.insert(location.to_string(), f),
            None => s.full_regions.remove(location),
        };
    }

    /// The subscription may hold at most `n` public addresses in
    /// `location`; one more is refused with `PublicIPCountLimitReached`.
    pub fn set_public_ip_limit(&self, location: &str, n: usize) {
        self.fake
            .state()
            .public_ip_limits
            .insert(location.to_string(), n);
    }

    /// Bodies of accepted VM creates.
    pub fn vm_bodies(&self) -> Vec<Value> {
        self.fake.state().vm_bodies.clone()
    }

    /// Bodies of accepted NIC creates.
    pub fn nic_bodies(&self) -> Vec<Value> {
        self.fake.state().nic_bodies.clone()
    }

    /// Resources that exist, as `type/name`.
    pub fn resources(&self) -> Vec<String> {
        self.fake
            .state()
            .resources
            .keys()
            .map(|(k, n)| format!("{}/{n}", k.ty()))
            .collect()
    }

    /// Resources that exist, as `type/name@location`.
    pub fn resources_with_location(&self) -> Vec<String> {
        self.fake
            .state()
            .resources
            .iter()
            .map(|((k, n), r)| format!("{}/{n}@{}", k.ty(), r.location()))
            .collect()
    }

    /// Set a VM's power state (`stopped` as when the guest powered off).
    pub fn set_power_state(&self, vm: &str, power: &'static str) {
        if let Some(r) = self
            .fake
            .state()
            .resources
            .get_mut(&(Kind::Vm, vm.to_string()))
        {
            r.power = power;
        }
    }

    /// Create a VM behind the backend's back with these tags.
    pub fn add_foreign_vm(&self, name: &str, tags: Value) {
        let mut s = self.fake.state();
        let body = json!({"location": "eastus", "tags": tags,
            "properties": {"hardwareProfile": {"vmSize": "Standard_B2s"}}});
        s.resources.insert(
            (Kind::Vm, name.to_string()),
            Resource {
                body,
                state: "Succeeded",
                power: "running",
                created: now_unix(),
            },
        );
    }
}

// --------------------------------------------------------------- routing

/// `http://<Host>`: where the client reached the fake (its monitor and
/// next-page URLs point there, as ARM's point at the host it serves).
fn origin(s: &State, r: &Req) -> String {
    r.header("host")
        .map(|h| format!("http://{h}"))
        .unwrap_or_else(|| s.base.clone())
}

fn handle(state: &Mutex<State>, r: Req) -> Response {
    let mut s = state.lock().unwrap();
    s.recorder.request(&r);
    let seg: Vec<&str> = r.segments.iter().map(String::as_str).collect();
    if let [tenant, "oauth2", "v2.0", "token"] = seg.as_slice() {
        let tenant = tenant.to_string();
        return token(&mut s, &r, &tenant);
    }
    if let Some(resp) = authorize(&mut s, &r) {
        return resp;
    }
    let Some(version) = r.query("api-version").map(str::to_string) else {
        return reject(
            &mut s,
            &r,
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    match seg.as_slice() {
        [
            "subscriptions",
            sub,
            "providers",
            provider,
            "locations",
            _loc,
            "operations",
            id,
        ] => {
            let (sub, provider, id) = (sub.to_string(), provider.to_string(), id.to_string());
            if let Some(resp) = check_scope(&mut s, &r, &sub, None, &provider, &version) {
                return resp;
            }
            poll(&mut s, &id, r.query("monitor").is_some())
        }
        [
            "subscriptions",
            sub,
            "resourceGroups",
            rg,
            "providers",
            provider,
            ty,
            rest @ ..,
        ] => {
            let (sub, rg, provider, ty) = (
                sub.to_string(),
                rg.to_string(),
                provider.to_string(),
                ty.to_string(),
            );
            if let Some(resp) = check_scope(&mut s, &r, &sub, Some(&rg), &provider, &version) {
                return resp;
            }
            if provider.eq_ignore_ascii_case("Microsoft.Network")
                && (ty.eq_ignore_ascii_case("virtualNetworks")
                    || ty.eq_ignore_ascii_case("networkSecurityGroups"))
            {
                return fixture(&mut s, &r, &ty, rest);
            }
            let Some(kind) = Kind::of(&provider, &ty) else {
                return reject(
                    &mut s,
                    &r,
                    404,
                    "InvalidResourceType",
                    &format!(
                        "The resource type '{ty}' could not be found in the namespace '{provider}'."
                    ),
                );
            };
            match (&r.method, rest) {
                (&Method::GET, []) => list(&mut s, &r, kind),
                (&Method::PUT, [name]) => put(&mut s, &r, kind, name),
                (&Method::GET, [name]) => get(&mut s, &r, kind, name),
                (&Method::DELETE, [name]) => delete(&mut s, &r, kind, name),
                _ => reject(&mut s, &r, 405, "MethodNotAllowed", "no such operation"),
            }
        }
        _ => reject(&mut s, &r, 404, "NotFound", "no such path"),
    }
}

/// Subscription, resource group and `api-version` for the provider.
fn check_scope(
    s: &mut State,
    r: &Req,
    sub: &str,
    rg: Option<&str>,
    provider: &str,
    version: &str,
) -> Option<Response> {
    if sub != s.account.subscription_id {
        return Some(arm_error(
            404,
            "SubscriptionNotFound",
            &format!("The subscription '{sub}' could not be found."),
        ));
    }
    // Resource group names are case-insensitive.
    if let Some(rg) = rg
        && !rg.eq_ignore_ascii_case(&s.account.resource_group)
    {
        return Some(arm_error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{rg}' could not be found."),
        ));
    }
    let supported = match provider.to_ascii_lowercase().as_str() {
        "microsoft.compute" => COMPUTE_VERSIONS,
        "microsoft.network" => NETWORK_VERSIONS,
        _ => &[][..],
    };
    if !supported.contains(&version) {
        return Some(reject(
            s,
            r,
            400,
            "NoRegisteredProviderFound",
            &format!(
                "No registered resource provider found for API version '{version}' of namespace '{provider}'. The supported api-versions are '{}'.",
                supported.join(", ")
            ),
        ));
    }
    None
}

fn authorize(s: &mut State, r: &Req) -> Option<Response> {
    let Some(t) = r.bearer() else {
        s.recorder.reject(r, "no bearer token");
        return Some(arm_error(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    match s.tokens.check(t) {
        TokenCheck::Live => None,
        TokenCheck::Expired => {
            s.recorder.reject(r, "expired token");
            Some(arm_error(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            ))
        }
        TokenCheck::Unknown => {
            s.recorder.reject(r, "unknown token");
            Some(arm_error(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ))
        }
    }
}

// ----------------------------------------------------------------- token

fn aad_error(s: &mut State, r: &Req, status: u16, error: &str, code: u64, text: &str) -> Response {
    s.recorder.reject(r, format_args!("{error} AADSTS{code}"));
    reply(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}", random_token(8), random_token(8), rfc3339(now_unix(), 0)),
            "error_codes": [code],
            "timestamp": rfc3339(now_unix(), 0),
            "trace_id": random_token(8),
            "correlation_id": random_token(8),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
        &[],
    )
}

fn token(s: &mut State, r: &Req, tenant: &str) -> Response {
    s.tokens.count_request();
    if r.method != Method::POST || !r.content_type_is("application/x-www-form-urlencoded") {
        return aad_error(
            s,
            r,
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    if tenant != s.account.tenant_id {
        return aad_error(
            s,
            r,
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let form: HashMap<String, String> = r.form().into_iter().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad_error(
            s,
            r,
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if form.get("client_id") != Some(&s.account.client_id) {
        return aad_error(
            s,
            r,
            400,
            "unauthorized_client",
            700016,
            "Application with identifier was not found in the directory.",
        );
    }
    if form.get("scope").map(String::as_str) != Some(ARM_SCOPE) {
        return aad_error(
            s,
            r,
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    if form.get("client_secret") != Some(&s.account.client_secret) {
        return aad_error(
            s,
            r,
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    let token = s.tokens.issue(32);
    let lifetime = s.tokens.lifetime();
    reply(
        200,
        &json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}),
        &[],
    )
}

// -------------------------------------------------- the operator's network

/// The region of the virtual network `name`, if it exists.
fn vnet_location(s: &State, name: &str) -> Option<String> {
    s.account
        .locations
        .iter()
        .find(|l| AzureAccount::vnet_name(l).eq_ignore_ascii_case(name))
        .cloned()
}

/// The region of the security group `name`, if it exists.
fn nsg_location(s: &State, name: &str) -> Option<String> {
    s.account
        .locations
        .iter()
        .find(|l| format!("allow-ssh-{l}").eq_ignore_ascii_case(name))
        .cloned()
}

/// `GET` of a virtual network or security group the operator made
/// (`VirtualNetworks_Get` in virtualNetwork.json, `NetworkSecurityGroups_Get`
/// in networkSecurityGroup.json). The fake does not model creating them.
fn fixture(s: &mut State, r: &Req, ty: &str, rest: &[&str]) -> Response {
    let [name] = rest else {
        return reject(
            s,
            r,
            405,
            "MethodNotAllowed",
            "the fake serves only GET of one virtual network or security group",
        );
    };
    if r.method != Method::GET {
        return reject(
            s,
            r,
            405,
            "MethodNotAllowed",
            "the fake does not model changing the operator's network",
        );
    }
    let a = s.account.clone();
    let vnet = ty.eq_ignore_ascii_case("virtualNetworks");
    let location = if vnet {
        vnet_location(s, name)
    } else {
        nsg_location(s, name)
    };
    let Some(location) = location else {
        let ty = if vnet {
            "virtualNetworks"
        } else {
            "networkSecurityGroups"
        };
        return arm_error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.Network/{ty}/{name}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                a.resource_group
            ),
        );
    };
    let body = if vnet {
        let id = a.network_id(&format!("virtualNetworks/{name}"));
        json!({
            "id": id, "name": name, "type": "Microsoft.Network/virtualNetworks",
            "location": location,
            "properties": {
                "provisioningState": "Succeeded",
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"id": format!("{id}/subnets/default"), "name": "default",
                    "properties": {"addressPrefix": "10.0.0.0/24", "provisioningState": "Succeeded"}}],
            },
        })
    } else {
        json!({
            "id": a.network_id(&format!("networkSecurityGroups/{name}")), "name": name,
            "type": "Microsoft.Network/networkSecurityGroups", "location": location,
            "properties": {"provisioningState": "Succeeded"},
        })
    };
    reply(200, &body, &[])
}

// ------------------------------------------------------------- resources

fn id(s: &State, kind: Kind, name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{name}",
        s.account.subscription_id,
        s.account.resource_group,
        kind.provider(),
        kind.ty()
    )
}

fn name_of_id(s: &State, kind: Kind, id_value: &str) -> Option<String> {
    under(id_value, &id(s, kind, "")).map(str::to_string)
}

fn resource<'a>(s: &'a State, kind: Kind, name: &str) -> Option<&'a Resource> {
    s.resources.get(&(kind, name.to_string()))
}

fn base64_ok(v: &str) -> bool {
    base64::engine::general_purpose::STANDARD.decode(v).is_ok()
}

type Refusal = (&'static str, String);

/// ARM's answer to a reference it cannot resolve in the referrer's region.
fn unresolved(target: &str, referrer: &str) -> Refusal {
    (
        "InvalidResourceReference",
        format!(
            "Resource {target} referenced by resource {referrer} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
        ),
    )
}

/// `id` after `prefix`, compared without case (ARM ids are
/// case-insensitive), if it starts with it and goes on.
fn under<'a>(id: &'a str, prefix: &str) -> Option<&'a str> {
    id.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &id[prefix.len()..])
        .filter(|rest| !rest.is_empty())
}

/// The region of the subnet `subnet_id`, if it names one that exists:
/// `<group>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/default`.
fn subnet_location(s: &State, subnet_id: &str) -> Option<String> {
    let rest = under(subnet_id, &s.account.network_id("virtualNetworks/"))?;
    let (vnet, subnet) = rest.split_once('/')?;
    subnet
        .eq_ignore_ascii_case("subnets/default")
        .then(|| vnet_location(s, vnet))
        .flatten()
}

/// Check a create body; `Err((code, message))` as ARM would answer.
fn check(s: &State, kind: Kind, name: &str, b: &Value) -> Result<(), Refusal> {
    // Compute's `Resource` requires `location` (common-types/v1/common.json);
    // ARM refuses a tracked resource without one (`LocationRequired`).
    let location = b["location"].as_str().ok_or((
        "LocationRequired",
        "The location property is required for this definition.".to_string(),
    ))?;
    if !s.account.locations.iter().any(|l| l == location) {
        return Err((
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{location}' is not available for resource type '{}/{}'.",
                kind.provider(),
                kind.ty()
            ),
        ));
    }
    // `tags`: string values (`additionalProperties: {type: string}`); at
    // most 256 characters a value
    // (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/tag-resources#limitations).
    if let Some(tags) = b.get("tags") {
        let t = tags
            .as_object()
            .ok_or(("InvalidTag", "tags must be an object".to_string()))?;
        if t.values()
            .any(|v| !v.is_string() || v.as_str().unwrap().len() > 256)
        {
            return Err((
                "InvalidTagNameCharacters",
                "tag values are strings of at most 256 characters".into(),
            ));
        }
    }
    let me = id(s, kind, name);
    let p = &b["properties"];
    match kind {
        Kind::Ip => {
            let sku = b["sku"]["name"].as_str().unwrap_or("Basic");
            let method = p["publicIPAllocationMethod"].as_str().unwrap_or("Dynamic");
            if !matches!(sku, "Basic" | "Standard") || !matches!(method, "Static" | "Dynamic") {
                return Err((
                    "InvalidParameter",
                    "sku.name or publicIPAllocationMethod is not valid".into(),
                ));
            }
            if sku == "Standard" && method != "Static" {
                return Err((
                    "StandardSkuPublicIPAddressesMustBeStatic",
                    format!("Standard sku publicIp {me} must have AllocationMethod set to Static."),
                ));
            }
        }
        Kind::Nic => {
            let cfgs = p["ipConfigurations"]
                .as_array()
                .filter(|c| !c.is_empty())
                .ok_or((
                    "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
                    "Network interface must have at least one IP configuration.".to_string(),
                ))?;
            for c in cfgs {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    return Err((
                        "InvalidRequestFormat",
                        "ipConfigurations[].name is required".into(),
                    ));
                }
                // The subnet must exist and its virtual network be in the
                // NIC's region (network-overview: "Each NIC must be
                // connected to a virtual network that exists in the same
                // Azure location ... as the NIC").
                let subnet = c["properties"]["subnet"]["id"].as_str().unwrap_or("");
                if subnet_location(s, subnet).as_deref() != Some(location) {
                    return Err(unresolved(subnet, &me));
                }
                if let Some(ip) = c["properties"]["publicIPAddress"]["id"].as_str() {
                    // A public address is regional too; a reference across
                    // regions is refused the same way.
                    let ip_name = name_of_id(s, Kind::Ip, ip)
                        .filter(|n| {
                            resource(s, Kind::Ip, n).is_some_and(|r| r.location() == location)
                        })
                        .ok_or_else(|| unresolved(ip, &me))?;
                    let used_by_other = s.resources.iter().any(|((k, n), r)| {
                        *k == Kind::Nic
                            && n != name
                            && r.body
                                .to_string()
                                .contains(&format!("/publicIPAddresses/{ip_name}\""))
                    });
                    if used_by_other {
                        return Err((
                            "PublicIPAddressInUse",
                            format!("Resource {ip} is already in use."),
                        ));
                    }
                }
            }
            // A security group in another region: the same refusal, as ARM
            // gives it (Azure/azure-cli#332, #974).
            if let Some(nsg) = p["networkSecurityGroup"]["id"].as_str() {
                let here = under(nsg, &s.account.network_id("networkSecurityGroups/"))
                    .and_then(|name| nsg_location(s, name));
                if here.as_deref() != Some(location) {
                    return Err(unresolved(nsg, &me));
                }
            }
        }
        Kind::Vm => check_vm(s, name, location, b)?,
    }
    Ok(())
}

fn check_vm(s: &State, name: &str, location: &str, b: &Value) -> Result<(), Refusal> {
    let p = &b["properties"];
    let size = p["hardwareProfile"]["vmSize"].as_str().unwrap_or("");
    let Some((_, tdx_size)) = SIZES.iter().find(|(n, _)| *n == size) else {
        return Err((
            "InvalidParameter",
            format!(
                "The value {size} provided for the VM size is not valid. The valid sizes in the current region are: {}.",
                SIZES.iter().map(|s| s.0).collect::<Vec<_>>().join(",")
            ),
        ));
    };
    let image = &p["storageProfile"]["imageReference"];
    for f in ["publisher", "offer", "sku", "version"] {
        if image[f].as_str().is_none_or(str::is_empty) {
            return Err((
                "InvalidParameter",
                format!("Required parameter 'imageReference.{f}' is missing (null)."),
            ));
        }
    }
    let os_disk = &p["storageProfile"]["osDisk"];
    if os_disk["createOption"] != "FromImage" {
        return Err((
            "InvalidParameter",
            "osDisk.createOption must be FromImage for a marketplace image".into(),
        ));
    }
    let os = &p["osProfile"];
    let computer = os["computerName"].as_str().unwrap_or("");
    let computer_ok = (1..=64).contains(&computer.len())
        && computer
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        && !computer.starts_with('-');
    if !computer_ok {
        return Err((
            "InvalidParameter",
            "The supplied computer name is not valid.".into(),
        ));
    }
    let user = os["adminUsername"].as_str().unwrap_or("");
    if user.is_empty() || ["admin", "root", "administrator", "user"].contains(&user) {
        return Err((
            "InvalidParameter",
            format!("The Admin Username specified is not allowed: '{user}'."),
        ));
    }
    let linux = &os["linuxConfiguration"];
    let keys = linux["ssh"]["publicKeys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if linux["disablePasswordAuthentication"] == true
        && keys.is_empty()
        && os["adminPassword"].is_null()
    {
        return Err((
            "InvalidParameter",
            "Required parameter 'adminPassword' is missing (null).".into(),
        ));
    }
    for k in &keys {
        if k["path"].as_str() != Some(&format!("/home/{user}/.ssh/authorized_keys")) {
            return Err((
                "InvalidParameter",
                format!(
                    "Destination path for SSH public keys is currently limited to its default value /home/{user}/.ssh/authorized_keys due to a known issue in Linux provisioning agent."
                ),
            ));
        }
        if !k["keyData"]
            .as_str()
            .is_some_and(|d| d.starts_with("ssh-") || d.starts_with("ecdsa-"))
        {
            return Err((
                "InvalidParameter",
                "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid."
                    .into(),
            ));
        }
    }
    if let Some(cd) = os.get("customData")
        && !cd
            .as_str()
            .is_some_and(|v| base64_ok(v) && v.len() <= 87_380)
    {
        return Err(("InvalidParameter", "Custom data in OSProfile must be in Base64 encoding and with a maximum length of 87380 characters.".into()));
    }
    let nics = p["networkProfile"]["networkInterfaces"]
        .as_array()
        .filter(|n| !n.is_empty())
        .ok_or((
            "InvalidParameter",
            "Required parameter 'networkProfile' is missing (null).".to_string(),
        ))?;
    for nic in nics {
        let nic_id = nic["id"].as_str().unwrap_or("");
        let (nic_name, nic) = name_of_id(s, Kind::Nic, nic_id)
            .and_then(|n| resource(s, Kind::Nic, &n).map(|r| (n, r)))
            .ok_or(("NotFound", format!("Resource {nic_id} not found.")))?;
        // network-overview: "Each NIC attached to a VM must exist in the
        // same location and subscription as the VM". The code is a guess
        // (see the module docs).
        if nic.location() != location {
            return Err((
                "InvalidParameter",
                format!(
                    "The network interface {nic_id} is in location '{}', not in the virtual machine's location '{location}'.",
                    nic.location()
                ),
            ));
        }
        let used = s.resources.iter().any(|((k, n), r)| {
            *k == Kind::Vm
                && n != name
                && r.body["properties"]["networkProfile"]
                    .to_string()
                    .contains(&format!("/networkInterfaces/{nic_name}\""))
        });
        if used {
            return Err((
                "NicInUse",
                format!("Network Interface {nic_id} is used by existing resource."),
            ));
        }
    }
    let security = &p["securityProfile"];
    let confidential = security["securityType"] == "ConfidentialVM";
    if *tdx_size && !confidential {
        return Err((
            "BadRequest",
            format!("The VM size '{size}' can only be used with 'ConfidentialVM' security type."),
        ));
    }
    if confidential {
        if !*tdx_size {
            return Err((
                "BadRequest",
                format!(
                    "The VM size '{size}' is not supported for creation of VMs and Virtual Machine Scale Set with 'ConfidentialVM' security type."
                ),
            ));
        }
        if security["uefiSettings"]["vTpmEnabled"] != true {
            return Err((
                "InvalidParameter",
                "'vTpmEnabled' must be true for 'ConfidentialVM' security type.".into(),
            ));
        }
        let enc = os_disk["managedDisk"]["securityProfile"]["securityEncryptionType"].as_str();
        if !matches!(
            enc,
            Some("VMGuestStateOnly" | "DiskWithVMGuestState" | "NonPersistedTPM")
        ) {
            return Err(("InvalidParameter", "Required parameter 'osDisk.managedDisk.securityProfile.securityEncryptionType' is missing (null).".into()));
        }
    }
    Ok(())
}

fn resource_json(s: &State, kind: Kind, name: &str, r: &Resource, expand: bool) -> Value {
    let mut v = r.body.clone();
    v["id"] = id(s, kind, name).into();
    v["name"] = name.into();
    v["type"] = format!("{}/{}", kind.provider(), kind.ty()).into();
    v["properties"]["provisioningState"] = r.state.into();
    match kind {
        Kind::Ip => {
            v["properties"]["ipAddress"] =
                format!("20.0.{}.{}", r.created % 200, name.len()).into();
        }
        Kind::Vm => {
            v["properties"]["timeCreated"] = rfc3339(r.created, 0).into();
            if expand {
                v["properties"]["instanceView"] = json!({"statuses": [
                    {"code": format!("ProvisioningState/{}", r.state.to_ascii_lowercase()), "level": "Info", "displayStatus": r.state},
                    {"code": format!("PowerState/{}", r.power), "level": "Info", "displayStatus": format!("VM {}", r.power)},
                ]});
            }
        }
        Kind::Nic => {}
    }
    v
}

fn new_op(s: &mut State, effect: Effect) -> String {
    let op = format!("{:08x}-0000-4000-8000-{:012x}", s.next_id, now_unix());
    s.next_id += 1;
    s.ops.insert(
        op.clone(),
        Op {
            effect,
            polls_left: s.polls_per_op,
            done: false,
        },
    );
    op
}

/// An accepted long-running operation: `Azure-AsyncOperation` (and
/// `Location` when `with_location`) on the host the request came to.
#[allow(clippy::too_many_arguments)]
fn accepted(
    s: &mut State,
    r: &Req,
    kind: Kind,
    location: &str,
    effect: Effect,
    status: u16,
    body: Option<Value>,
    with_location: bool,
) -> Response {
    let op = new_op(s, effect);
    let monitor = format!(
        "{}/subscriptions/{}/providers/{}/locations/{location}/operations/{op}",
        origin(s, r),
        s.account.subscription_id,
        kind.provider()
    );
    let version = kind.version();
    let mut headers = vec![("retry-after", s.retry_after.to_string())];
    headers.push((
        "azure-asyncoperation",
        format!("{monitor}?api-version={version}"),
    ));
    if with_location {
        headers.push((
            "location",
            format!("{monitor}?monitor=true&api-version={version}"),
        ));
    }
    match body {
        Some(b) => reply(status, &b, &headers),
        None => empty(status, &headers),
    }
}

/// A VM create refused or failed for capacity, quota or throttling, as
/// the pages named in the module docs show them.
fn vm_failure(
    f: VmFailure,
    size: &str,
    location: &str,
    kind: Kind,
    name: &str,
) -> Result<Effect, Box<Response>> {
    Err(Box::new(match f {
        VmFailure::SkuNotAvailable => arm_error(
            409,
            "SkuNotAvailable",
            &format!(
                "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{location}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details."
            ),
        ),
        VmFailure::QuotaExceeded => arm_error(
            409,
            "OperationNotAllowed",
            &format!(
                "Operation could not be completed as it results in exceeding approved standardDCESv5Family Cores quota. Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: 4, Current Usage: 4, Additional Required: 4, (Minimum) New Limit Required: 8."
            ),
        ),
        VmFailure::Throttled => reply(
            429,
            &json!({"error": {"code": "TooManyRequests", "message": "The request is being throttled as the limit has been reached for operation type - Write_30Min."}}),
            &[("retry-after", "17".to_string())],
        ),
        VmFailure::InternalError => arm_error(
            500,
            "InternalServerError",
            "An unexpected error occured while processing the request.",
        ),
        VmFailure::AllocationFailed => {
            return Ok(Effect::FailCreate(
                kind,
                name.to_string(),
                json!({"code": "AllocationFailed",
                "message": "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"}),
            ));
        }
    }))
}

fn put(s: &mut State, r: &Req, kind: Kind, name: &str) -> Response {
    if !r.content_type_is("application/json") {
        return reject(
            s,
            r,
            415,
            "UnsupportedMediaType",
            "The content media type is not supported. Content-Type must be 'application/json'.",
        );
    }
    let body = match r.json() {
        Ok(b) => b,
        Err(e) => {
            return reject(
                s,
                r,
                400,
                "InvalidRequestContent",
                &format!("The request content was invalid and could not be deserialized: {e}"),
            );
        }
    };
    if let Err((code, msg)) = check(s, kind, name, &body) {
        return reject(s, r, 400, code, &msg);
    }
    let location = body["location"].as_str().unwrap_or_default().to_string();
    let key = (kind, name.to_string());
    let existed = s.resources.contains_key(&key);
    let mut effect = Effect::Provisioned(kind, name.to_string());
    match kind {
        Kind::Vm => {
            let size = body["properties"]["hardwareProfile"]["vmSize"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let failure = s
                .full_regions
                .get(&location)
                .copied()
                .or_else(|| s.vm_failures.pop_front());
            if let Some(f) = failure {
                match vm_failure(f, &size, &location, kind, name) {
                    Ok(e) => effect = e,
                    Err(resp) => return *resp,
                }
            }
            s.vm_bodies.push(body.clone());
        }
        Kind::Ip if !existed => {
            let held = s
                .resources
                .iter()
                .filter(|((k, _), r)| *k == Kind::Ip && r.location() == location)
                .count();
            if let Some(limit) = s.public_ip_limits.get(&location).copied()
                && held >= limit
            {
                return arm_error(
                    400,
                    "PublicIPCountLimitReached",
                    &format!(
                        "Cannot create more than {limit} public IP addresses for this subscription in this region."
                    ),
                );
            }
        }
        Kind::Nic => s.nic_bodies.push(body.clone()),
        Kind::Ip => {}
    }
    let created = s
        .resources
        .get(&key)
        .map(|r| r.created)
        .unwrap_or_else(now_unix);
    let state = if kind == Kind::Vm {
        "Creating"
    } else {
        "Updating"
    };
    s.resources.insert(
        key.clone(),
        Resource {
            body,
            state,
            power: "starting",
            created,
        },
    );
    let shown = resource_json(s, kind, name, &s.resources[&key], false);
    accepted(
        s,
        r,
        kind,
        &location,
        effect,
        if existed { 200 } else { 201 },
        Some(shown),
        false,
    )
}

fn get(s: &mut State, r: &Req, kind: Kind, name: &str) -> Response {
    // VirtualMachines_Get: `$expand` is `instanceView` or `userData`.
    let expand = r.query("$expand");
    if kind == Kind::Vm && expand.is_some_and(|e| !matches!(e, "instanceView" | "userData")) {
        return reject(
            s,
            r,
            400,
            "InvalidParameter",
            "The value of parameter $expand is invalid.",
        );
    }
    match s.resources.get(&(kind, name.to_string())) {
        Some(res) => reply(
            200,
            &resource_json(s, kind, name, res, expand == Some("instanceView")),
            &[],
        ),
        None => arm_error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource '{}/{}/{name}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                kind.provider(),
                kind.ty(),
                s.account.resource_group
            ),
        ),
    }
}

fn delete(s: &mut State, r: &Req, kind: Kind, name: &str) -> Response {
    let key = (kind, name.to_string());
    // Deletes answer 204 for a resource that does not exist (the 204 of
    // `NetworkInterfaces_Delete`, `VirtualMachines_Delete`).
    let Some(res) = s.resources.get(&key) else {
        return empty(204, &[]);
    };
    let rid = id(s, kind, name);
    let in_use = match kind {
        Kind::Nic => s.resources.iter().any(|((k, _), r)| {
            *k == Kind::Vm
                && r.body["properties"]["networkProfile"]
                    .to_string()
                    .contains(&format!("\"{rid}\""))
        }),
        Kind::Ip => s.resources.iter().any(|((k, _), r)| {
            *k == Kind::Nic
                && r.body["properties"]
                    .to_string()
                    .contains(&format!("\"{rid}\""))
        }),
        Kind::Vm => false,
    };
    if in_use {
        let code = if kind == Kind::Nic {
            "NicInUse"
        } else {
            "PublicIPAddressCannotBeDeleted"
        };
        return arm_error(
            400,
            code,
            &format!(
                "{rid} is in use by an existing resource and cannot be deleted. In order to delete it, it must be dissociated from the resource."
            ),
        );
    }
    let location = res.location().to_string();
    s.resources.get_mut(&key).unwrap().state = "Deleting";
    // Compute answers with both headers; Network's NIC delete
    // (`final-state-via: location`) only with Location, so both paths are
    // exercised.
    let effect = Effect::Deleted(kind, name.to_string());
    if kind == Kind::Nic {
        let op = new_op(s, effect);
        let url = format!(
            "{}/subscriptions/{}/providers/Microsoft.Network/locations/{location}/operations/{op}?monitor=true&api-version=2024-05-01",
            origin(s, r),
            s.account.subscription_id
        );
        return empty(
            202,
            &[
                ("location", url),
                ("retry-after", s.retry_after.to_string()),
            ],
        );
    }
    accepted(s, r, kind, &location, effect, 202, None, kind == Kind::Vm)
}

fn finish(s: &mut State, effect: &Effect) -> Option<Value> {
    match effect {
        Effect::Provisioned(kind, name) => {
            if let Some(r) = s.resources.get_mut(&(*kind, name.clone()))
                && r.state != "Deleting"
            {
                r.state = "Succeeded";
                r.power = "running";
            }
            None
        }
        Effect::Deleted(kind, name) => {
            let removed = s.resources.remove(&(*kind, name.clone()));
            // A NIC created with deleteOption Delete goes with its VM.
            if let (Kind::Vm, Some(vm)) = (kind, removed) {
                for nic in vm.body["properties"]["networkProfile"]["networkInterfaces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if nic["properties"]["deleteOption"] == "Delete"
                        && let Some(n) =
                            nic["id"].as_str().and_then(|i| name_of_id(s, Kind::Nic, i))
                    {
                        s.resources.remove(&(Kind::Nic, n));
                    }
                }
            }
            None
        }
        Effect::FailCreate(kind, name, error) => {
            if let Some(r) = s.resources.get_mut(&(*kind, name.clone())) {
                r.state = "Failed";
                r.power = "deallocated";
            }
            Some(error.clone())
        }
    }
}

fn poll(s: &mut State, id: &str, monitor: bool) -> Response {
    let Some(mut op) = s.ops.get(id).cloned() else {
        return arm_error(404, "NotFound", "The operation was not found.");
    };
    if !op.done && op.polls_left > 0 {
        op.polls_left -= 1;
        s.ops.insert(id.to_string(), op);
        let ra = s.retry_after.to_string();
        return if monitor {
            empty(202, &[("retry-after", ra)])
        } else {
            reply(
                200,
                &json!({"status": "InProgress", "name": id}),
                &[("retry-after", ra)],
            )
        };
    }
    let error = if op.done {
        match &op.effect {
            Effect::FailCreate(_, _, e) => Some(e.clone()),
            _ => None,
        }
    } else {
        op.done = true;
        let effect = op.effect.clone();
        s.ops.insert(id.to_string(), op);
        finish(s, &effect)
    };
    match (error, monitor) {
        (Some(e), false) => reply(
            200,
            &json!({"status": "Failed", "name": id, "error": e}),
            &[],
        ),
        (Some(e), true) => reply(409, &json!({"error": e}), &[]),
        (None, false) => reply(200, &json!({"status": "Succeeded", "name": id}), &[]),
        (None, true) => empty(200, &[]),
    }
}

/// `VirtualMachines_List`, `NetworkInterfaces_List`,
/// `PublicIPAddresses_List` of the resource group: pages of `value` with
/// `nextLink` (`x-ms-pageable`).
fn list(s: &mut State, r: &Req, kind: Kind) -> Response {
    let skip: usize = match r.query("$skiptoken").map(str::parse) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return reject(s, r, 400, "InvalidParameter", "$skiptoken is invalid"),
    };
    let all: Vec<Value> = s
        .resources
        .iter()
        .filter(|((k, _), _)| *k == kind)
        .map(|((k, n), res)| resource_json(s, *k, n, res, false))
        .collect();
    let page: Vec<Value> = all.iter().skip(skip).take(s.page_size).cloned().collect();
    let mut v = json!({"value": page});
    if skip + s.page_size < all.len() {
        v["nextLink"] = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/{}/{}?api-version={}&$skiptoken={}",
            origin(s, r),
            s.account.subscription_id,
            s.account.resource_group,
            kind.provider(),
            kind.ty(),
            kind.version(),
            skip + s.page_size
        )
        .into();
    }
    reply(200, &v, &[])
}
