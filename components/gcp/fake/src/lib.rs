//! A fake of the Google APIs the GCP backend uses, on 127.0.0.1: the OAuth
//! 2.0 token endpoint (JWT-bearer grant) and the Compute Engine v1 calls
//! `instances.insert/get/delete/list/aggregatedList` and
//! `zoneOperations.wait/get`. It is a model of the published API, written
//! from the references below, not from the backend: every rule it enforces
//! names the text it follows, and it answers a request that breaks one with
//! the error body Google returns (`{"error": {"code", "message", "errors":
//! [{"message", "domain", "reason"}], "status"}}`).
//!
//! Sources:
//! - `google/cloud/compute/v1/compute.proto` in googleapis/googleapis
//!   (read at f8291d2b): the `Instance`, `NetworkInterface`, `AccessConfig`,
//!   `AttachedDisk`, `AttachedDiskInitializeParams`, `Metadata`, `Items`,
//!   `Tags`, `Scheduling` and `ConfidentialInstanceConfig` messages (the
//!   field lists below are theirs, in JSON's lowerCamelCase),
//!   `Instance.Status`, the request messages of `instances.list`,
//!   `instances.aggregatedList` and `instances.insert` (their query
//!   parameters), `InstanceAggregatedList`/`InstancesScopedList`, and
//!   `Operation`/`Errors`/`ErrorDetails`/`ErrorInfo`.
//! - The REST reference: <https://cloud.google.com/compute/docs/reference/rest/v1/instances>
//!   and <https://cloud.google.com/compute/docs/reference/rest/v1/zoneOperations/wait>.
//! - The `filter` grammar: [`filter`] (its own module, with its sources).
//! - Regions, zones and networks: a zone name is its region's name plus a
//!   letter (`us-central1-a` is in `us-central1`); `NetworkInterface.network`
//!   and `.subnetwork` in compute.proto ("If the network is in auto subnet
//!   mode, specifying the subnetwork is optional. If the network is in
//!   custom subnet mode, specifying the subnetwork is required"; the URL
//!   forms each takes); `Network.autoCreateSubnetworks` ("An auto mode VPC
//!   network starts with one subnet per region"); a subnetwork's URL names
//!   its region (`regions/R/subnetworks/S`), and an instance's interface
//!   takes a subnetwork of the instance's region
//!   (<https://cloud.google.com/vpc/docs/subnets>: subnets are regional).
//! - Token endpoint, JWT assertion (header, claims, RS256 signature, at
//!   most an hour):
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>
//! - Confidential VM with TDX: <https://cloud.google.com/confidential-computing/confidential-vm/docs/supported-configurations>
//!   (`confidentialInstanceType: TDX` on C3 only, `onHostMaintenance:
//!   TERMINATE`; C3 takes no `pd-standard` disk)
//! - Capacity and quota errors: <https://cloud.google.com/compute/docs/resource-error>
//!   (`ZONE_RESOURCE_POOL_EXHAUSTED`, `ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS`
//!   as operation errors), <https://cloud.google.com/docs/quotas/troubleshoot>
//!   (403 `QUOTA_EXCEEDED`, 403 rate limits, 429),
//!   <https://cloud.google.com/compute/api-quota> (403 `rateLimitExceeded`).
//!
//! Where those sources are silent, the fake decides and says so at the rule
//! ("Spec silent"): the exact wording of most error messages (the shapes
//! and reasons are the documented ones; messages follow what Google is
//! seen to return), the error for a subnetwork of another region, the
//! names of an auto-mode network's subnetworks, whether a delete is
//! accepted while the insert is still running (it is, here), how soon a
//! new instance is listed (at once, here), and shared VPC (not modelled:
//! a subnetwork must be in the fake's own project).
//!
//! Every request refused for breaking the reference is recorded in
//! [`GcpFake::rejections`]; tests assert that a conforming backend produced
//! none. Token requests are counted.

mod filter;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use axum::http::Method;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use serde_json::{Map, Value, json};

use cb_fake_server::{Fake, Recorder, Req, TokenCheck, Tokens, json as reply, now_unix, rfc3339};

pub use filter::Filter;

/// The scope the backend must ask for.
pub const COMPUTE_SCOPE: &str = "https://www.googleapis.com/auth/compute";

/// The self-link root of Compute Engine v1 resources.
pub const API_ROOT: &str = "https://www.googleapis.com/compute/v1";

/// A failure the fake can be told to return for the next `instances.insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertFailure {
    /// The operation ends with `ZONE_RESOURCE_POOL_EXHAUSTED` (HTTP 503).
    ZoneResourcePoolExhausted,
    /// The operation ends with `QUOTA_EXCEEDED` (HTTP 403), with the
    /// quota's region in `errorDetails[].quotaInfo.dimensions`.
    QuotaExceeded,
    /// The call itself fails: 403 `quotaExceeded`.
    HttpQuotaExceeded,
    /// The call itself fails: 429 `rateLimitExceeded`.
    RateLimited,
    /// The call itself fails: 503 `backendError`.
    Unavailable,
}

#[derive(Debug, Clone)]
struct FakeInstance {
    zone: String,
    name: String,
    machine_type: String,
    status: String,
    nat_ip: String,
    created: u64,
    stopped: Option<u64>,
    resource: Value,
}

#[derive(Debug, Clone)]
struct FakeOp {
    zone: String,
    kind: &'static str,
    target: String,
    status: &'static str,
    error: Option<(Value, u16, &'static str)>,
    inserted: u64,
}

/// A VPC network: auto mode (a subnetwork in every region) or custom.
#[derive(Debug, Clone)]
struct Network {
    auto: bool,
}

struct State {
    project: String,
    client_email: String,
    key_id: String,
    public_key: rsa::RsaPublicKey,
    token_path: String,
    zones: Vec<String>,
    stocked_out: BTreeSet<String>,
    unreachable: BTreeSet<String>,
    networks: BTreeMap<String, Network>,
    /// (region, name) → network name, for custom-mode subnetworks.
    subnetworks: BTreeMap<(String, String), String>,
    machine_types: BTreeMap<String, (u32, u32)>,
    tokens: Tokens,
    instances: BTreeMap<(String, String), FakeInstance>,
    ops: HashMap<String, FakeOp>,
    next_id: u64,
    insert_failures: VecDeque<InsertFailure>,
    page_size: usize,
    recorder: Recorder,
    inserted_bodies: Vec<Value>,
    insert_zones: Vec<String>,
}

/// The fake; stopped on drop.
pub struct GcpFake {
    fake: Fake<State>,
    key_pem: String,
}

cb_fake_server::recorder_accessors!(GcpFake, |f| f.fake.state().recorder);
cb_fake_server::token_accessors!(GcpFake, |f| f.fake.state().tokens, 24);

/// Machine types the fake knows (name → vCPUs, MiB), as in the real
/// catalogue.
pub const MACHINE_TYPES: &[(&str, u32, u32)] = &[
    ("e2-small", 2, 2048),
    ("n2-standard-2", 2, 8192),
    ("n2-standard-8", 8, 32768),
    ("c3-standard-4", 4, 16384),
    ("c3-standard-8", 8, 32768),
    ("c3-standard-22", 22, 90112),
];

/// A fresh 2048-bit RSA key in PKCS#8 PEM, and its public half.
pub fn new_key() -> (String, rsa::RsaPublicKey) {
    let mut rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("generating an RSA key");
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 PEM")
        .to_string();
    (pem, private.to_public_key())
}

/// The region of a zone: the zone's name less its last `-x`
/// (`us-central1-a` → `us-central1`).
pub fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r)
}

