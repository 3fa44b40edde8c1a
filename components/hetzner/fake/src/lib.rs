//! A fake of the Hetzner Cloud API the Hetzner backend uses, on 127.0.0.1:
//! servers (create, list, get, delete) and actions (get), with Bearer
//! token authentication, pagination and label selectors.
//!
//! It is a model of the published API, written from the reference, not
//! from the backend: every rule below names the section it follows. The
//! reference is <https://docs.hetzner.cloud> (read as its OpenAPI text:
//! the introduction's sections in `info.description`, the operations
//! `list_servers`, `create_server`, `get_server`, `delete_server` and
//! `get_action`). Its paths are under `/v1`, as on `api.hetzner.cloud`.
//!
//! What it refuses, and why (each with the reference's error body
//! `{"error": {"code", "message", "details"}}`, "Errors"):
//! - No `Authorization: Bearer` token, or one the project does not have:
//!   401 `unauthorized` ("Request was made with an invalid or unknown
//!   token", "Errors"; "All requests to the Hetzner Cloud API must be
//!   authenticated via a API token", "Authentication").
//! - A body that is not JSON: 400 `json_error` ("Errors").
//! - A create without `name`, `server_type` or `image` (the three
//!   `required` of `CreateServerRequest`), a `name` that is not a valid
//!   RFC 1123 host name ("Server names must be unique per Project and valid
//!   hostnames as per RFC 1123"), both `location` and `datacenter` ("must
//!   not be used together"), `user_data` over 32 KiB ("This field is
//!   limited to 32KiB"), labels the "Labels" rules refuse (or under the
//!   reserved `hetzner.cloud/` prefix), a server type, image, location or
//!   SSH key the project does not know, a `per_page` over 50 or a `page`
//!   or `per_page` under 1 ("Pagination": "the maximum value is 50"), a
//!   malformed `label_selector` ("Label Selector"): 422 `invalid_input`
//!   with `details.fields` naming the field ("Errors": "Error while parsing
//!   or processing the input"). **Not documented, the fake's choice:**
//!   which code the real API gives an unknown location, type, image or key
//!   (the fake says `invalid_input`), and what it does with a `per_page`
//!   over 50 (the fake refuses rather than clamping, so a client that asks
//!   for more is caught) or a malformed selector (the fake: 400
//!   `invalid_input`).
//! - A second server of a name the project has: 409 `uniqueness_error`
//!   ("One or more of the objects fields must be unique").
//! - Capacity: a location the test marks full ([`HetznerFake::set_full`])
//!   answers 412 `resource_unavailable` ("The requested resource is
//!   currently unavailable (e.g. not available for order)"); the next
//!   create can be told to fail with any documented code
//!   ([`HetznerFake::fail_next_create`]), e.g. 422 `placement_error`
//!   (create's own errors), 403 `resource_limit_exceeded`, 429
//!   `rate_limit_exceeded`, 500 `server_error`.
//! - An unknown server or action id: 404 `not_found`.
//!
//! Answers follow the reference: a create is 201 with `server` (status
//! `initializing`, its public IPv4 already set, as the example shows),
//! `action` (`create_server`, `running`), `next_actions` (`start_server`
//! when `start_after_create`, default true) and `root_password` (set only
//! without `ssh_keys`: "If you do not specify any `ssh_keys` we will
//! generate a root password"). Each action answers `running` to
//! [`HetznerFake::set_polls_per_action`] gets, then `success`; the server
//! is then `running` (or `off` without `start_after_create`). A delete
//! "immediately removes the Server" and answers 200 with a `delete_server`
//! action. Lists carry `meta.pagination` (`page`, `per_page`,
//! `previous_page`, `next_page`, `last_page`, `total_entries`, "Pagination")
//! and a `Link` header.
//!
//! Every request that breaks the reference is recorded in
//! [`HetznerFake::rejections`]; answers a real project gives to a
//! well-formed request (capacity, limits, rate limits) are not rejections.

