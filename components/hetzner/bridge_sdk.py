"""bridge_sdk: what a compute-bridge backend written in Python needs from
the host, over the `backend` world of wit/backend.wit, for componentize-py.

The Python counterpart of the Rust SDK (components/sdk), kept small: one
file with no dependency outside the standard library and the bindings
componentize-py generates (`wit_world`). `compute-bridge components new
NAME --lang python` copies it into a new project.

- Errors: raise `NoCapacity`, `Transient`, `Rejected`, `Config` or
  `Internal` (all `BackendError`) from a provider call; `@call` turns
  them into the contract's `backend-error` variant, and any other
  exception into `internal` naming it (a Python backend never traps the
  host's call by accident).
- HTTP (`wasi:http/outgoing-handler`): `request()` sends one request and
  reads the whole answer. The host's `error-code` becomes an `HttpError`,
  which is a `BackendError` of the kind the Rust SDK gives it:

  | `wasi:http` error-code                       | kind        | text |
  | -------------------------------------------- | ----------- | ---- |
  | `HTTP-request-denied`                        | `config`    | `denied by the host` (allow the origin in `allowed_hosts`) |
  | `connection-timeout`, `HTTP-response-timeout`| `transient` | `timed out` |
  | `HTTP-response-body-size(some(n))`           | `internal`  | `response larger than the host's cap of n bytes` |
  | `HTTP-request-URI-invalid`, a bad URL/header | `internal`  | `invalid request: ...` |
  | anything else                                | `transient` | `transport: <the code>` |

  A header the host refuses as forbidden (`Host`, `Connection`, ...) is
  left out, as the host sets those itself. The body is whole before it is
  sent, so `request()` declares its `Content-Length` (the host holds the
  body to it) and a request is never sent chunked, which some APIs refuse.
  No redirect is followed: a 3xx comes back as it is.
- Configuration (`wasi:config/store`): `config()` is the backend's whole
  `[backends.config]` table as a dict; `require(cfg, key)` is a value
  that must be there (a `Config` error naming the key otherwise);
  `backend_name()` and `provider_id()` the host's reserved keys.
- Logging (`wasi:logging/logging`): `log(level, message, **fields)`, with
  the fields folded into the message as ` key=value`, as the Rust SDK
  does. Never log secrets: the log is the operator's.
- Cache (the world's `cache`): `cache_get`/`cache_set`, for credentials
  only, never grant data.
- Time: `now()` (unix seconds), `sleep(seconds)` (a monotonic-clock
  pollable; the call's deadline still applies).
- The first-boot script every cloud backend hands its VM
  (`bootstrap_script`), with the same checks and quoting as the Rust SDK's
  `bootstrap` module, and `pinned_image`.
"""

import json
import time

from componentize_py_types import Err
from wit_world.imports import cache as _cache
from wit_world.imports import logging as _logging
from wit_world.imports import monotonic_clock
from wit_world.imports import outgoing_handler
from wit_world.imports import store as _store
from wit_world.imports import streams
from wit_world.imports import wasi_http_types as _http
from wit_world.imports import compute_bridge_backend_types as types

# The contract's records, for backends to build their answers with.
Offer = types.Offer
Instance = types.Instance
ResourceUsage = types.ResourceUsage
GrantSpec = types.GrantSpec
Workload = types.Workload
TdxRequirement = types.TdxRequirement
STARTING = types.InstanceState_Starting()
RUNNING = types.InstanceState_Running()
GONE = types.InstanceState_Gone()


def exited(code):
    """The `exited(code)` instance state."""
    return types.InstanceState_Exited(code)


# ---------------------------------------------------------------- errors


class BackendError(Exception):
    """A provider call's failure; the subclass is the contract's kind."""

    variant = types.BackendError_Internal
    kind = "internal"

    def __init__(self, message):
        super().__init__(message)
        self.message = str(message)

    def with_message(self, message):
        """The same kind with another text."""
        return type(self)(message)

    def wit(self):
        """The `backend-error` value for the host."""
        return self.variant(self.message)


class NoCapacity(BackendError):
    """No room for this grant now; the host tries the next backend."""

    variant = types.BackendError_NoCapacity
    kind = "no-capacity"