impl GcpFake {
    /// Start a fake for `project` whose zones are `zones` (their regions
    /// follow from their names), with the `default` network (auto mode)
    /// and a freshly minted service-account key.
    pub fn start(project: &str, zones: &[&str]) -> Self {
        let (key_pem, public_key) = new_key();
        let state = State {
            project: project.to_string(),
            client_email: format!("bridge@{project}.iam.gserviceaccount.com"),
            key_id: format!("{:040x}", 0x5eed_u64),
            public_key,
            token_path: "/token".into(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            stocked_out: BTreeSet::new(),
            unreachable: BTreeSet::new(),
            networks: BTreeMap::from([("default".to_string(), Network { auto: true })]),
            subnetworks: BTreeMap::new(),
            machine_types: MACHINE_TYPES
                .iter()
                .map(|(n, c, r)| (n.to_string(), (*c, *r)))
                .collect(),
            tokens: Tokens::new("ya29.fake-", 3599),
            instances: BTreeMap::new(),
            ops: HashMap::new(),
            next_id: 1,
            insert_failures: VecDeque::new(),
            page_size: 500,
            recorder: Recorder::new(),
            inserted_bodies: Vec::new(),
            insert_zones: Vec::new(),
        };
        Self {
            fake: Fake::start("gcp", state, handle),
            key_pem,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.fake.url()
    }

    /// The port it listens on (to put a proxy in front).
    pub fn port(&self) -> u16 {
        self.fake.port()
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.url(), self.fake.state().token_path)
    }

    /// The service-account key file, as Google would hand it out, whose
    /// `token_uri` is this fake.
    pub fn key_json(&self) -> String {
        self.key_json_with(&self.key_pem, &self.fake.url())
    }

    /// The key file with its `token_uri` at `origin` (a proxy in front of
    /// this fake) instead.
    pub fn key_json_via(&self, origin: &str) -> String {
        self.key_json_with(&self.key_pem, origin)
    }

    /// A well-formed key file for the same account whose key the fake does
    /// not know (a deleted or foreign key).
    pub fn foreign_key_json(&self) -> String {
        self.key_json_with(&new_key().0, &self.fake.url())
    }

    fn key_json_with(&self, pem: &str, origin: &str) -> String {
        let s = self.fake.state();
        json!({
            "type": "service_account",
            "project_id": s.project,
            "private_key_id": s.key_id,
            "private_key": pem,
            "client_email": s.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{origin}{}", s.token_path),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// The next `instances.insert` fails this way.
    pub fn fail_next_insert(&self, f: InsertFailure) {
        self.fake.state().insert_failures.push_back(f);
    }

    /// `zone` has no room: every insert there fails with
    /// `ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS` until [`GcpFake::restock`].
    pub fn stock_out(&self, zone: &str) {
        self.fake.state().stocked_out.insert(zone.to_string());
    }

    /// `zone` has room again.
    pub fn restock(&self, zone: &str) {
        self.fake.state().stocked_out.remove(zone);
    }

    /// `zone` does not answer lists: `aggregatedList` names it in
    /// `unreachables` (with `returnPartialSuccess`) or fails (without).
    pub fn set_unreachable(&self, zone: &str) {
        self.fake.state().unreachable.insert(zone.to_string());
    }

    /// A VPC network `name`, in auto mode (a subnetwork named after it in
    /// every region) or custom mode (subnetworks added one by one).
    pub fn add_network(&self, name: &str, auto: bool) {
        self.fake
            .state()
            .networks
            .insert(name.to_string(), Network { auto });
    }

    /// A subnetwork `name` of the custom-mode `network` in `region`.
    pub fn add_subnetwork(&self, region: &str, name: &str, network: &str) {
        self.fake
            .state()
            .subnetworks
            .insert((region.to_string(), name.to_string()), network.to_string());
    }

    /// `instances.list` and `aggregatedList` pages hold at most `n` items.
    pub fn set_page_size(&self, n: usize) {
        self.fake.state().page_size = n.max(1);
    }

    /// The bodies of accepted `instances.insert` calls that made an
    /// instance.
    pub fn inserted(&self) -> Vec<Value> {
        self.fake.state().inserted_bodies.clone()
    }

    /// The zone of every `instances.insert` that passed the checks (made an
    /// instance or failed for capacity), in order.
    pub fn insert_zones(&self) -> Vec<String> {
        self.fake.state().insert_zones.clone()
    }

    /// The instances that exist, as (zone, name).
    pub fn instances(&self) -> Vec<(String, String)> {
        self.fake.state().instances.keys().cloned().collect()
    }

    /// The status of an instance.
    pub fn instance_status(&self, name: &str) -> Option<String> {
        self.fake
            .state()
            .instances
            .values()
            .find(|i| i.name == name)
            .map(|i| i.status.clone())
    }

    /// Set an instance's status (`TERMINATED` as when the VM powered off).
    pub fn set_instance_status(&self, name: &str, status: &str) {
        let mut s = self.fake.state();
        if let Some(i) = s.instances.values_mut().find(|i| i.name == name) {
            i.status = status.to_string();
            if matches!(status, "TERMINATED" | "STOPPED" | "SUSPENDED") {
                i.stopped = Some(now_unix());
            }
        }
    }

    /// Create an instance behind the backend's back (another tool, another
    /// provider), with these labels.
    pub fn add_foreign_instance(&self, zone: &str, name: &str, labels: Value) {
        let mut s = self.fake.state();
        let body = json!({
            "name": name,
            "machineType": format!("zones/{zone}/machineTypes/e2-small"),
            "labels": labels,
            "networkInterfaces": [{
                "network": format!("{API_ROOT}/projects/{}/global/networks/default", s.project),
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}],
            }],
        });
        let ip = format!("198.51.100.{}", s.next_id % 250 + 1);
        s.next_id += 1;
        let mut inst = new_instance(&s.project, zone, name, "e2-small", &ip, body);
        inst.status = "RUNNING".into();
        s.instances.insert((zone.into(), name.into()), inst);
    }
}

// ---------------------------------------------------------------- errors

/// Google's error body (the shape every Compute Engine error has).
fn google_error(code: u16, status: &str, reason: &str, message: &str) -> Response {
    reply(
        code,
        &json!({"error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
        }}),
        &[],
    )
}

fn reject(
    s: &mut State,
    r: &Req,
    code: u16,
    status: &str,
    reason: &str,
    message: &str,
) -> Response {
    s.recorder.reject(r, message);
    google_error(code, status, reason, message)
}

/// 400 `invalid`: a value the reference does not allow.
fn invalid(s: &mut State, r: &Req, message: &str) -> Response {
    reject(s, r, 400, "INVALID_ARGUMENT", "invalid", message)
}

/// A refused instance: the status, reason and message.
struct Refused {
    code: u16,
    status: &'static str,
    reason: &'static str,
    message: String,
}

impl From<String> for Refused {
    fn from(message: String) -> Self {
        Self {
            code: 400,
            status: "INVALID_ARGUMENT",
            reason: "invalid",
            message,
        }
    }
}

impl From<&str> for Refused {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

fn not_found(what: &str) -> Response {
    google_error(
        404,
        "NOT_FOUND",
        "notFound",
        &format!("The resource '{what}' was not found"),
    )
}

fn oauth_error(s: &mut State, r: &Req, error: &str, description: &str) -> Response {
    s.recorder.reject(r, format_args!("{error}: {description}"));
    reply(
        400,
        &json!({"error": error, "error_description": description}),
        &[],
    )
}

/// System parameters every Google API takes in the query
/// (<https://cloud.google.com/apis/docs/system-parameters>).
const SYSTEM_PARAMS: &[&str] = &[
    "$.xgafv",
    "access_token",
    "alt",
    "callback",
    "fields",
    "key",
    "oauth_token",
    "prettyPrint",
    "quotaUser",
    "upload_protocol",
    "uploadType",
    "userIp",
];

/// Refuse a query parameter the method's request message does not have.
/// Spec silent on the wording; Google's front end answers an unknown one
/// with 400 "Cannot bind query parameter".
fn check_query(s: &mut State, r: &Req, allowed: &[&str]) -> Option<Response> {
    let unknown = r
        .query
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !allowed.contains(k) && !SYSTEM_PARAMS.contains(k))?
        .to_string();
    Some(invalid(
        s,
        r,
        &format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot bind query \
             parameter. Field '{unknown}' could not be found in request message."
        ),
    ))
}