pub mod selector;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use cb_fake_server::{Fake, Recorder, Req, json as reply, now_unix, random_token, rfc3339};

use crate::selector::{Selector, valid_key, valid_value};

/// The server types the fake's project can order: (name, cores, memory in
/// GB), as `server_type` objects carry them.
pub const SERVER_TYPES: &[(&str, u32, f64)] = &[
    ("cx22", 2, 4.0),
    ("cx32", 4, 8.0),
    ("cpx31", 4, 8.0),
    ("cx42", 8, 16.0),
];
/// Images it knows, by name.
pub const IMAGES: &[&str] = &["ubuntu-22.04", "ubuntu-24.04", "debian-12"];
/// Locations it has: (name, network zone).
pub const LOCATIONS: &[(&str, &str)] = &[
    ("fsn1", "eu-central"),
    ("nbg1", "eu-central"),
    ("hel1", "eu-central"),
    ("ash", "us-east"),
];
/// SSH keys of the project, by name.
pub const SSH_KEYS: &[&str] = &["operator"];

/// A documented error the next create answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateFailure {
    /// 412 `resource_unavailable`.
    ResourceUnavailable,
    /// 422 `placement_error`.
    PlacementError,
    /// 403 `resource_limit_exceeded`.
    ResourceLimitExceeded,
    /// 429 `rate_limit_exceeded`.
    RateLimited,
    /// 500 `server_error`.
    ServerError,
    /// The create action ends in `error` (`placement_error`) and the
    /// server it made is left, `off`.
    ActionFails,
}

#[derive(Debug, Clone)]
struct Server {
    id: u64,
    name: String,
    status: String,
    created: u64,
    server_type: &'static (&'static str, u32, f64),
    location: &'static (&'static str, &'static str),
    image: String,
    labels: BTreeMap<String, String>,
    ipv4: String,
    traffic: (u64, u64),
}

#[derive(Debug, Clone)]
struct Action {
    id: u64,
    command: &'static str,
    server: u64,
    started: u64,
    polls_left: u32,
    fails: bool,
    /// The server's status once the action succeeds.
    then: Option<&'static str>,
}

struct State {
    token: String,
    servers: BTreeMap<u64, Server>,
    actions: HashMap<u64, Action>,
    next_id: u64,
    polls_per_action: u32,
    full: Vec<String>,
    failures: VecDeque<CreateFailure>,
    recorder: Recorder,
    created: Vec<Value>,
}

/// The fake; stopped on drop.
pub struct HetznerFake {
    fake: Fake<State>,
}

cb_fake_server::recorder_accessors!(HetznerFake, |f| f.fake.state().recorder);

fn api_error(status: u16, code: &str, message: &str, details: Value) -> Response {
    reply(
        status,
        &json!({"error": {"code": code, "message": message, "details": details}}),
        &[],
    )
}

/// 422 `invalid_input` naming `field`, and a rejection.
fn invalid(s: &mut State, r: &Req, field: &str, msg: &str) -> Response {
    reject(
        s,
        r,
        422,
        "invalid_input",
        &format!("invalid input in field '{field}': {msg}"),
        json!({"fields": [{"name": field, "messages": [msg]}]}),
    )
}

fn reject(s: &mut State, r: &Req, status: u16, code: &str, msg: &str, details: Value) -> Response {
    s.recorder.reject(r, format_args!("{code}: {msg}"));
    api_error(status, code, msg, details)
}

impl HetznerFake {
    /// Start a fake whose project accepts one token ([`HetznerFake::token`]).
    pub fn start() -> Self {
        let state = State {
            token: random_token(48),
            servers: BTreeMap::new(),
            actions: HashMap::new(),
            next_id: 1000,
            polls_per_action: 1,
            full: Vec::new(),
            failures: VecDeque::new(),
            recorder: Recorder::with_queries(),
            created: Vec::new(),
        };
        Self {
            fake: Fake::start("hetzner", state, handle),
        }
    }

    /// `http://127.0.0.1:PORT` (the allowed origin).
    pub fn origin(&self) -> String {
        self.fake.url()
    }

