//! A fake of the Google APIs the GCP backend uses, on 127.0.0.1: the OAuth
//! 2.0 token endpoint (JWT-bearer grant) and the Compute Engine v1 calls
//! `instances.insert/get/delete/list` and `zoneOperations.wait/get`.
//!
//! It follows the published references and refuses what they refuse, with
//! the error bodies Google returns:
//! - token endpoint, JWT assertion (header, claims, RS256 signature, at
//!   most an hour):
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>
//! - the `Instance` resource and its methods:
//!   <https://cloud.google.com/compute/docs/reference/rest/v1/instances>
//!   (`insert` needs `name`, `machineType`, a boot disk and a network
//!   interface; unknown fields are refused as "Invalid JSON payload")
//! - operations: <https://cloud.google.com/compute/docs/reference/rest/v1/zoneOperations/wait>
//!   (the request body must be empty)
//! - Confidential VM with TDX: <https://cloud.google.com/confidential-computing/confidential-vm/docs/supported-configurations>
//!   (`confidentialInstanceType: TDX` on C3 only, `onHostMaintenance:
//!   TERMINATE`; C3 takes no `pd-standard` disk)
//! - error catalogue: <https://cloud.google.com/compute/docs/troubleshooting/troubleshooting-vm-creation>
//!   (`ZONE_RESOURCE_POOL_EXHAUSTED`, `QUOTA_EXCEEDED` as operation errors;
//!   `quotaExceeded`, `rateLimitExceeded` as 403 reasons)
//!
//! Every request that breaks the reference is answered with Google's error
//! and recorded in [`GcpFake::rejections`]; tests assert that a conforming
//! backend produced none. Token requests are counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::Method;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use serde_json::{Value, json};

use crate::fake_server::{FakeServer, Req, json as reply, now_unix, random_token, rfc3339, router};

/// The scope the backend must ask for.
pub const COMPUTE_SCOPE: &str = "https://www.googleapis.com/auth/compute";

/// A failure the fake can be told to return for the next `instances.insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertFailure {
    /// The operation ends with `ZONE_RESOURCE_POOL_EXHAUSTED` (HTTP 503).
    ZoneResourcePoolExhausted,
    /// The operation ends with `QUOTA_EXCEEDED` (HTTP 403).
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

struct State {
    project: String,
    client_email: String,
    key_id: String,
    public_key: rsa::RsaPublicKey,
    token_path: String,
    zones: Vec<String>,
    machine_types: BTreeMap<String, (u32, u32)>,
    token_lifetime: u64,
    tokens: HashMap<String, u64>,
    token_requests: u64,
    instances: BTreeMap<(String, String), FakeInstance>,
    ops: HashMap<String, FakeOp>,
    next_id: u64,
    insert_failures: VecDeque<InsertFailure>,
    page_size: usize,
    rejections: Vec<String>,
    log: Vec<String>,
    inserted_bodies: Vec<Value>,
}

/// The fake; stopped on drop.
pub struct GcpFake {
    server: FakeServer,
    state: Arc<Mutex<State>>,
    key_pem: String,
}

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