// --------------------------------------------------------------- routing

fn handle(state: &Mutex<State>, r: Req) -> Response {
    let mut s = state.lock().unwrap();
    s.recorder.request(&r);
    if r.path == s.token_path {
        return token(&mut s, &r);
    }
    let seg: Vec<&str> = r.segments.iter().map(String::as_str).collect();
    let ["compute", "v1", "projects", p, rest @ ..] = seg.as_slice() else {
        return reject(&mut s, &r, 404, "NOT_FOUND", "notFound", "no such API");
    };
    if let Some(resp) = authorize(&mut s, &r) {
        return resp;
    }
    if *p != s.project {
        return not_found(&format!("projects/{p}"));
    }
    let p = p.to_string();
    match (&r.method, rest) {
        (&Method::GET, ["aggregated", "instances"]) => aggregated_list(&mut s, &r, &p),
        (m, ["zones", z, rest @ ..]) => {
            if !s.zones.iter().any(|x| x == z) {
                return invalid(
                    &mut s,
                    &r,
                    &format!("Invalid value for field 'zone': '{z}'. Unknown zone."),
                );
            }
            let z = z.to_string();
            match (m, rest) {
                (&Method::POST, ["instances"]) => insert(&mut s, &r, &p, &z),
                (&Method::GET, ["instances"]) => list(&mut s, &r, &z),
                (&Method::GET, ["instances", name]) => get(&s, &p, &z, name),
                (&Method::DELETE, ["instances", name]) => delete(&mut s, &r, &p, &z, name),
                (&Method::POST, ["operations", op, "wait"]) => {
                    if !r.body.is_empty() {
                        return invalid(
                            &mut s,
                            &r,
                            "zoneOperations.wait: the request body must be empty",
                        );
                    }
                    operation(&mut s, &p, &z, op)
                }
                (&Method::GET, ["operations", op]) => operation(&mut s, &p, &z, op),
                _ => no_method(&mut s, &r),
            }
        }
        _ => no_method(&mut s, &r),
    }
}

/// A path and method Compute Engine v1 does not have (or the fake does not
/// model): 404.
fn no_method(s: &mut State, r: &Req) -> Response {
    reject(
        s,
        r,
        404,
        "NOT_FOUND",
        "notFound",
        "no such method in Compute Engine v1",
    )
}

/// `Authorization: Bearer <live token>`, else Google's 401.
fn authorize(s: &mut State, r: &Req) -> Option<Response> {
    let live = r
        .bearer()
        .is_some_and(|t| s.tokens.check(t) == TokenCheck::Live);
    if live {
        return None;
    }
    let msg = "Request had invalid authentication credentials. Expected OAuth 2 access token, \
               login cookie or other valid authentication credential. \
               See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let why = if r.bearer().is_some() {
        "token not live"
    } else {
        "no bearer token"
    };
    s.recorder.reject(r, format_args!("401 {why}"));
    Some(reply(
        401,
        &json!({"error": {
            "code": 401,
            "message": msg,
            "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                        "location": "Authorization", "locationType": "header"}],
            "status": "UNAUTHENTICATED",
        }}),
        &[(
            "www-authenticate",
            "Bearer realm=\"https://accounts.google.com/\"".to_string(),
        )],
    ))
}

// ----------------------------------------------------------------- token