    /// `http://127.0.0.1:PORT/v1`, the API root (`api_url`).
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.fake.url())
    }

    /// The project's API token.
    pub fn token(&self) -> String {
        self.fake.state().token.clone()
    }

    /// Gets each action answers `running` before `success`.
    pub fn set_polls_per_action(&self, n: u32) {
        self.fake.state().polls_per_action = n;
    }

    /// Mark `location` out of capacity (every create there answers 412
    /// `resource_unavailable`), or back.
    pub fn set_full(&self, location: &str, full: bool) {
        let mut s = self.fake.state();
        s.full.retain(|l| l != location);
        if full {
            s.full.push(location.to_string());
        }
    }

    /// The next create fails this way.
    pub fn fail_next_create(&self, f: CreateFailure) {
        self.fake.state().failures.push_back(f);
    }

    /// The JSON bodies of accepted creates, in order.
    pub fn created(&self) -> Vec<Value> {
        self.fake.state().created.clone()
    }

    /// The servers that exist: (id, name, status, labels).
    pub fn servers(&self) -> Vec<(u64, String, String, BTreeMap<String, String>)> {
        self.fake
            .state()
            .servers
            .values()
            .map(|s| (s.id, s.name.clone(), s.status.clone(), s.labels.clone()))
            .collect()
    }

    /// Set a server's `status` (e.g. `off`: the workload powered it off).
    pub fn set_status(&self, name: &str, status: &str) {
        let mut s = self.fake.state();
        for server in s.servers.values_mut().filter(|v| v.name == name) {
            server.status = status.to_string();
        }
    }

    /// Set a server's traffic counters (bytes in, out).
    pub fn set_traffic(&self, name: &str, ingoing: u64, outgoing: u64) {
        let mut s = self.fake.state();
        for server in s.servers.values_mut().filter(|v| v.name == name) {
            server.traffic = (ingoing, outgoing);
        }
    }

    /// A running server made outside the backend (another tool, a leak),
    /// with `labels`; its id.
    pub fn add_server(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut s = self.fake.state();
        let id = s.next_id;
        s.next_id += 1;
        let server = Server {
            id,
            name: name.to_string(),
            status: "running".into(),
            created: now_unix(),
            server_type: &SERVER_TYPES[0],
            location: &LOCATIONS[0],
            image: IMAGES[1].into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ipv4: format!("203.0.113.{}", id % 250 + 1),
            traffic: (0, 0),
        };
        s.servers.insert(id, server);
        id
    }
}

impl Server {
    fn json(&self) -> Value {
        let (t, cores, memory) = self.server_type;
        let (loc, zone) = self.location;
        let location = json!({"id": 1, "name": loc, "network_zone": zone, "description": loc,
            "country": "DE", "city": loc, "latitude": 0.0, "longitude": 0.0});
        json!({
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created": rfc3339(self.created, 0),
            "public_net": {
                "ipv4": {"id": self.id + 1, "ip": self.ipv4, "blocked": false,
                         "dns_ptr": format!("static.{}.clients.your-server.de", self.ipv4)},
                "ipv6": null,
                "floating_ips": [],
                "firewalls": []
            },
            "private_net": [],
            "server_type": {"id": 1, "name": t, "description": t.to_uppercase(),
                            "cores": cores, "memory": memory, "disk": 40,
                            "deprecated": false, "cpu_type": "shared",
                            "architecture": "x86", "storage_type": "local"},
            "location": location,
            "datacenter": {"id": 1, "name": format!("{loc}-dc1"), "description": loc,
                           "location": location},
            "image": {"id": 1, "type": "system", "name": self.image, "status": "available"},
            "iso": null,
            "rescue_enabled": false,
            "locked": false,
            "backup_window": null,
            "outgoing_traffic": self.traffic.1,
            "ingoing_traffic": self.traffic.0,
            "included_traffic": 21_990_232_555_520u64,
            "protection": {"delete": false, "rebuild": false},
            "labels": self.labels,
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": 40,
            "placement_group": null
        })
    }
}