impl GcpFake {
    /// Start a fake for `project` whose zones are `zones`, with a freshly
    /// minted service-account key.
    pub fn start(project: &str, zones: &[&str]) -> Self {
        let (key_pem, public_key) = new_key();
        let state = Arc::new(Mutex::new(State {
            project: project.to_string(),
            client_email: format!("bridge@{project}.iam.gserviceaccount.com"),
            key_id: format!("{:040x}", 0x5eed_u64),
            public_key,
            token_path: "/token".into(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            machine_types: MACHINE_TYPES
                .iter()
                .map(|(n, c, r)| (n.to_string(), (*c, *r)))
                .collect(),
            token_lifetime: 3599,
            tokens: HashMap::new(),
            token_requests: 0,
            instances: BTreeMap::new(),
            ops: HashMap::new(),
            next_id: 1,
            insert_failures: VecDeque::new(),
            page_size: 500,
            rejections: Vec::new(),
            log: Vec::new(),
            inserted_bodies: Vec::new(),
        }));
        let server = FakeServer::start("gcp", router(state.clone(), handle));
        Self {
            server,
            state,
            key_pem,
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.url(), self.st().token_path)
    }

    /// The service-account key file, as Google would hand it out, whose
    /// `token_uri` is this fake.
    pub fn key_json(&self) -> String {
        self.key_json_with(&self.key_pem)
    }

    /// A well-formed key file for the same account whose key the fake does
    /// not know (a deleted or foreign key).
    pub fn foreign_key_json(&self) -> String {
        self.key_json_with(&new_key().0)
    }

    fn key_json_with(&self, pem: &str) -> String {
        let s = self.st();
        json!({
            "type": "service_account",
            "project_id": s.project,
            "private_key_id": s.key_id,
            "private_key": pem,
            "client_email": s.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{}{}", self.server.url(), s.token_path),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// Tokens from now on live `secs` seconds.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.st().token_lifetime = secs;
    }

    /// Token requests answered (successfully or not).
    pub fn token_requests(&self) -> u64 {
        self.st().token_requests
    }

    /// A live token minted directly, without the token endpoint: for tests
    /// of the fake's own request checks.
    pub fn mint_token(&self) -> String {
        let mut s = self.st();
        let token = format!("ya29.fake-{}", random_token(24));
        let exp = now_unix() + s.token_lifetime;
        s.tokens.insert(token.clone(), exp);
        token
    }

    /// Invalidate every token issued so far (as if revoked).
    pub fn revoke_tokens(&self) {
        self.st().tokens.clear();
    }

    /// The next `instances.insert` fails this way.
    pub fn fail_next_insert(&self, f: InsertFailure) {
        self.st().insert_failures.push_back(f);
    }

    /// `instances.list` pages hold at most `n` items.
    pub fn set_page_size(&self, n: usize) {
        self.st().page_size = n.max(1);
    }

    /// Requests refused for breaking the API reference, as `METHOD path: why`.
    pub fn rejections(&self) -> Vec<String> {
        self.st().rejections.clone()
    }

    /// Every request, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.st().log.clone()
    }

    /// The bodies of accepted `instances.insert` calls.
    pub fn inserted(&self) -> Vec<Value> {
        self.st().inserted_bodies.clone()
    }

    /// Names of the instances that exist, with their zone.
    pub fn instances(&self) -> Vec<(String, String)> {
        self.st().instances.keys().cloned().collect()
    }

    /// The status of an instance.
    pub fn instance_status(&self, name: &str) -> Option<String> {
        self.st()
            .instances
            .values()
            .find(|i| i.name == name)
            .map(|i| i.status.clone())
    }

    /// Set an instance's status (`TERMINATED` as when the VM powered off).
    pub fn set_instance_status(&self, name: &str, status: &str) {
        let mut s = self.st();
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
        let mut s = self.st();
        let body = json!({"name": name, "machineType": format!("zones/{zone}/machineTypes/e2-small"), "labels": labels});
        let ip = format!("198.51.100.{}", s.next_id % 250 + 1);
        s.next_id += 1;
        let inst = new_instance(&s.project, zone, name, "e2-small", &ip, body);
        s.instances.insert((zone.into(), name.into()), inst);
    }
}

// ---------------------------------------------------------------- errors

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
    s.rejections.push(format!("{}: {message}", r.line()));
    google_error(code, status, reason, message)
}

fn invalid(s: &mut State, r: &Req, message: &str) -> Response {
    reject(s, r, 400, "INVALID_ARGUMENT", "invalid", message)
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
    s.rejections
        .push(format!("{}: {error}: {description}", r.line()));
    reply(
        400,
        &json!({"error": error, "error_description": description}),
        &[],
    )
}

// --------------------------------------------------------------- routing

fn handle(state: &Mutex<State>, r: Req) -> Response {
    let mut s = state.lock().unwrap();
    s.log.push(r.line());
    if r.path == s.token_path {
        return token(&mut s, &r);
    }
    let seg: Vec<&str> = r.segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["compute", "v1", "projects", p, "zones", z, rest @ ..] => {
            if let Some(resp) = authorize(&mut s, &r) {
                return resp;
            }
            if *p != s.project {
                return not_found(&format!("projects/{p}"));
            }
            if !s.zones.iter().any(|x| x == z) {
                return invalid(
                    &mut s,
                    &r,
                    &format!("Invalid value for field 'zone': '{z}'. Unknown zone."),
                );
            }
            let (p, z) = (p.to_string(), z.to_string());
            match (&r.method, rest) {
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
                    operation(&mut s, &p, &z, op, true)
                }
                (&Method::GET, ["operations", op]) => operation(&mut s, &p, &z, op, false),
                _ => reject(
                    &mut s,
                    &r,
                    404,
                    "NOT_FOUND",
                    "notFound",
                    "no such method in Compute Engine v1",
                ),
            }
        }
        _ => reject(&mut s, &r, 404, "NOT_FOUND", "notFound", "no such API"),
    }
}