fn token(s: &mut State, r: &Req) -> Response {
    s.tokens.count_request();
    if r.method != Method::POST {
        return oauth_error(s, r, "invalid_request", "token requests are POSTs");
    }
    if !r.content_type_is("application/x-www-form-urlencoded") {
        return oauth_error(
            s,
            r,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let form: HashMap<String, String> = r.form().into_iter().collect();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(s, r, "unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(
            s,
            r,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return oauth_error(s, r, "invalid_grant", "Invalid JWT: not three segments");
    }
    let decode = |p: &str| {
        B64.decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let (Some(header), Some(claims)) = (decode(parts[0]), decode(parts[1])) else {
        return oauth_error(
            s,
            r,
            "invalid_grant",
            "Invalid JWT: segments are not base64url JSON",
        );
    };
    if header["alg"] != "RS256" || header.get("typ").is_some_and(|t| t != "JWT") {
        return oauth_error(
            s,
            r,
            "invalid_grant",
            "Invalid JWT: only RS256 JWTs are accepted",
        );
    }
    let signature = B64
        .decode(parts[2])
        .ok()
        .and_then(|b| Signature::try_from(b.as_slice()).ok());
    let verifier = VerifyingKey::<Sha256>::new(s.public_key.clone());
    let signed = format!("{}.{}", parts[0], parts[1]);
    if signature.is_none_or(|sig| verifier.verify(signed.as_bytes(), &sig).is_err()) {
        return oauth_error(s, r, "invalid_grant", "Invalid JWT Signature.");
    }
    if claims["iss"] != s.client_email.as_str() {
        return oauth_error(
            s,
            r,
            "invalid_grant",
            "Invalid JWT: the issuer is not this service account",
        );
    }
    let aud = format!("http://{}{}", r.header("host").unwrap_or(""), s.token_path);
    if claims["aud"] != aud.as_str() {
        return oauth_error(s, r, "invalid_grant", "Invalid JWT: Failed audience check.");
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes.split(' ').any(|x| x == COMPUTE_SCOPE) {
        return oauth_error(s, r, "invalid_scope", "the compute scope was not requested");
    }
    let (iat, exp, now) = (claims["iat"].as_u64(), claims["exp"].as_u64(), now_unix());
    let timely = match (iat, exp) {
        (Some(iat), Some(exp)) => exp > now && exp > iat && exp - iat <= 3600 && iat <= now + 300,
        _ => false,
    };
    if !timely {
        return oauth_error(
            s,
            r,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let token = s.tokens.issue(24);
    reply(
        200,
        &json!({"access_token": token, "expires_in": s.tokens.lifetime(), "token_type": "Bearer"}),
        &[],
    )
}

// ------------------------------------------------------------- instances

/// The fields of `Instance` (compute.proto), in JSON's lowerCamelCase.
/// `[Output Only]` ones are listed too: the reference does not say they are
/// refused on insert (spec silent), so they are accepted and ignored.
const INSTANCE_FIELDS: &[&str] = &[
    "advancedMachineFeatures",
    "canIpForward",
    "confidentialInstanceConfig",
    "cpuPlatform",
    "creationTimestamp",
    "deletionProtection",
    "description",
    "disks",
    "displayDevice",
    "fingerprint",
    "guestAccelerators",
    "hostname",
    "id",
    "instanceEncryptionKey",
    "keyRevocationActionType",
    "kind",
    "labelFingerprint",
    "labels",
    "lastStartTimestamp",
    "lastStopTimestamp",
    "lastSuspendedTimestamp",
    "localSsdEncryptionMode",
    "machineType",
    "metadata",
    "minCpuPlatform",
    "name",
    "networkInterfaces",
    "networkPerformanceConfig",
    "params",
    "privateIpv6GoogleAccess",
    "reservationAffinity",
    "resourcePolicies",
    "resourceStatus",
    "satisfiesPzi",
    "satisfiesPzs",
    "scheduling",
    "selfLink",
    "serviceAccounts",
    "shieldedInstanceConfig",
    "shieldedInstanceIntegrityPolicy",
    "sourceMachineImage",
    "sourceMachineImageEncryptionKey",
    "startRestricted",
    "status",
    "statusMessage",
    "tags",
    "workloadIdentityConfig",
    "zone",
];

/// `NetworkInterface` (compute.proto).
const NIC_FIELDS: &[&str] = &[
    "accessConfigs",
    "aliasIpRanges",
    "aliasIpv6Ranges",
    "enableVpcScopedDns",
    "fingerprint",
    "igmpQuery",
    "internalIpv6PrefixLength",
    "ipv6AccessConfigs",
    "ipv6AccessType",
    "ipv6Address",
    "kind",
    "name",
    "network",
    "networkAttachment",
    "networkIP",
    "nicType",
    "parentNicName",
    "queueCount",
    "serviceClassId",
    "stackType",
    "subnetwork",
    "vlan",
];

/// `AccessConfig` (compute.proto).
const ACCESS_CONFIG_FIELDS: &[&str] = &[
    "externalIpv6",
    "externalIpv6PrefixLength",
    "kind",
    "name",
    "natIP",
    "networkTier",
    "publicPtrDomainName",
    "securityPolicy",
    "setPublicPtr",
    "type",
];

/// `AttachedDisk` (compute.proto).
const DISK_FIELDS: &[&str] = &[
    "architecture",
    "autoDelete",
    "boot",
    "deviceName",
    "diskEncryptionKey",
    "diskSizeGb",
    "forceAttach",
    "guestOsFeatures",
    "index",
    "initializeParams",
    "interface",
    "kind",
    "licenses",
    "mode",
    "savedState",
    "shieldedInstanceInitialState",
    "source",
    "type",
];

/// `AttachedDiskInitializeParams` (compute.proto).
const INIT_PARAMS_FIELDS: &[&str] = &[
    "architecture",
    "description",
    "diskName",
    "diskSizeGb",
    "diskType",
    "enableConfidentialCompute",
    "labels",
    "licenses",
    "onUpdateAction",
    "provisionedIops",
    "provisionedThroughput",
    "replicaZones",
    "resourceManagerTags",
    "resourcePolicies",
    "sourceImage",
    "sourceImageEncryptionKey",
    "sourceSnapshot",
    "sourceSnapshotEncryptionKey",
    "storagePool",
];

/// `Scheduling` (compute.proto).
const SCHEDULING_FIELDS: &[&str] = &[
    "automaticRestart",
    "availabilityDomain",
    "gracefulShutdown",
    "hostErrorTimeoutSeconds",
    "instanceTerminationAction",
    "localSsdRecoveryTimeout",
    "locationHint",
    "maxRunDuration",
    "minNodeCpus",
    "nodeAffinities",
    "onHostMaintenance",
    "onInstanceStopAction",
    "preemptible",
    "preemptionNoticeDuration",
    "provisioningModel",
    "skipGuestOsShutdown",
    "terminationTime",
];

/// `Metadata`, its `Items`, `Tags`, `ConfidentialInstanceConfig`
/// (compute.proto).
const METADATA_FIELDS: &[&str] = &["fingerprint", "items", "kind"];
const ITEM_FIELDS: &[&str] = &["key", "value"];
const TAGS_FIELDS: &[&str] = &["fingerprint", "items"];
const CONFIDENTIAL_FIELDS: &[&str] = &["confidentialInstanceType", "enableConfidentialCompute"];

/// A JSON object whose keys are all fields of the message; Google's
/// "Unknown name" error otherwise (the JSON-to-proto mapping refuses an
/// unknown field; the wording is the one Google's front end uses).
fn known_fields<'a>(
    v: &'a Value,
    at: &str,
    fields: &[&str],
) -> Result<&'a Map<String, Value>, Refused> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("Invalid JSON payload received. '{at}' is not an object."))?;
    if let Some(k) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
        )
        .into());
    }
    Ok(obj)
}

/// Each item of an optional list field must be a known message.
fn known_items(v: &Value, at: &str, fields: &[&str]) -> Result<(), Refused> {
    if v.is_null() {
        return Ok(());
    }
    let items = v
        .as_array()
        .ok_or_else(|| format!("Invalid JSON payload received. '{at}' is not a list."))?;
    for (i, item) in items.iter().enumerate() {
        known_fields(item, &format!("{at}[{i}]"), fields)?;
    }
    Ok(())
}

fn is_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !n.ends_with('-')
}