impl Action {
    fn json(&self) -> Value {
        let running = self.polls_left > 0;
        let status = if running {
            "running"
        } else if self.fails {
            "error"
        } else {
            "success"
        };
        json!({
            "id": self.id,
            "command": self.command,
            "status": status,
            "progress": if running { 0 } else { 100 },
            "started": rfc3339(self.started, 0),
            "finished": if running { Value::Null } else { json!(rfc3339(now_unix(), 0)) },
            "resources": [{"id": self.server, "type": "server"}],
            "error": if !running && self.fails {
                json!({"code": "placement_error", "message": "An error during the placement occurred"})
            } else { Value::Null },
        })
    }
}

/// A host name as RFC 1123 allows: labels of 1 to 63 letters, digits and
/// `-`, not starting or ending with `-`, dots between, 253 at most.
fn valid_hostname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn handle(state: &Mutex<State>, r: Req) -> Response {
    let mut s = state.lock().unwrap();
    s.recorder.request(&r);
    // "Authentication": every request carries the project's token.
    if r.bearer() != Some(s.token.as_str()) {
        return api_error(401, "unauthorized", "unable to authenticate", Value::Null);
    }
    let segs: Vec<&str> = r.segments.iter().map(String::as_str).collect();
    match (&r.method, segs.as_slice()) {
        (&Method::GET, ["v1", "servers"]) => list_servers(&mut s, &r),
        (&Method::POST, ["v1", "servers"]) => create_server(&mut s, &r),
        (&Method::GET, ["v1", "servers", id]) => match server_id(&s, id) {
            Some(id) => reply(200, &json!({"server": s.servers[&id].json()}), &[]),
            None => not_found("server"),
        },
        (&Method::DELETE, ["v1", "servers", id]) => match server_id(&s, id) {
            Some(id) => delete_server(&mut s, id),
            None => not_found("server"),
        },
        (&Method::GET, ["v1", "actions", id]) => get_action(&mut s, id),
        _ => reject(
            &mut s,
            &r,
            404,
            "not_found",
            "no such endpoint in the fake's model",
            Value::Null,
        ),
    }
}

fn server_id(s: &State, id: &str) -> Option<u64> {
    id.parse::<u64>()
        .ok()
        .filter(|id| s.servers.contains_key(id))
}

/// 404 `not_found`: not a rejection (a deleted server is a normal answer).
fn not_found(what: &str) -> Response {
    api_error(404, "not_found", &format!("{what} not found"), Value::Null)
}

fn get_action(s: &mut State, id: &str) -> Response {
    let Some(action) = id.parse::<u64>().ok().and_then(|id| s.actions.get_mut(&id)) else {
        return not_found("action");
    };
    let body = action.json();
    if action.polls_left > 0 {
        action.polls_left -= 1;
        if action.polls_left == 0 {
            let (server, fails, then) = (action.server, action.fails, action.then);
            if let Some(server) = s.servers.get_mut(&server) {
                server.status = if fails { "off" } else { then.unwrap_or("off") }.to_string();
            }
        }
    }
    reply(200, &json!({"action": body}), &[])
}

/// "Pagination": `page` from 1, `per_page` 25 by default and 50 at most;
/// a refusal names the parameter and why.
fn page_params(r: &Req) -> Result<(usize, usize), (&'static str, &'static str)> {
    let parse = |name: &'static str, default: usize| match r.query(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err((name, "must be a whole number of at least 1")),
        },
    };
    let page = parse("page", 1)?;
    let per_page = parse("per_page", 25)?;
    if per_page > 50 {
        return Err(("per_page", "the maximum value is 50"));
    }
    Ok((page, per_page))
}