/// `Authorization: Bearer <live token>`, else Google's 401.
fn authorize(s: &mut State, r: &Req) -> Option<Response> {
    let live = r
        .bearer()
        .and_then(|t| s.tokens.get(t))
        .is_some_and(|exp| *exp > now_unix());
    if live {
        return None;
    }
    let msg = "Request had invalid authentication credentials. Expected OAuth 2 access token, \
               login cookie or other valid authentication credential. \
               See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    s.rejections.push(format!(
        "{}: 401 {}",
        r.line(),
        if r.bearer().is_some() {
            "token not live"
        } else {
            "no bearer token"
        }
    ));
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
    s.token_requests += 1;
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
    let token = format!("ya29.fake-{}", random_token(24));
    s.tokens.insert(token.clone(), now + s.token_lifetime);
    reply(
        200,
        &json!({"access_token": token, "expires_in": s.token_lifetime, "token_type": "Bearer"}),
        &[],
    )
}

// ------------------------------------------------------------- instances

const INSTANCE_FIELDS: &[&str] = &[
    "name",
    "description",
    "machineType",
    "labels",
    "metadata",
    "tags",
    "disks",
    "networkInterfaces",
    "scheduling",
    "confidentialInstanceConfig",
    "shieldedInstanceConfig",
    "serviceAccounts",
    "minCpuPlatform",
    "canIpForward",
    "deletionProtection",
    "guestAccelerators",
    "reservationAffinity",
    "advancedMachineFeatures",
    "params",
];

fn is_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !n.ends_with('-')
}