/// Label keys and values: lower-case letters, digits, `_` and `-`, at most
/// 63; a key starts with a letter
/// (<https://cloud.google.com/compute/docs/labeling-resources#requirements>;
/// international letters, which the page also allows, are not modelled).
fn is_label_part(v: &str, key: bool) -> bool {
    v.len() <= 63
        && (!key || v.starts_with(|c: char| c.is_ascii_lowercase()))
        && v.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn zone_url(project: &str, zone: &str) -> String {
    format!("{API_ROOT}/projects/{project}/zones/{zone}")
}

/// A partial or full resource URL relative to a project, as
/// `NetworkInterface.network`/`.subnetwork` take them: `PATH`,
/// `projects/P/PATH` or `https://www.googleapis.com/compute/v1/projects/P/PATH`.
/// The project it names (or `None`) and the path.
fn split_project(v: &str) -> (Option<&str>, &str) {
    let rest = v
        .strip_prefix(API_ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(v);
    match rest
        .strip_prefix("projects/")
        .and_then(|r| r.split_once('/'))
    {
        Some((p, path)) => (Some(p), path),
        None => (None, rest),
    }
}

/// The network and subnetwork of interface `i` of an instance in `zone`,
/// as full URLs; the refusal if they do not fit.
///
/// compute.proto, `NetworkInterface.network`: "if neither the network nor
/// the subnetwork is specified, the default network global/networks/default
/// is used ... If the network is not specified but the subnetwork is
/// specified, the network is inferred"; forms: a full URL,
/// `projects/project/global/networks/network`, `global/networks/default`.
/// `.subnetwork`: "If the network is in auto subnet mode, specifying the
/// subnetwork is optional. If the network is in custom subnet mode,
/// specifying the subnetwork is required"; forms: a full URL or
/// `regions/region/subnetworks/subnetwork`.
fn resolve_nic(s: &State, zone: &str, i: usize, nic: &Value) -> Result<(String, String), Refused> {
    let region = region_of(zone);
    let at = format!("resource.networkInterfaces[{i}]");
    let not_found = |field: &str, v: &str, what: &str| -> Refused {
        format!(
            "Invalid value for field '{at}.{field}': '{v}'. The referenced {what} resource cannot \
             be found."
        )
        .into()
    };
    let network = match nic["network"].as_str() {
        None => None,
        Some(v) => {
            let (project, path) = split_project(v);
            let name = path.strip_prefix("global/networks/").filter(|n| is_name(n));
            // Shared VPC (a network of another project) is not modelled.
            match (project, name) {
                (_, Some(n))
                    if project.is_none_or(|p| p == s.project) && s.networks.contains_key(n) =>
                {
                    Some(n.to_string())
                }
                _ => return Err(not_found("network", v, "network")),
            }
        }
    };
    let subnetwork = match nic["subnetwork"].as_str() {
        None => None,
        Some(v) => {
            let (project, path) = split_project(v);
            // `projects/P/regions/...` is not among the forms the proto
            // lists for a subnetwork; a full URL or `regions/...` only.
            let form_ok = (project.is_some() && v.starts_with(API_ROOT)) || project.is_none();
            let parts: Vec<&str> = path.split('/').collect();
            let (r, n) = match parts.as_slice() {
                ["regions", r, "subnetworks", n] if form_ok && is_name(n) => (*r, *n),
                _ => {
                    return Err(format!(
                        "Invalid value for field '{at}.subnetwork': '{v}'. The URL is malformed."
                    )
                    .into());
                }
            };
            if project.is_some_and(|p| p != s.project) {
                return Err(not_found("subnetwork", v, "subnetwork"));
            }
            // Spec silent on the message; a subnetwork is regional and an
            // interface takes one of its instance's region.
            if r != region {
                return Err(format!(
                    "Invalid value for field '{at}.subnetwork': '{v}'. Subnetwork must be in the \
                     same region as the instance ({region}), not {r}."
                )
                .into());
            }
            // An auto-mode network's subnetwork in each region is named
            // after the network (spec silent on the name; the fake's choice).
            let of = s
                .subnetworks
                .get(&(r.to_string(), n.to_string()))
                .cloned()
                .or_else(|| {
                    s.networks
                        .get(n)
                        .filter(|net| net.auto)
                        .map(|_| n.to_string())
                });
            match of {
                Some(net) => Some((n.to_string(), net)),
                None => return Err(not_found("subnetwork", v, "subnetwork")),
            }
        }
    };
    let network = match (network, &subnetwork) {
        (Some(net), Some((sub, of))) if *of != net => {
            // The shape Google answers this with (400 `badRequest`); the
            // reference does not print it.
            return Err(Refused {
                code: 400,
                status: "INVALID_ARGUMENT",
                reason: "badRequest",
                message: format!(
                    "Subnetwork \"projects/{}/regions/{region}/subnetworks/{sub}\" is not valid \
                     for Network \"{net}\".",
                    s.project
                ),
            });
        }
        (Some(net), _) => net,
        (None, Some((_, of))) => of.clone(),
        (None, None) => {
            if !s.networks.contains_key("default") {
                return Err(not_found("network", "global/networks/default", "network"));
            }
            "default".to_string()
        }
    };
    let sub = match subnetwork {
        Some((sub, _)) => sub,
        None if s.networks[&network].auto => network.clone(),
        None => {
            return Err(format!(
                "Invalid value for field '{at}': ''. Subnetwork should be specified for custom \
                 subnetmode network"
            )
            .into());
        }
    };
    Ok((
        format!(
            "{API_ROOT}/projects/{}/global/networks/{network}",
            s.project
        ),
        format!(
            "{API_ROOT}/projects/{}/regions/{region}/subnetworks/{sub}",
            s.project
        ),
    ))
}

/// Check an `instances.insert` body against the reference; the machine
/// type and the interfaces' (network, subnetwork) if it conforms.
fn check_instance(
    s: &State,
    zone: &str,
    b: &Value,
) -> Result<(String, Vec<(String, String)>), Refused> {
    let obj = known_fields(b, "resource", INSTANCE_FIELDS)?;
    // `name`: "The name must be 1-63 characters long, and comply with
    // RFC1035" (Instance.name in compute.proto); required on insert
    // (instances/insert reference).
    let name = b["name"]
        .as_str()
        .ok_or("Required field 'resource.name' not specified")?;
    if !is_name(name) {
        return Err(format!(
            "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
        )
        .into());
    }
    // `machineType`: a full or partial URL `zones/ZONE/machineTypes/TYPE`
    // of the instance's own zone (Instance.machine_type).
    let mt = b["machineType"]
        .as_str()
        .ok_or("Required field 'resource.machineType' not specified")?;
    let prefix = format!("zones/{zone}/machineTypes/");
    let mt_name = mt
        .strip_prefix(&prefix)
        .or_else(|| mt.strip_prefix(&format!("{}/machineTypes/", zone_url(&s.project, zone))))
        .filter(|n| s.machine_types.contains_key(*n))
        .ok_or_else(|| format!("Invalid value for field 'resource.machineType': '{mt}'. Machine type with name '{mt}' does not exist in zone '{zone}'."))?;
    let family = mt_name.split('-').next().unwrap_or("");

    // Disks: exactly one boot disk, created from an image here.
    let disks = b["disks"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or("Required field 'resource.disks' not specified")?;
    known_items(&b["disks"], "resource.disks", DISK_FIELDS)?;
    let boot: Vec<&Value> = disks.iter().filter(|d| d["boot"] == true).collect();
    if boot.len() != 1 {
        return Err(
            "Invalid value for field 'resource.disks': exactly one boot disk is required".into(),
        );
    }
    let init = &boot[0]["initializeParams"];
    if !init.is_null() {
        known_fields(
            init,
            "resource.disks[0].initializeParams",
            INIT_PARAMS_FIELDS,
        )?;
    }
    if init["sourceImage"].as_str().is_none_or(str::is_empty) {
        return Err("Invalid value for field 'resource.disks[0].initializeParams.sourceImage': a boot disk needs a source image".into());
    }
    if let Some(size) = init.get("diskSizeGb") {
        let gb = size
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| size.as_u64());
        if gb.is_none_or(|g| g < 10) {
            return Err(
                "Invalid value for field 'resource.disks[0].initializeParams.diskSizeGb'".into(),
            );
        }
    }
    // A zonal disk type (`zones/ZONE/diskTypes/TYPE`) names the instance's
    // zone (AttachedDiskInitializeParams.disk_type).
    let disk_type = init["diskType"].as_str().unwrap_or("pd-standard");
    if let Some(rest) = disk_type.split("zones/").nth(1)
        && rest.split('/').next() != Some(zone)
    {
        return Err(format!(
            "Invalid value for field 'resource.disks[0].initializeParams.diskType': '{disk_type}'. \
             The disk type must be in the instance's zone {zone}."
        )
        .into());
    }
    if family == "c3" && disk_type.ends_with("pd-standard") {
        return Err(format!(
            "[pd-standard] features are not compatible for creating instance with machine type {mt_name}."
        )
        .into());
    }

    // Network interfaces: at least one, each on a network and a
    // subnetwork of the instance's region.
    let nics = b["networkInterfaces"]
        .as_array()
        .filter(|n| !n.is_empty())
        .ok_or("Required field 'resource.networkInterfaces' not specified")?;
    known_items(
        &b["networkInterfaces"],
        "resource.networkInterfaces",
        NIC_FIELDS,
    )?;
    let mut placed = Vec::new();
    for (i, nic) in nics.iter().enumerate() {
        known_items(
            &nic["accessConfigs"],
            &format!("resource.networkInterfaces[{i}].accessConfigs"),
            ACCESS_CONFIG_FIELDS,
        )?;
        for (j, ac) in nic["accessConfigs"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            // AccessConfig.type: ONE_TO_ONE_NAT is the only IPv4 type.
            if ac["type"] != "ONE_TO_ONE_NAT" {
                return Err(format!(
                    "Invalid value for field 'resource.networkInterfaces[{i}].accessConfigs[{j}].type'"
                )
                .into());
            }
        }
        placed.push(resolve_nic(s, zone, i, nic)?);
    }
    if let Some(labels) = b.get("labels") {
        let labels = labels.as_object().ok_or("labels must be a map")?;
        if labels.len() > 64 {
            return Err("Invalid value for field 'resource.labels': at most 64 labels".into());
        }
        for (k, v) in labels {
            if !is_label_part(k, true) || !v.as_str().is_some_and(|v| is_label_part(v, false)) {
                return Err(format!(
                    "Invalid value for field 'resource.labels': label '{k}' has an invalid key or value"
                )
                .into());
            }
        }
    }
    if let Some(md) = obj.get("metadata") {
        known_fields(md, "resource.metadata", METADATA_FIELDS)?;
        known_items(&md["items"], "resource.metadata.items", ITEM_FIELDS)?;
        let mut seen = Vec::new();
        for item in md["items"].as_array().into_iter().flatten() {
            let k = item["key"].as_str().ok_or("metadata items need a key")?;
            if item["value"].as_str().is_none() {
                return Err(format!("metadata item {k} needs a string value").into());
            }
            if seen.contains(&k) {
                return Err(format!(
                    "Invalid value for field 'resource.metadata': duplicate key {k}"
                )
                .into());
            }
            seen.push(k);
        }
    }
    if let Some(tags) = obj.get("tags") {
        known_fields(tags, "resource.tags", TAGS_FIELDS)?;
    }
    if let Some(sch) = obj.get("scheduling") {
        known_fields(sch, "resource.scheduling", SCHEDULING_FIELDS)?;
    }
    if let Some(cc) = obj.get("confidentialInstanceConfig") {
        known_fields(
            cc,
            "resource.confidentialInstanceConfig",
            CONFIDENTIAL_FIELDS,
        )?;
        match cc["confidentialInstanceType"].as_str() {
            Some("TDX") => {
                if family != "c3" {
                    return Err(format!(
                        "Confidential Instance Config with TDX is only supported for compatible machine types (C3), not {mt_name}."
                    )
                    .into());
                }
            }
            Some("SEV" | "SEV_SNP") => {}
            other => {
                return Err(format!(
                    "Invalid value for field 'resource.confidentialInstanceConfig.confidentialInstanceType': {other:?}"
                )
                .into());
            }
        }
        if b["scheduling"]["onHostMaintenance"] != "TERMINATE" {
            return Err("Instance with Confidential VM enabled requires onHostMaintenance to be set to TERMINATE.".into());
        }
    }
    Ok((mt_name.to_string(), placed))
}

fn new_instance(
    project: &str,
    zone: &str,
    name: &str,
    mt: &str,
    ip: &str,
    body: Value,
) -> FakeInstance {
    FakeInstance {
        zone: zone.to_string(),
        name: name.to_string(),
        machine_type: mt.to_string(),
        status: "PROVISIONING".into(),
        nat_ip: ip.to_string(),
        created: now_unix(),
        stopped: None,
        resource: {
            let mut r = body;
            r["zone"] = zone_url(project, zone).into();
            r
        },
    }
}

fn instance_json(project: &str, i: &FakeInstance, id: u64) -> Value {
    let mut r = i.resource.clone();
    r["kind"] = "compute#instance".into();
    r["id"] = id.to_string().into();
    r["status"] = i.status.clone().into();
    r["machineType"] = format!(
        "{}/machineTypes/{}",
        zone_url(project, &i.zone),
        i.machine_type
    )
    .into();
    r["creationTimestamp"] = rfc3339(i.created, -7).into();
    if let Some(t) = i.stopped {
        r["lastStopTimestamp"] = rfc3339(t, -7).into();
    }
    r["selfLink"] = format!("{}/instances/{}", zone_url(project, &i.zone), i.name).into();
    if let Some(nics) = r.get_mut("networkInterfaces").and_then(Value::as_array_mut) {
        for (n, nic) in nics.iter_mut().enumerate() {
            nic["name"] = format!("nic{n}").into();
            nic["networkIP"] = "10.128.0.2".into();
            for ac in nic["accessConfigs"].as_array_mut().into_iter().flatten() {
                ac["natIP"] = i.nat_ip.clone().into();
            }
        }
    }
    r
}

fn op_json(s: &State, project: &str, name: &str, op: &FakeOp) -> Value {
    let mut v = json!({
        "kind": "compute#operation",
        "id": "7000000000000000001",
        "name": name,
        "zone": zone_url(project, &op.zone),
        "operationType": op.kind,
        "targetLink": format!("{}/instances/{}", zone_url(project, &op.zone), op.target),
        "status": op.status,
        "user": s.client_email,
        "progress": if op.status == "DONE" { 100 } else { 0 },
        "insertTime": rfc3339(op.inserted, -7),
        "startTime": rfc3339(op.inserted, -7),
        "selfLink": format!("{}/operations/{name}", zone_url(project, &op.zone)),
    });
    if op.status == "DONE" {
        v["endTime"] = rfc3339(now_unix(), -7).into();
        if let Some((err, code, text)) = &op.error {
            v["error"] = err.clone();
            v["httpErrorStatusCode"] = (*code).into();
            v["httpErrorMessage"] = (*text).into();
        }
    }
    v
}

fn new_op(
    s: &mut State,
    zone: &str,
    kind: &'static str,
    target: &str,
    error: Option<(Value, u16, &'static str)>,
) -> String {
    let name = format!("operation-{}-{:08x}", now_unix(), s.next_id);
    s.next_id += 1;
    s.ops.insert(
        name.clone(),
        FakeOp {
            zone: zone.to_string(),
            kind,
            target: target.to_string(),
            status: "RUNNING",
            error,
            inserted: now_unix(),
        },
    );
    name
}

/// The operation error of a zone out of stock, in the shape
/// <https://cloud.google.com/compute/docs/resource-error> describes and
/// `Errors`/`ErrorDetails`/`ErrorInfo` (compute.proto) carry: the code, the
/// message, and details with `errorInfo.reason = resource_availability`
/// and the zones of the region that still have room.
fn stockout_error(s: &State, project: &str, zone: &str, mt: &str) -> Value {
    let others: Vec<&str> = s
        .zones
        .iter()
        .filter(|z| region_of(z) == region_of(zone) && *z != zone && !s.stocked_out.contains(*z))
        .map(String::as_str)
        .collect();
    json!({"errors": [{
        "code": "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "message": format!("The zone 'projects/{project}/zones/{zone}' does not have enough \
            resources available to fulfill the request.  '(resource type:compute)'."),
        "errorDetails": [
            {"errorInfo": {"reason": "resource_availability", "domain": "compute.googleapis.com",
                "metadatas": {"zone": zone, "vmType": mt, "attachment": "",
                              "zonesAvailable": others.join(",")}}},
            {"help": {"links": [{"description": "Troubleshooting documentation",
                "url": "https://cloud.google.com/compute/docs/resource-error"}]}},
            {"localizedMessage": {"locale": "en-US", "message": format!(
                "A {mt} VM instance is currently unavailable in the {zone} zone. Alternatively, \
                 you can try your request again with a different VM hardware configuration or \
                 at a later time. For more information, see the troubleshooting documentation.")}},
        ],
    }]})
}

fn insert(s: &mut State, r: &Req, project: &str, zone: &str) -> Response {
    // InsertInstanceRequest's query fields.
    if let Some(resp) = check_query(
        s,
        r,
        &["requestId", "sourceInstanceTemplate", "sourceMachineImage"],
    ) {
        return resp;
    }
    if !r.content_type_is("application/json") {
        return invalid(
            s,
            r,
            "Invalid JSON payload received: Content-Type must be application/json",
        );
    }
    let mut body = match r.json() {
        Ok(b) => b,
        Err(e) => return invalid(s, r, &format!("Invalid JSON payload received. {e}")),
    };
    let (mt, placed) = match check_instance(s, zone, &body) {
        Ok(ok) => ok,
        Err(f) => return reject(s, r, f.code, f.status, f.reason, &f.message),
    };
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if s.instances.contains_key(&(zone.to_string(), name.clone())) {
        return google_error(
            409,
            "ALREADY_EXISTS",
            "alreadyExists",
            &format!(
                "The resource 'projects/{project}/zones/{zone}/instances/{name}' already exists"
            ),
        );
    }
    s.insert_zones.push(zone.to_string());
    let op_error = if s.stocked_out.contains(zone) {
        Some((
            stockout_error(s, project, zone, &mt),
            503,
            "SERVICE UNAVAILABLE",
        ))
    } else {
        match s.insert_failures.pop_front() {
            Some(InsertFailure::HttpQuotaExceeded) => {
                return google_error(
                    403,
                    "PERMISSION_DENIED",
                    "quotaExceeded",
                    &format!(
                        "Quota 'C3_CPUS' exceeded.  Limit: 8.0 in region {}.",
                        region_of(zone)
                    ),
                );
            }
            Some(InsertFailure::RateLimited) => {
                return google_error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "rateLimitExceeded",
                    "Rate Limit Exceeded",
                );
            }
            Some(InsertFailure::Unavailable) => {
                return google_error(503, "UNAVAILABLE", "backendError", "Backend Error");
            }
            Some(InsertFailure::ZoneResourcePoolExhausted) => Some((
                json!({"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED",
                    "message": format!("The zone 'projects/{project}/zones/{zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.")}]}),
                503,
                "SERVICE UNAVAILABLE",
            )),
            Some(InsertFailure::QuotaExceeded) => Some((
                json!({"errors": [{"code": "QUOTA_EXCEEDED",
                    "message": format!("Quota 'C3_CPUS' exceeded.  Limit: 8.0 in region {}.", region_of(zone)),
                    "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/c3_cpus",
                        "limitName": "C3-CPUS-per-project-region",
                        "dimensions": {"region": region_of(zone)}, "limit": 8}}]}]}),
                403,
                "FORBIDDEN",
            )),
            None => None,
        }
    };
    if op_error.is_none() {
        // The answer shows the interfaces as full URLs.
        if let Some(nics) = body["networkInterfaces"].as_array_mut() {
            for (nic, (network, subnetwork)) in nics.iter_mut().zip(&placed) {
                nic["network"] = network.clone().into();
                nic["subnetwork"] = subnetwork.clone().into();
            }
        }
        let ip = format!("203.0.113.{}", s.next_id % 250 + 1);
        s.next_id += 1;
        let inst = new_instance(project, zone, &name, &mt, &ip, body.clone());
        s.instances.insert((zone.to_string(), name.clone()), inst);
        s.inserted_bodies.push(r.json().unwrap_or(body));
    }
    let op = new_op(s, zone, "insert", &name, op_error);
    let v = op_json(s, project, &op, &s.ops[&op]);
    reply(200, &v, &[])
}