fn list_servers(s: &mut State, r: &Req) -> Response {
    let (page, per_page) = match page_params(r) {
        Ok(p) => p,
        Err((field, why)) => return invalid(s, r, field, why),
    };
    let sel = match r.query("label_selector").map(Selector::parse) {
        None => None,
        Some(Ok(sel)) => Some(sel),
        Some(Err(e)) => {
            return reject(
                s,
                r,
                400,
                "invalid_input",
                &format!("invalid label_selector: {e}"),
                json!({"fields": [{"name": "label_selector", "messages": [e]}]}),
            );
        }
    };
    let name = r.query("name");
    let statuses: Vec<&str> = r
        .query
        .iter()
        .filter(|(k, _)| k == "status")
        .map(|(_, v)| v.as_str())
        .collect();
    let all: Vec<Value> = s
        .servers
        .values()
        .filter(|v| name.is_none_or(|n| v.name == n))
        .filter(|v| sel.as_ref().is_none_or(|sel| sel.matches(&v.labels)))
        .filter(|v| statuses.is_empty() || statuses.contains(&v.status.as_str()))
        .map(Server::json)
        .collect();
    let total = all.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let next = (page < last).then_some(page + 1);
    let prev = (page > 1).then_some((page - 1).min(last));
    let link =
        |p: usize, rel: &str| format!("</v1/servers?page={p}&per_page={per_page}>; rel=\"{rel}\"");
    let mut links: Vec<String> = Vec::new();
    if let Some(p) = prev {
        links.push(link(p, "prev"));
    }
    if let Some(n) = next {
        links.push(link(n, "next"));
    }
    links.push(link(last, "last"));
    reply(
        200,
        &json!({
            "servers": items,
            "meta": {"pagination": {
                "page": page, "per_page": per_page,
                "previous_page": prev, "next_page": next,
                "last_page": last, "total_entries": total
            }}
        }),
        &[("link", links.join(", "))],
    )
}