class Transient(BackendError):
    """A passing fault (rate limit, 5xx, timeout); the host may retry."""

    variant = types.BackendError_Transient
    kind = "transient"


class Rejected(BackendError):
    """This grant can never be served here."""

    variant = types.BackendError_Rejected
    kind = "rejected"


class Config(BackendError):
    """The operator's configuration is wrong; name the key, never a secret."""

    variant = types.BackendError_Config
    kind = "config"


class Internal(BackendError):
    """A bug in the backend."""

    variant = types.BackendError_Internal
    kind = "internal"


def call(fn):
    """Decorate a provider method: a `BackendError` becomes the contract's
    error, any other exception `internal` naming its type and text."""

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Err:
            raise
        except BackendError as e:
            raise Err(e.wit())
        except Exception as e:  # noqa: BLE001 - every failure must answer
            raise Err(types.BackendError_Internal(f"{fn.__name__}: {type(e).__name__}: {e}"))

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


# ------------------------------------------------------------------ http


class HttpError(BackendError):
    """A request that produced no response; its kind (`Config`,
    `Transient`, `Internal`) follows the table in the module docs."""

    def __init__(self, message, kind=None):
        super().__init__(message)
        kind = kind or Transient
        self.variant = kind.variant
        self.kind = kind.kind
        self._kind = kind

    def with_message(self, message):
        return HttpError(message, self._kind)


class Response:
    """A whole response: `status`, `headers` (lower-case names), `body`."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def ok(self):
        """True for a 2xx."""
        return 200 <= self.status < 300

    def header(self, name):
        """The first value of header `name`, or None."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def text(self):
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body as JSON; `internal` if it is not."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as e:
            raise Internal(f"unexpected response body (status {self.status}): {e}")


_METHODS = {
    "GET": _http.Method_Get(),
    "HEAD": _http.Method_Head(),
    "POST": _http.Method_Post(),
    "PUT": _http.Method_Put(),
    "PATCH": _http.Method_Patch(),
    "DELETE": _http.Method_Delete(),
}
_WRITE_CHUNK = 4096
_READ_CHUNK = 64 * 1024


def _code_error(code):
    """The `HttpError` for a `wasi:http` error-code (module docs' table)."""
    if isinstance(code, _http.ErrorCode_HttpRequestDenied):
        return HttpError("denied by the host", Config)
    if isinstance(code, (_http.ErrorCode_ConnectionTimeout, _http.ErrorCode_HttpResponseTimeout)):
        return HttpError("timed out", Transient)
    if isinstance(code, _http.ErrorCode_HttpResponseBodySize) and code.value is not None:
        return HttpError(f"response larger than the host's cap of {code.value} bytes", Internal)
    if isinstance(code, _http.ErrorCode_HttpRequestUriInvalid):
        return HttpError("invalid request: the host found the URL invalid", Internal)
    return HttpError(f"transport: {type(code).__name__.removeprefix('ErrorCode_')}", Transient)


def _invalid(message):
    return HttpError(f"invalid request: {message}", Internal)


def _split_url(url):
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _invalid(f"URL {url!r} is not absolute")
    authority, slash, path = rest.partition("/")
    if not authority:
        raise _invalid(f"URL {url!r} has no host")
    if scheme.lower() == "https":
        wit_scheme = _http.Scheme_Https()
    elif scheme.lower() == "http":
        wit_scheme = _http.Scheme_Http()
    else:
        wit_scheme = _http.Scheme_Other(scheme)
    return wit_scheme, authority, slash + path if slash else "/"


def _stream_error(e):
    value = e.value
    if isinstance(value, streams.StreamError_LastOperationFailed):
        code = _http.http_error_code(value.value)
        if code is not None:
            return _code_error(code)
        return HttpError(f"transport: {value.value.to_debug_string()}", Transient)
    return HttpError("transport: stream closed early", Transient)