fn get(s: &State, project: &str, zone: &str, name: &str) -> Response {
    match s.instances.get(&(zone.to_string(), name.to_string())) {
        Some(i) => reply(
            200,
            &instance_json(project, i, 4_000_000_000_000_000_000 + i.created),
            &[],
        ),
        None => not_found(&format!("projects/{project}/zones/{zone}/instances/{name}")),
    }
}

fn delete(s: &mut State, r: &Req, project: &str, zone: &str, name: &str) -> Response {
    if let Some(resp) = check_query(s, r, &["requestId"]) {
        return resp;
    }
    if !r.body.is_empty() {
        return invalid(s, r, "instances.delete: the request body must be empty");
    }
    let key = (zone.to_string(), name.to_string());
    let Some(i) = s.instances.get_mut(&key) else {
        return not_found(&format!("projects/{project}/zones/{zone}/instances/{name}"));
    };
    i.status = "STOPPING".into();
    let op = new_op(s, zone, "delete", name, None);
    let v = op_json(s, project, &op, &s.ops[&op]);
    reply(200, &v, &[])
}

/// `wait` and `get`: the fake's operations finish at the first look.
fn operation(s: &mut State, project: &str, zone: &str, name: &str) -> Response {
    let Some(op) = s.ops.get(name).cloned() else {
        return not_found(&format!(
            "projects/{project}/zones/{zone}/operations/{name}"
        ));
    };
    if op.zone != zone {
        return not_found(&format!(
            "projects/{project}/zones/{zone}/operations/{name}"
        ));
    }
    if op.status != "DONE" {
        let key = (op.zone.clone(), op.target.clone());
        match op.kind {
            "insert" => {
                if let Some(i) = s.instances.get_mut(&key) {
                    i.status = "RUNNING".into();
                }
            }
            _ => {
                s.instances.remove(&key);
            }
        }
        s.ops.get_mut(name).unwrap().status = "DONE";
    }
    let v = op_json(s, project, name, &s.ops[name]);
    reply(200, &v, &[])
}