fn create_server(s: &mut State, r: &Req) -> Response {
    let body = match r.json() {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return reject(
                s,
                r,
                400,
                "json_error",
                "the body must be a JSON object",
                Value::Null,
            );
        }
        Err(e) => {
            return reject(
                s,
                r,
                400,
                "json_error",
                &format!("invalid JSON: {e}"),
                Value::Null,
            );
        }
    };
    // `CreateServerRequest.required`: name, server_type, image.
    for field in ["name", "server_type", "image"] {
        if !body.get(field).is_some_and(Value::is_string) {
            return invalid(s, r, field, "is required and must be a string");
        }
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if !valid_hostname(&name) {
        return invalid(s, r, "name", "must be a valid hostname as per RFC 1123");
    }
    let Some(stype) = SERVER_TYPES
        .iter()
        .find(|t| Some(t.0) == body["server_type"].as_str())
    else {
        return invalid(s, r, "server_type", "server type not found");
    };
    let image = body["image"].as_str().unwrap_or_default().to_string();
    if !IMAGES.contains(&image.as_str()) {
        return invalid(s, r, "image", "image not found");
    }
    if body.contains_key("location") && body.contains_key("datacenter") {
        return invalid(
            s,
            r,
            "location",
            "must not be used together with datacenter",
        );
    }
    let location = match body.get("location") {
        None => &LOCATIONS[0],
        Some(Value::String(l)) => match LOCATIONS.iter().find(|(n, _)| n == l) {
            Some(loc) => loc,
            None => return invalid(s, r, "location", "location not found"),
        },
        Some(_) => return invalid(s, r, "location", "must be a string"),
    };
    if let Some(ud) = body.get("user_data") {
        match ud.as_str() {
            Some(t) if t.len() <= 32 * 1024 => {}
            Some(_) => return invalid(s, r, "user_data", "is limited to 32KiB"),
            None => return invalid(s, r, "user_data", "must be a string"),
        }
    }
    let keys: Vec<Value> = match body.get("ssh_keys") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return invalid(s, r, "ssh_keys", "must be an array"),
    };
    for k in &keys {
        if !k.as_str().is_some_and(|k| SSH_KEYS.contains(&k)) {
            return invalid(s, r, "ssh_keys", &format!("SSH key {k} not found"));
        }
    }
    let mut labels = BTreeMap::new();
    match body.get("labels") {
        None => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let Some(v) = v.as_str() else {
                    return invalid(s, r, "labels", &format!("value of {k:?} must be a string"));
                };
                // "Labels": key and value syntax; `hetzner.cloud/` is reserved.
                if !valid_key(k) || k.starts_with("hetzner.cloud/") {
                    return invalid(s, r, "labels", &format!("{k:?} is not a valid label key"));
                }
                if !valid_value(v) {
                    return invalid(s, r, "labels", &format!("{v:?} is not a valid label value"));
                }
                labels.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return invalid(s, r, "labels", "must be an object"),
    }
    let start = match body.get("start_after_create") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return invalid(s, r, "start_after_create", "must be a boolean"),
    };
    // "Errors": 409 `uniqueness_error`, names are unique per project.
    if s.servers.values().any(|v| v.name == name) {
        return api_error(
            409,
            "uniqueness_error",
            "server name is already used",
            json!({"fields": [{"name": "name"}]}),
        );
    }
    let mut action_fails = false;
    if let Some(f) = s.failures.pop_front() {
        let (status, code, msg) = match f {
            CreateFailure::ResourceUnavailable => {
                (412, "resource_unavailable", "server type unavailable")
            }
            CreateFailure::PlacementError => (
                422,
                "placement_error",
                "An error during the placement occurred",
            ),
            CreateFailure::ResourceLimitExceeded => {
                (403, "resource_limit_exceeded", "server limit exceeded")
            }
            CreateFailure::RateLimited => (
                429,
                "rate_limit_exceeded",
                "limit of 3600 requests per hour reached",
            ),
            CreateFailure::ServerError => (500, "server_error", "Error within the API backend"),
            CreateFailure::ActionFails => (0, "", ""),
        };
        if status != 0 {
            return api_error(status, code, msg, Value::Null);
        }
        action_fails = true;
    }
    if s.full.iter().any(|l| l == location.0) {
        return api_error(
            412,
            "resource_unavailable",
            &format!(
                "server type {} is unavailable in location {}",
                stype.0, location.0
            ),
            Value::Null,
        );
    }
    let id = s.next_id;
    s.next_id += 3;
    let mut server = Server {
        id,
        name,
        status: "initializing".into(),
        created: now_unix(),
        server_type: stype,
        location,
        image,
        labels,
        ipv4: format!("203.0.113.{}", id % 250 + 1),
        traffic: (0, 0),
    };
    let action = Action {
        id: id + 1,
        command: "create_server",
        server: id,
        started: now_unix(),
        polls_left: s.polls_per_action,
        fails: action_fails,
        then: Some(if start { "running" } else { "off" }),
    };
    let start_action = Action {
        id: id + 2,
        command: "start_server",
        server: id,
        started: now_unix(),
        polls_left: s.polls_per_action,
        fails: false,
        then: None,
    };
    let answer = json!({
        "server": server.json(),
        "action": action.json(),
        "next_actions": if start { json!([start_action.json()]) } else { json!([]) },
        "root_password": if keys.is_empty() { json!(random_token(15)) } else { Value::Null },
    });
    if action.polls_left == 0 {
        // Done at once: the server is in its final state already.
        server.status = if action_fails {
            "off"
        } else {
            action.then.unwrap_or("off")
        }
        .into();
    }
    s.created.push(Value::Object(body));
    s.servers.insert(id, server);
    s.actions.insert(action.id, action);
    if start {
        s.actions.insert(start_action.id, start_action);
    }
    reply(201, &answer, &[])
}

fn delete_server(s: &mut State, id: u64) -> Response {
    // "Deletes a Server. This immediately removes the Server from your account."
    s.servers.remove(&id);
    let aid = s.next_id;
    s.next_id += 1;
    let action = Action {
        id: aid,
        command: "delete_server",
        server: id,
        started: now_unix(),
        polls_left: s.polls_per_action,
        fails: false,
        then: None,
    };
    let body = json!({"action": action.json()});
    s.actions.insert(aid, action);
    reply(200, &body, &[])
}