def request(method, url, headers=(), body=b""):
    """Send `method url` with `headers` ((name, value) pairs) and `body`
    (bytes or str); the whole `Response`, whatever its status. Raises
    `HttpError` when there is no response (module docs)."""
    if isinstance(body, str):
        body = body.encode()
    wit_scheme, authority, path = _split_url(url)
    headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
    if body or method in ("POST", "PUT", "PATCH"):
        headers.append(("content-length", str(len(body))))
    fields = _http.Fields()
    for name, value in headers:
        try:
            fields.append(name, value.encode() if isinstance(value, str) else value)
        except Err as e:
            if isinstance(e.value, _http.HeaderError_Forbidden):
                continue  # the host sets it (module docs)
            raise _invalid(f"bad header {name!r}")
    req = _http.OutgoingRequest(fields)
    try:
        req.set_method(_METHODS[method])
        req.set_scheme(wit_scheme)
        req.set_authority(authority)
        req.set_path_with_query(path)
    except Err:
        raise _invalid(f"wasi:http refused the head of {method} {url}")
    out = req.body()
    # Hand the request over first, then write the body: the host reads it
    # while sending.
    try:
        pending = outgoing_handler.handle(req, None)
    except Err as e:
        raise _code_error(e.value)
    sent = None
    try:
        with out.write() as stream:
            for i in range(0, len(body), _WRITE_CHUNK):
                stream.blocking_write_and_flush(body[i : i + _WRITE_CHUNK])
        _http.OutgoingBody.finish(out, None)
    except Err as e:
        sent = e
    with pending:
        with pending.subscribe() as ready:
            ready.block()
        outcome = pending.get()
    if outcome is None or isinstance(outcome, Err):
        # No answer: a body that could not be sent whole says why.
        if sent is not None:
            if isinstance(sent.value, (streams.StreamError_Closed, streams.StreamError_LastOperationFailed)):
                raise _stream_error(sent)
            raise _code_error(sent.value)
        raise HttpError("transport: response not ready", Transient)
    inner = outcome.value
    if isinstance(inner, Err):
        raise _code_error(inner.value)
    with inner.value as resp:
        status = resp.status()
        with resp.headers() as h:
            hdrs = [(k.lower(), v.decode("utf-8", "replace")) for k, v in h.entries()]
        incoming = resp.consume()
        chunks = []
        with incoming.stream() as stream:
            while True:
                try:
                    chunks.append(stream.blocking_read(_READ_CHUNK))
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise _stream_error(e)
        with _http.IncomingBody.finish(incoming):
            pass
    return Response(status, hdrs, b"".join(chunks))


def quote(s):
    """Percent-encode `s` for a URL query value (RFC 3986 unreserved pass)."""
    safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
    return "".join(c if c in safe else "".join(f"%{b:02X}" for b in c.encode()) for c in s)


# ---------------------------------------------------------------- config

BACKEND_NAME = "bridge.backend-name"
PROVIDER_ID = "bridge.provider-id"
CONFIG_JSON = "bridge.config-json"


def config_value(key):
    """One top-level value of `[backends.config]` as the host serves it (a
    string; tables and arrays as JSON), or None."""
    try:
        return _store.get(key)
    except Err:
        return None


def config():
    """The whole `[backends.config]` table as a dict."""
    text = config_value(CONFIG_JSON) or "{}"
    try:
        value = json.loads(text)
    except ValueError as e:
        raise Internal(f"the host's {CONFIG_JSON} is not JSON: {e}")
    return value if isinstance(value, dict) else {}


def require(cfg, key, kind=str):
    """`cfg[key]`, which must be there and be a `kind`; a `Config` error
    naming the key otherwise."""
    if key not in cfg or cfg[key] in (None, ""):
        raise Config(f"missing key `{key}` in this backend's [backends.config] section")
    value = cfg[key]
    if kind is not None and not isinstance(value, kind):
        raise Config(f"`{key}`: expected {kind.__name__}, got {type(value).__name__}")
    return value


def backend_name():
    """The name the operator gave this backend."""
    return config_value(BACKEND_NAME) or ""


def provider_id():
    """This bridge's provider id (safe in tags and labels)."""
    return config_value(PROVIDER_ID) or ""


# --------------------------------------------------------------- logging

TRACE, DEBUG, INFO, WARN, ERROR = (
    _logging.Level.TRACE,
    _logging.Level.DEBUG,
    _logging.Level.INFO,
    _logging.Level.WARN,
    _logging.Level.ERROR,
)
CONTEXT = "backend"