/// The parameters both list methods share: the filter (refused as Compute
/// Engine refuses it, see [`filter`]), `maxResults` ("Acceptable values
/// are 0 to 500, inclusive. (Default: 500)"; what 0 means is not said, the
/// fake takes it as the default), `orderBy` ("Currently, only sorting by
/// name or creationTimestamp desc is supported") and `pageToken` (opaque;
/// the fake's are offsets). Any other query parameter must be one of the
/// method's own (`allowed`). The page size and offset, or the refusal.
fn list_params(
    s: &mut State,
    r: &Req,
    allowed: &[&str],
) -> Result<(Filter, usize, usize), Box<Response>> {
    if let Some(resp) = check_query(s, r, allowed) {
        return Err(Box::new(resp));
    }
    let f = r.query("filter").unwrap_or("");
    let filter = Filter::parse(f).map_err(|why| {
        s.recorder.reject(r, format_args!("filter: {why}"));
        Box::new(google_error(
            400,
            "INVALID_ARGUMENT",
            "invalid",
            &format!("Invalid value for field 'filter': '{f}'. Invalid list filter expression."),
        ))
    })?;
    let max = match r.query("maxResults").map(str::parse::<usize>) {
        None | Some(Ok(0)) => 500,
        Some(Ok(m)) if m <= 500 => m,
        _ => {
            return Err(Box::new(invalid(
                s,
                r,
                "Invalid value for field 'maxResults': must be between 0 and 500",
            )));
        }
    };
    if let Some(o) = r.query("orderBy")
        && !matches!(o, "name" | "creationTimestamp desc")
    {
        return Err(Box::new(invalid(
            s,
            r,
            &format!(
                "Invalid value for field 'orderBy': '{o}'. Sorting by this field is not supported."
            ),
        )));
    }
    let offset = match r.query("pageToken").map(str::parse) {
        None => 0,
        Some(Ok(o)) => o,
        Some(Err(_)) => {
            return Err(Box::new(invalid(
                s,
                r,
                "Invalid value for field 'pageToken'",
            )));
        }
    };
    Ok((filter, max.min(s.page_size), offset))
}

