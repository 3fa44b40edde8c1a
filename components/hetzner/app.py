"""The Hetzner Cloud backend: one Hetzner Cloud server per grant, written in
Python and built with componentize-py against wit/ (world `backend`).

# Configuration

```toml
[[backends]]
name = "hetzner"
component = "hetzner.wasm"            # built with componentize-py (README.md)
call_timeout_sec = 120
memory_limit_mib = 128
[backends.http]
allowed_hosts = ["https://api.hetzner.cloud"]
[backends.config]
api_token = "${HCLOUD_TOKEN}"          # a Read & Write API token of the project
# image = "ubuntu-24.04"
# ssh_keys = ["operator"]              # project SSH keys for root (none: Hetzner sets a root password it never shows here)
max_cpu_millicores = 32000
max_ram_mib = 65536
[[backends.config.server_types]]
name = "cx22"
cpus = 2
ram_mib = 4096
eur_per_hour = 0.0074
locations = ["fsn1", "nbg1", "hel1"]
```

| key | meaning |
|-----|---------|
| `api_token` | the project's API token, usually `"${ENV}"` (required); never logged |
| `server_types` | the catalog: `name`, `cpus`, `ram_mib`, `eur_per_hour` (optional), `locations` (preference order) |
| `image` | the image every server boots (`ubuntu-24.04` by default; it must run cloud-init and docker.io) |
| `ssh_keys` | names or ids of project SSH keys for root, optional |
| `max_cpu_millicores`, `max_ram_mib` | what the backend offers in total (default 32 cores, 128 GiB) |
| `api_url` | the API root (default `https://api.hetzner.cloud/v1`; tests point it at a fake) |

# What it does, against the published API (https://docs.hetzner.cloud)

- capabilities: the catalog's locations as regions, in order; never TDX
  (Hetzner Cloud has no TDX guests); the configured totals. No request.
- can-satisfy: an image pinned by digest and a catalog type with enough
  vCPUs and memory in the grant's region (any, without one); not TDX
  `required`. No request.
- provision: the cheapest type that fits, its first location there;
  `POST /v1/servers` ("Create a Server") with `name` (`cb-` and 16 hex
  digits of SHA-256(provider/request): a valid RFC 1123 host name that
  names no request), `server_type`, `image`, `location`, `user_data` (the
  SDK's bootstrap script: cloud-init runs it, creating the login with the
  workload's key and running the pinned image once), `ssh_keys` if
  configured, and labels `cb-provider`, `cb-backend`, `cb-request`,
  `cb-user` (values as the "Labels" rules allow). It then follows the
  returned action (`GET /v1/actions/{id}`, "Actions": wait until
  `success` or `error`) and answers with the server's
  `public_net.ipv4.ip`, port 22 and the workload's login. A server of
  that name that already exists (409 `uniqueness_error`) is this grant's
  own, made by an earlier try: it is found (`GET /v1/servers?name=`) and
  adopted if its labels are this provider's and backend's. An answer lost
  (no response, 5xx) looks for the server by name up to three times, a
  second apart, and deletes it before answering `transient`; a failed
  create action, or no address, deletes the server too.
- status: `GET /v1/servers/{id}`; `running` is running, `initializing`,
  `starting`, `migrating`, `rebuilding` and `unknown` are starting,
  `stopping`, `off` and `deleting` are `exited(-1)` (the VM powers off
  when the workload ends; the API cannot tell its exit code); 404 gone.
- usage: allocated x time, the type's vCPUs and memory from `created` to
  now (Hetzner bills a server until it is deleted, and records no stop
  time); network: `ingoing_traffic` + `outgoing_traffic` of the current
  billing period (0 once the server is gone).
- terminate: `DELETE /v1/servers/{id}` and its action; 404 is done.
- list-instances: `GET /v1/servers?label_selector=cb-provider==P,cb-backend==B`
  ("Label Selector"), every page (`per_page=50`, the documented maximum;
  `meta.pagination.next_page` until null, "Pagination").

# Errors ("Errors" of the API reference: `{"error": {"code", "message"}}`)

| status | code | becomes |
|---|---|---|
| 412 | `resource_unavailable` | `no-capacity` (the type is not available for order there now) |
| 422 | `placement_error` | `no-capacity` (create's own error: placement failed) |
| 403 | `resource_limit_exceeded` | `no-capacity` (the project's limit) |
| 429 | `rate_limit_exceeded` | `transient` |
| 409/423 | `conflict`, `locked` | `transient` |
| 403 | `maintenance` | `transient` |
| 5xx | `server_error`, `unavailable`, `timeout`, ... | `transient` (a create first looks for what it made) |
| 401 | `unauthorized`, `token_readonly` | `config` naming `api_token` (never its value) |
| 403 | `forbidden` | `config` naming `api_token` |
| 422, 404 | `invalid_input`, `not_found` (create) | `config` naming `server_types`, `image`, `ssh_keys` |
| 409 | `uniqueness_error` (create) | adopted (see provision) |
| 400 | `json_error` and the rest | `internal` |
| before any call | | `rejected`: no type fits, or the image is not pinned |
"""