fn is_label_part(v: &str, key: bool) -> bool {
    v.len() <= 63
        && (!key || v.starts_with(|c: char| c.is_ascii_lowercase()))
        && v.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn zone_url(project: &str, zone: &str) -> String {
    format!("https://www.googleapis.com/compute/v1/projects/{project}/zones/{zone}")
}

/// Check an `instances.insert` body against the reference; the reason if
/// it does not conform.
fn check_instance(s: &State, zone: &str, b: &Value) -> Result<String, String> {
    let obj = b
        .as_object()
        .ok_or("the request body must be an Instance object")?;
    for k in obj.keys() {
        if !INSTANCE_FIELDS.contains(&k.as_str()) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{k}\" at 'resource': Cannot find field."
            ));
        }
    }
    let name = b["name"]
        .as_str()
        .ok_or("Required field 'resource.name' not specified")?;
    if !is_name(name) {
        return Err(format!(
            "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
        ));
    }
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

    let disks = b["disks"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or("Required field 'resource.disks' not specified")?;
    let boot: Vec<&Value> = disks.iter().filter(|d| d["boot"] == true).collect();
    if boot.len() != 1 {
        return Err(
            "Invalid value for field 'resource.disks': exactly one boot disk is required".into(),
        );
    }
    let init = &boot[0]["initializeParams"];
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
    let disk_type = init["diskType"].as_str().unwrap_or("pd-standard");
    if family == "c3" && disk_type.ends_with("pd-standard") {
        return Err(format!(
            "[pd-standard] features are not compatible for creating instance with machine type {mt_name}."
        ));
    }

    let nics = b["networkInterfaces"]
        .as_array()
        .filter(|n| !n.is_empty())
        .ok_or("Required field 'resource.networkInterfaces' not specified")?;
    for nic in nics {
        for ac in nic["accessConfigs"].as_array().into_iter().flatten() {
            if ac["type"] != "ONE_TO_ONE_NAT" {
                return Err(
                    "Invalid value for field 'resource.networkInterfaces[0].accessConfigs[0].type'"
                        .into(),
                );
            }
        }
    }
    if let Some(labels) = b.get("labels") {
        let labels = labels.as_object().ok_or("labels must be a map")?;
        for (k, v) in labels {
            if !is_label_part(k, true) || !v.as_str().is_some_and(|v| is_label_part(v, false)) {
                return Err(format!(
                    "Invalid value for field 'resource.labels': label '{k}' has an invalid key or value"
                ));
            }
        }
    }
    if let Some(items) = b["metadata"].get("items") {
        let mut seen = Vec::new();
        for item in items.as_array().ok_or("metadata.items must be a list")? {
            let k = item["key"].as_str().ok_or("metadata items need a key")?;
            if item["value"].as_str().is_none() {
                return Err(format!("metadata item {k} needs a string value"));
            }
            if seen.contains(&k) {
                return Err(format!(
                    "Invalid value for field 'resource.metadata': duplicate key {k}"
                ));
            }
            seen.push(k);
        }
    }
    if let Some(cc) = b.get("confidentialInstanceConfig") {
        match cc["confidentialInstanceType"].as_str() {
            Some("TDX") => {
                if family != "c3" {
                    return Err(format!(
                        "Confidential Instance Config with TDX is only supported for compatible machine types (C3), not {mt_name}."
                    ));
                }
            }
            Some("SEV" | "SEV_SNP") => {}
            other => {
                return Err(format!(
                    "Invalid value for field 'resource.confidentialInstanceConfig.confidentialInstanceType': {other:?}"
                ));
            }
        }
        if b["scheduling"]["onHostMaintenance"] != "TERMINATE" {
            return Err("Instance with Confidential VM enabled requires onHostMaintenance to be set to TERMINATE.".into());
        }
    }
    Ok(mt_name.to_string())
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
    if let Some(nics) = r["networkInterfaces"].as_array_mut() {
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

fn insert(s: &mut State, r: &Req, project: &str, zone: &str) -> Response {
    if !r.content_type_is("application/json") {
        return invalid(
            s,
            r,
            "Invalid JSON payload received: Content-Type must be application/json",
        );
    }
    let body = match r.json() {
        Ok(b) => b,
        Err(e) => return invalid(s, r, &format!("Invalid JSON payload received. {e}")),
    };
    let mt = match check_instance(s, zone, &body) {
        Ok(mt) => mt,
        Err(why) => return invalid(s, r, &why),
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
    let op_error = match s.insert_failures.pop_front() {
        Some(InsertFailure::HttpQuotaExceeded) => {
            return google_error(
                403,
                "PERMISSION_DENIED",
                "quotaExceeded",
                "Quota 'C3_CPUS' exceeded.  Limit: 8.0 in region us-central1.",
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
                "message": "Quota 'C3_CPUS' exceeded.  Limit: 8.0 in region us-central1."}]}),
            403,
            "FORBIDDEN",
        )),
        None => None,
    };
    if op_error.is_none() {
        let ip = format!("203.0.113.{}", s.next_id % 250 + 1);
        s.next_id += 1;
        let inst = new_instance(project, zone, &name, &mt, &ip, body.clone());
        s.instances.insert((zone.to_string(), name.clone()), inst);
        s.inserted_bodies.push(body);
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
fn operation(s: &mut State, project: &str, zone: &str, name: &str, _wait: bool) -> Response {
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

/// `instances.list` with the filter grammar the backend uses:
/// `labels.KEY = "VALUE"` joined by `AND`.
fn list(s: &mut State, r: &Req, zone: &str) -> Response {
    let mut wanted: Vec<(String, String)> = Vec::new();
    if let Some(f) = r.query("filter") {
        for clause in f.split(" AND ") {
            let parsed = clause
                .trim()
                .strip_prefix("labels.")
                .and_then(|c| c.split_once(" = "))
                .and_then(|(k, v)| {
                    Some((
                        k.to_string(),
                        v.strip_prefix('"')?.strip_suffix('"')?.to_string(),
                    ))
                });
            match parsed {
                Some(p) => wanted.push(p),
                None => {
                    return invalid(
                        s,
                        r,
                        &format!(
                            "Invalid value for field 'filter': '{f}'. Invalid list filter expression."
                        ),
                    );
                }
            }
        }
    }
    let max = r
        .query("maxResults")
        .map(|m| m.parse::<usize>().unwrap_or(0))
        .unwrap_or(500);
    if !(1..=500).contains(&max) {
        return invalid(
            s,
            r,
            "Invalid value for field 'maxResults': must be between 0 and 500",
        );
    }
    let page = max.min(s.page_size);
    let offset: usize = match r.query("pageToken").map(str::parse) {
        None => 0,
        Some(Ok(o)) => o,
        Some(Err(_)) => return invalid(s, r, "Invalid value for field 'pageToken'"),
    };
    let project = s.project.clone();
    let matching: Vec<Value> = s
        .instances
        .values()
        .filter(|i| i.zone == zone)
        .filter(|i| {
            wanted
                .iter()
                .all(|(k, v)| i.resource["labels"][k.as_str()].as_str() == Some(v.as_str()))
        })
        .map(|i| instance_json(&project, i, i.created))
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