/// `instances.list` in one zone.
fn list(s: &mut State, r: &Req, zone: &str) -> Response {
    // ListInstancesRequest's query fields.
    let allowed = [
        "filter",
        "maxResults",
        "orderBy",
        "pageToken",
        "returnPartialSuccess",
    ];
    let (filter, page, offset) = match list_params(s, r, &allowed) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let project = s.project.clone();
    let matching: Vec<Value> = s
        .instances
        .values()
        .filter(|i| i.zone == zone)
        .map(|i| instance_json(&project, i, i.created))
        .filter(|v| filter.matches(v))
        .collect();
    let items: Vec<Value> = matching.iter().skip(offset).take(page).cloned().collect();
    let mut v = json!({
        "kind": "compute#instanceList",
        "id": format!("projects/{project}/zones/{zone}/instances"),
        "selfLink": format!("{}/instances", zone_url(&project, zone)),
    });
    // Like the real API, `items` is absent when there are none.
    if !items.is_empty() {
        v["items"] = Value::Array(items);
    }
    if offset + page < matching.len() {
        v["nextPageToken"] = (offset + page).to_string().into();
    }
    reply(200, &v, &[])
}

/// `instances.aggregatedList`: every zone's instances in one answer,
/// `items` keyed by scope (`zones/ZONE`), a scope with none on this page
/// carrying a `NO_RESULTS_ON_PAGE` warning (`InstancesScopedList.warning`:
/// "Informational warning which replaces the list of instances when the
/// list is empty"). A zone that does not answer is named in `unreachables`
/// when `returnPartialSuccess` is set; without it the whole call fails
/// (spec silent on that error; the fake answers 503 `backendError`).
fn aggregated_list(s: &mut State, r: &Req, project: &str) -> Response {
    // AggregatedListInstancesRequest's query fields.
    let allowed = [
        "filter",
        "includeAllScopes",
        "maxResults",
        "orderBy",
        "pageToken",
        "returnPartialSuccess",
        "serviceProjectNumber",
    ];
    let (filter, page, offset) = match list_params(s, r, &allowed) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let partial = r.query("returnPartialSuccess") == Some("true");
    if !s.unreachable.is_empty() && !partial {
        return google_error(503, "UNAVAILABLE", "backendError", "Backend Error");
    }
    let reachable: Vec<String> = s
        .zones
        .iter()
        .filter(|z| !s.unreachable.contains(*z))
        .cloned()
        .collect();
    let matching: Vec<(String, Value)> = reachable
        .iter()
        .flat_map(|z| {
            s.instances
                .values()
                .filter(move |i| &i.zone == z)
                .map(|i| (i.zone.clone(), instance_json(project, i, i.created)))
        })
        .filter(|(_, v)| filter.matches(v))
        .collect();
    let this_page: Vec<&(String, Value)> = matching.iter().skip(offset).take(page).collect();
    let mut items = Map::new();
    for z in &reachable {
        let scope = format!("zones/{z}");
        let here: Vec<Value> = this_page
            .iter()
            .filter(|(iz, _)| iz == z)
            .map(|(_, v)| v.clone())
            .collect();
        items.insert(
            scope.clone(),
            if here.is_empty() {
                json!({"warning": {"code": "NO_RESULTS_ON_PAGE",
                    "message": format!("There are no results for scope '{scope}' on this page."),
                    "data": [{"key": "scope", "value": scope}]}})
            } else {
                json!({"instances": here})
            },
        );
    }
    let mut v = json!({
        "kind": "compute#instanceAggregatedList",
        "id": format!("projects/{project}/aggregated/instances"),
        "items": items,
        "selfLink": format!("{API_ROOT}/projects/{project}/aggregated/instances"),
    });
    if partial && !s.unreachable.is_empty() {
        v["unreachables"] = s
            .unreachable
            .iter()
            .map(|z| format!("zones/{z}"))
            .collect::<Vec<_>>()
            .into();
    }
    if offset + page < matching.len() {
        v["nextPageToken"] = (offset + page).to_string().into();
    }
    reply(200, &v, &[])
}