import datetime
import hashlib
import json

import bridge_sdk as sdk
from wit_world import exports

API_URL = "https://api.hetzner.cloud/v1"
DEFAULT_IMAGE = "ubuntu-24.04"
# "Pagination": the default is 25, the maximum 50.
PER_PAGE = 50
# At most 10,000 instances (the contract's bound) at 50 a page.
MAX_PAGES = 200
# Polls of an action, a second apart.
ACTION_POLLS = 90
# Looks for what a create whose answer was lost may have made.
ABANDON_LOOKS = 3

LABEL_PROVIDER = "cb-provider"
LABEL_BACKEND = "cb-backend"
LABEL_REQUEST = "cb-request"
LABEL_USER = "cb-user"

CAPACITY = {"resource_unavailable", "placement_error", "resource_limit_exceeded"}
PASSING = {"rate_limit_exceeded", "conflict", "locked", "maintenance", "server_error",
           "unavailable", "timeout", "bad_gateway", "service_error", "robot_unavailable"}
TOKEN = {"unauthorized", "token_readonly", "forbidden"}

# ----------------------------------------------------------------- config


def load_config():
    """The `[backends.config]` table, checked; errors name the key."""
    cfg = sdk.config()
    known = {"api_token", "server_types", "image", "ssh_keys", "max_cpu_millicores",
             "max_ram_mib", "api_url"}
    for key in cfg:
        if key not in known:
            raise sdk.Config(f"`{key}`: unknown key; this backend takes {', '.join(sorted(known))}")
    sdk.require(cfg, "api_token")
    types = cfg.get("server_types", [])
    if not isinstance(types, list):
        raise sdk.Config("`server_types`: expected an array of tables")
    for i, t in enumerate(types):
        where = f"`server_types[{i}]`"
        if not isinstance(t, dict):
            raise sdk.Config(f"{where}: expected a table")
        for k, kind in (("name", str), ("cpus", int), ("ram_mib", int), ("locations", list)):
            if not isinstance(t.get(k), kind) or t.get(k) in ("", 0):
                raise sdk.Config(f"{where}.{k}: missing or not a {kind.__name__}")
        if not t["locations"] or not all(isinstance(l, str) and l for l in t["locations"]):
            raise sdk.Config(f"{where}.locations: a non-empty list of location names (fsn1, nbg1, ...)")
        price = t.get("eur_per_hour", 0)
        if not isinstance(price, (int, float)) or price < 0:
            raise sdk.Config(f"{where}.eur_per_hour: a non-negative number")
    for key in ("image", "api_url"):
        if key in cfg and not isinstance(cfg[key], str):
            raise sdk.Config(f"`{key}`: expected a string")
    url = cfg.get("api_url", API_URL)
    if not (url.startswith("https://") or url.startswith("http://")):
        raise sdk.Config("`api_url` must be an http(s) URL")
    keys = cfg.get("ssh_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, (str, int)) for k in keys):
        raise sdk.Config("`ssh_keys`: a list of SSH key names or ids")
    for key, default in (("max_cpu_millicores", 32_000), ("max_ram_mib", 131_072)):
        v = cfg.get(key, default)
        if not isinstance(v, int) or v < 0 or v > 0xFFFF_FFFF:
            raise sdk.Config(f"`{key}`: a whole number")
        cfg[key] = v
    cfg["api_url"] = url.rstrip("/")
    cfg["server_types"] = types
    cfg.setdefault("image", DEFAULT_IMAGE)
    cfg["ssh_keys"] = keys
    return cfg


def regions(cfg):
    """The catalog's locations, first-listed order, each once."""
    out = []
    for t in cfg["server_types"]:
        for loc in t["locations"]:
            if loc not in out:
                out.append(loc)
    return out


def pick(cfg, grant):
    """(type, location): the cheapest type with enough vCPUs and memory in
    the grant's region (catalog order breaks ties), its first location
    there; None when nothing fits or TDX is required."""
    if grant.tdx == sdk.TdxRequirement.REQUIRED:
        return None
    if grant.cpu_millicores > cfg["max_cpu_millicores"] or grant.ram_mib > cfg["max_ram_mib"]:
        return None
    cpus = -(-grant.cpu_millicores // 1000)
    fits = []
    for i, t in enumerate(cfg["server_types"]):
        if t["cpus"] < cpus or t["ram_mib"] < grant.ram_mib:
            continue
        places = [l for l in t["locations"] if grant.region is None or l == grant.region]
        if places:
            fits.append((t.get("eur_per_hour", 0), i, t, places[0]))
    if not fits:
        return None
    fits.sort(key=lambda f: (f[0], f[1]))
    return fits[0][2], fits[0][3]


# ------------------------------------------------------------------ names


def server_name(provider, request_id):
    """`cb-` and 16 hex digits of SHA-256(provider/request): a valid host
    name that carries nothing the requester chose (it reaches the log)."""
    return "cb-" + hashlib.sha256(f"{provider}/{request_id}".encode()).hexdigest()[:16]


def label_value(s):
    """A label value the "Labels" rules allow: at most 63 of `[a-zA-Z0-9._-]`,
    starting and ending with an alphanumeric (other characters become `-`)."""
    v = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in s)[:63]
    v = v.strip("._-")
    return v or "none"


def selector(provider, backend, request_id=None):
    """The label selector ("Label Selector": `k==v` terms, comma = and)."""
    terms = [(LABEL_PROVIDER, provider), (LABEL_BACKEND, backend)]
    if request_id is not None:
        terms.append((LABEL_REQUEST, request_id))
    return ",".join(f"{k}=={label_value(v)}" for k, v in terms)


# ------------------------------------------------------------------- API


def api_error(resp, what):
    """A non-2xx answer as the backend error its code maps to (module docs)."""
    try:
        err = json.loads(resp.body or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    code = err.get("code") or f"HTTP {resp.status}"
    message = err.get("message") or resp.text()[:300]
    text = f"{what}: Hetzner answered {resp.status} {code}: {message}"
    if code in CAPACITY:
        return sdk.NoCapacity(text)
    if code in PASSING or resp.status == 429 or resp.status >= 500:
        return sdk.Transient(text)
    if code in TOKEN or resp.status in (401, 403):
        return sdk.Config(f"{text} (check `api_token`: a Read & Write token of the project)")
    return sdk.Internal(text)


class Api:
    """Hetzner Cloud's REST API with the configured token."""

    def __init__(self, cfg):
        self.base = cfg["api_url"]
        self.headers = [("authorization", f"Bearer {cfg['api_token']}"),
                        ("accept", "application/json")]

    def send(self, method, path, body=None):
        headers = list(self.headers)
        data = b""
        if body is not None:
            headers.append(("content-type", "application/json"))
            data = json.dumps(body).encode()
        return sdk.request(method, self.base + path, headers, data)

    def server(self, server_id):
        """The server, or None if it does not exist."""
        resp = self.send("GET", f"/servers/{server_id}")
        if resp.status == 404:
            return None
        if not resp.ok():
            raise api_error(resp, f"GET /servers/{server_id}")
        return resp.json()["server"]

    def by_name(self, name):
        """The server called `name`, or None."""
        resp = self.send("GET", f"/servers?name={sdk.quote(name)}")
        if not resp.ok():
            raise api_error(resp, "GET /servers?name=")
        servers = resp.json().get("servers") or []
        return servers[0] if servers else None

    def wait(self, action, what):
        """Follow `action` until it ends ("Actions"); its error, mapped."""
        for _ in range(ACTION_POLLS):
            status = action.get("status")
            if status == "success":
                return
            if status == "error":
                err = action.get("error") or {}
                code, msg = err.get("code", "error"), err.get("message", "")
                text = f"{what}: action {action.get('command')} failed: {code}: {msg}"
                if code in CAPACITY:
                    raise sdk.NoCapacity(text)
                raise sdk.Transient(text)
            sdk.sleep(1)
            resp = self.send("GET", f"/actions/{action['id']}")
            if not resp.ok():
                raise api_error(resp, f"GET /actions/{action['id']}")
            action = resp.json()["action"]
        raise sdk.Transient(f"{what}: action {action.get('id')} still running after {ACTION_POLLS} polls")

    def delete(self, server_id):
        """Delete the server and follow the action; gone already is done."""
        resp = self.send("DELETE", f"/servers/{server_id}")
        if resp.status == 404:
            return
        if not resp.ok():
            raise api_error(resp, f"DELETE /servers/{server_id}")
        action = resp.json().get("action")
        if action:
            self.wait(action, f"deleting server {server_id}")


# ----------------------------------------------------------------- the backend


class Hetzner:
    """One call's backend: the configuration, provider and backend name."""

    def __init__(self):
        self.cfg = load_config()
        self.provider = sdk.provider_id()
        self.backend = sdk.backend_name()
        self.api = Api(self.cfg)

    def offer(self):
        return sdk.Offer(
            regions=regions(self.cfg),
            tdx_capable=False,
            max_cpu_millicores=self.cfg["max_cpu_millicores"],
            max_ram_mib=self.cfg["max_ram_mib"],
            td_measurements=[],
        )

    def can_satisfy(self, grant):
        try:
            sdk.pinned_image(grant.image)
        except sdk.Rejected:
            return False
        return pick(self.cfg, grant) is not None

    def provision(self, grant, workload):
        sdk.pinned_image(grant.image)
        choice = pick(self.cfg, grant)
        if choice is None:
            raise sdk.Rejected(
                "no server type in `server_types` fits this grant's size and region "
                "(and Hetzner Cloud has no TDX guests)")
        stype, location = choice
        name = server_name(self.provider, grant.request_id)
        body = {
            "name": name,
            "server_type": stype["name"],
            "image": self.cfg["image"],
            "location": location,
            "start_after_create": True,
            "user_data": sdk.bootstrap_script(workload.ssh_user, workload.ssh_public_key, grant.image),
            "labels": {
                LABEL_PROVIDER: label_value(self.provider),
                LABEL_BACKEND: label_value(self.backend),
                LABEL_REQUEST: label_value(grant.request_id),
                LABEL_USER: label_value(workload.ssh_user),
            },
        }
        if self.cfg["ssh_keys"]:
            body["ssh_keys"] = [str(k) for k in self.cfg["ssh_keys"]]
        started = sdk.now()
        server, action = self.create(body, name)
        # The location stays out of the log: it may be the region the
        # requester asked for, which the operator's log never carries.
        sdk.log(sdk.INFO, "server created", server=name,
                server_type=stype["name"], adopted="yes" if action is None else "no")
        try:
            if action is not None:
                self.api.wait(action, f"creating server {name}")
            server = self.address(server)
        except sdk.BackendError as e:
            raise e.with_message(f"{e.message}; {self.cleanup(server['id'], name)}")
        handle = {
            "id": server["id"], "name": name, "location": location,
            "server_type": stype["name"], "cpus": stype["cpus"], "ram_mib": stype["ram_mib"],
            "started": started if action is not None else created_unix(server, started),
        }
        return to_instance(server, handle, workload.ssh_user)

    def create(self, body, name):
        """(server, action) of a new server; (server, None) for this grant's
        own server from an earlier try. An answer lost or a server fault
        first removes whatever the create may have made."""
        try:
            resp = self.api.send("POST", "/servers", body)
        except sdk.HttpError as e:
            if e.kind == "transient":
                raise self.abandon(name, e)
            raise
        if resp.status == 201:
            try:
                data = resp.json()
                return data["server"], data["action"]
            except (sdk.BackendError, KeyError, TypeError) as e:
                raise self.abandon(name, sdk.Transient(f"POST /servers: unreadable answer: {e}"))
        err = api_error(resp, "POST /servers")
        code = error_code(resp)
        if resp.status == 409 and code == "uniqueness_error":
            found = self.api.by_name(name)
            labels = (found or {}).get("labels") or {}
            mine = body["labels"]
            if found and all(labels.get(k) == mine[k] for k in (LABEL_PROVIDER, LABEL_BACKEND)):
                sdk.log(sdk.INFO, "server already exists, adopting it", server=name)
                return found, None
            raise sdk.Config(f"{err.message}: a server called {name} exists in the project and is "
                             "not this provider's; rename or delete it")
        if resp.status >= 500:
            raise self.abandon(name, err)
        if code in ("invalid_input", "not_found"):
            raise sdk.Config(f"{err.message} (check `server_types`, `image` and `ssh_keys`)")
        raise err

    def abandon(self, name, cause):
        """A create whose outcome is unknown: find the server by name (a few
        looks, a second apart) and delete it. Always `transient`."""
        outcome = None
        for look in range(1, ABANDON_LOOKS + 1):
            try:
                found = self.api.by_name(name)
            except sdk.BackendError as e:
                outcome = unchecked(name, e)
                break
            if found:
                outcome = self.cleanup(found["id"], name)
                break
            if look < ABANDON_LOOKS:
                sdk.sleep(1)
        if outcome is None:
            outcome = f"no server was created for this grant (looked {ABANDON_LOOKS} times)"
        sdk.log(sdk.WARN, "POST /servers answer lost; cleaned up", server=name, outcome=outcome)
        return sdk.Transient(f"{cause.message}; {outcome}")

    def cleanup(self, server_id, name):
        try:
            self.api.delete(server_id)
            return f"server {name} was deleted"
        except sdk.BackendError as e:
            return unchecked(name, e)

    def address(self, server):
        """The server once it has its public IPv4 (a few polls)."""
        for attempt in range(10):
            ip = ipv4(server)
            if ip:
                return server
            if attempt:
                sdk.sleep(1)
            fresh = self.api.server(server["id"])
            if fresh is None:
                raise sdk.Transient(f"server {server['name']} disappeared right after it was created")
            server = fresh
        raise sdk.Transient(f"server {server['name']} got no public IPv4 address")

    def status(self, inst):
        h = decode(inst.handle)
        server = self.api.server(h["id"])
        if server is None:
            return sdk.GONE
        return state_of(server.get("status"))

    def usage(self, inst):
        h = decode(inst.handle)
        server = self.api.server(h["id"])
        secs = max(0, sdk.now() - h["started"])
        net = 0
        if server is not None:
            net = (server.get("ingoing_traffic") or 0) + (server.get("outgoing_traffic") or 0)
        return sdk.ResourceUsage(
            cpu_core_seconds=h["cpus"] * secs,
            ram_mib_seconds=h["ram_mib"] * secs,
            net_bytes=net,
        )

    def terminate(self, inst):
        h = decode(inst.handle)
        self.api.delete(h["id"])
        sdk.log(sdk.INFO, "server deleted", server=h["name"])

    def list_instances(self):
        sel = sdk.quote(selector(self.provider, self.backend))
        out, page = [], 1
        for _ in range(MAX_PAGES):
            resp = self.api.send("GET", f"/servers?label_selector={sel}&per_page={PER_PAGE}&page={page}")
            if not resp.ok():
                raise api_error(resp, "GET /servers?label_selector=")
            data = resp.json()
            for server in data.get("servers") or []:
                out.append(self.listed(server))
            nxt = (((data.get("meta") or {}).get("pagination")) or {}).get("next_page")
            if not nxt:
                return out
            page = nxt
        raise sdk.Transient(f"GET /servers still had pages after {MAX_PAGES}")

    def listed(self, server):
        stype = server.get("server_type") or {}
        location = ((server.get("location") or (server.get("datacenter") or {}).get("location")) or {}).get("name", "")
        handle = {
            "id": server["id"], "name": server["name"], "location": location,
            "server_type": stype.get("name", ""),
            "cpus": int(stype.get("cores") or 0),
            "ram_mib": int((stype.get("memory") or 0) * 1024),
            "started": created_unix(server, sdk.now()),
        }
        user = (server.get("labels") or {}).get(LABEL_USER, "")
        return to_instance(server, handle, user)


def error_code(resp):
    try:
        return (json.loads(resp.body or b"{}").get("error") or {}).get("code")
    except (ValueError, AttributeError):
        return None


def unchecked(name, e):
    return (f"could not check or delete server {name}, which it may have created ({e.message}); "
            "it carries this provider's labels, and the orphan sweep deletes it at the next start")


def ipv4(server):
    return (((server.get("public_net") or {}).get("ipv4")) or {}).get("ip")


def state_of(status):
    """`Server.status` as the contract's state (module docs)."""
    if status == "running":
        return sdk.RUNNING
    if status in ("stopping", "off", "deleting"):
        return sdk.exited(-1)
    return sdk.STARTING


def created_unix(server, default):
    """`created` (RFC 3339) as unix seconds."""
    try:
        text = server["created"].replace("Z", "+00:00")
        return int(datetime.datetime.fromisoformat(text).timestamp())
    except (KeyError, ValueError, AttributeError):
        return default


def to_instance(server, handle, user):
    return sdk.Instance(
        instance_id=handle["name"],
        region=handle["location"],
        public_host=ipv4(server) or "",
        ssh_port=22,
        user=user,
        host_key="",
        handle=json.dumps(handle, separators=(",", ":")),
    )


def decode(handle):
    try:
        h = json.loads(handle)
        for k in ("id", "name", "cpus", "ram_mib", "started"):
            h[k]
        return h
    except (ValueError, KeyError, TypeError) as e:
        raise sdk.Internal(f"instance handle is not this backend's: {e}")


class Provider(exports.Provider):
    """The `provider` export: each call builds the backend from the
    configuration (every call runs in a fresh instance)."""

    @sdk.call
    def capabilities(self):
        return Hetzner().offer()

    def can_satisfy(self, grant):
        try:
            return Hetzner().can_satisfy(grant)
        except Exception:  # noqa: BLE001 - a broken config serves nothing
            return False

    @sdk.call
    def provision(self, grant, workload):
        return Hetzner().provision(grant, workload)

    @sdk.call
    def status(self, instance):
        return Hetzner().status(instance)

    @sdk.call
    def usage(self, instance):
        return Hetzner().usage(instance)

    @sdk.call
    def terminate(self, instance):
        return Hetzner().terminate(instance)

    @sdk.call
    def list_instances(self):
        return Hetzner().list_instances()