def _token(s):
    s = str(s)
    plain = s and not any(c.isspace() or not c.isprintable() or c in '"=' for c in s)
    return s if plain else json.dumps(s)


def log(level, message, **fields):
    """A record in the operator's log; `fields` folded in as ` key=value`."""
    text = message + "".join(f" {_token(k)}={_token(v)}" for k, v in fields.items())
    _logging.log(level, CONTEXT, text)


# ----------------------------------------------------------------- cache


def cache_get(key):
    """The bytes under `key`, unless they expired or the host dropped them."""
    return _cache.get(key)


def cache_set(key, value, ttl_seconds):
    """Keep `value` (bytes or str) under `key` for `ttl_seconds`; 0 removes it."""
    if isinstance(value, str):
        value = value.encode()
    _cache.set(key, value, max(0, int(ttl_seconds)))


# ------------------------------------------------------------------ time


def now():
    """Unix seconds now."""
    return int(time.time())


def sleep(seconds):
    """Wait `seconds` (the host's call deadline still applies)."""
    with monotonic_clock.subscribe_duration(int(seconds * 1_000_000_000)) as p:
        p.block()


# ------------------------------------------------------------- bootstrap

STATE_DIR = "/var/lib/compute-bridge"
_HEX = "0123456789abcdef"


def pinned_image(image):
    """`image` if it is `name@sha256:<64 lower-case hex>`; `Rejected`
    otherwise (the grant can never be served with it)."""

    def bad(why):
        return Rejected(f"image {image!r} is not pinned by digest (name@sha256:<64 hex>): {why}")

    name, sep, digest = image.partition("@sha256:")
    if not sep:
        raise bad("no @sha256: digest")
    if len(digest) != 64 or any(c not in _HEX for c in digest):
        raise bad("the digest must be 64 lower-case hex characters")
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789._-/:")
    if not name or len(name) > 255 or name[0] in "/-.:" or any(c not in allowed for c in name):
        raise bad("the name has characters a registry path cannot have")
    return image


def check_user(user):
    """A login name a Linux image accepts: `[a-z_][a-z0-9_-]{0,31}`."""
    ok = (
        0 < len(user) <= 32
        and (user[0].islower() and user[0].isascii() or user[0] == "_")
        and all(c.isascii() and (c.islower() or c.isdigit() or c in "_-") for c in user)
    )
    if not ok:
        raise Internal(f"workload login {user!r} is not a valid Linux user name")


def check_public_key(key):
    """An OpenSSH public key on one line (`ssh-ed25519 AAAA... [comment]`)."""
    parts = key.split()
    b64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    ok = (
        len(parts) >= 2
        and (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-"))
        and all(c in b64 for c in parts[1])
        and not any(c in key for c in "\n\r\0")
    )
    if not ok:
        raise Internal("the workload key is not a one-line OpenSSH public key")


def shell_quote(s):
    """`s` single-quoted for a POSIX shell."""
    return "'" + s.replace("'", "'\\''") + "'"


def bootstrap_script(user, ssh_public_key, image):
    """The first-boot shell script: create `user`, authorise the key, run
    the pinned `image` once, power off when it exits (the Rust SDK's
    `bootstrap::script`, byte for byte). Cloud-init runs a user-data that
    starts with `#!` as a script."""
    check_user(user)
    check_public_key(ssh_public_key)
    image = pinned_image(image)
    return f"""#!/bin/sh
# compute-bridge workload bootstrap: login, key, image pinned by digest.
set -eu
user={shell_quote(user)}
image={shell_quote(image)}
state={STATE_DIR}
id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash -p '*' "$user"
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
printf '%s\\n' {shell_quote(ssh_public_key.strip())} > "$home/.ssh/authorized_keys"
chown "$user:$user" "$home/.ssh/authorized_keys"
chmod 600 "$home/.ssh/authorized_keys"
mkdir -p "$state"
# The workload runs once; a reboot only restores the login.
[ -e "$state/started" ] && exit 0
touch "$state/started"
if ! command -v docker >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q docker.io
fi
usermod -aG docker "$user"
set +e
docker run --name cb-workload "$image"
code=$?
set -e
echo "$code" > "$state/exit-code"
# Done: power off so the backend sees the workload as exited.
poweroff
"""
