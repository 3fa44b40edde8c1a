use compute_bridge_sdk::prelude::*;

#[derive(serde::Deserialize, Default)]
struct Cfg {
    #[serde(default)]
    attack: String,
    #[serde(default)]
    slow: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    log_mib: Option<u64>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    only_region: Option<String>,
}

fn cfg() -> Cfg {
    config::load::<Cfg>().unwrap_or_default()
}

/// Hold the call while the server holds the request (`attack = "hold"`
/// on export `what`).
fn hold(c: &Cfg, what: &str) -> Result<()> {
    if c.attack == "hold" && c.slow == what {
        http::Request::get(&c.url).send()?;
    }
    Ok(())
}

struct HostileSandbox;

impl Backend for HostileSandbox {
    fn capabilities() -> Result<Offer> {
        let c = cfg();
        hold(&c, "capabilities")?;
        Ok(Offer {
            regions: vec![c.only_region.unwrap_or_else(|| "sandbox-1".into())],
            tdx_capable: false,
            max_cpu_millicores: 1_000_000,
            max_ram_mib: 1_000_000,
            td_measurements: vec![],
        })
    }

    fn can_satisfy(g: &GrantSpec) -> bool {
        let c = cfg();
        if hold(&c, "can-satisfy").is_err() {
            return false;
        }
        match c.only_region {
            Some(r) => g.region.as_deref() == Some(r.as_str()),
            None => true,
        }
    }

    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        let c = cfg();
        hold(&c, "provision")?;
        match c.attack.as_str() {
            "log-flood" => {
                let record = "x".repeat(4096);
                let total = c.log_mib.unwrap_or(64) << 20;
                let mut sent = 0u64;
                while sent < total {
                    log::info(&record);
                    sent += record.len() as u64;
                }
                return Err(BackendError::internal(format!("logged {sent} bytes")));
            }
            "log-forge" => {
                let forged = format!("ok\n{}", crate::FORGED_LINE);
                log::info(&forged);
                log::with_fields(
                    log::Level::Warn,
                    "fields",
                    &[(&forged, "v"), ("k", &forged), ("bell\u{7}", "\u{1b}[2J")],
                );
                return Err(BackendError::internal(forged));
            }
            "headers" => {
                let mut req = http::Request::get(&c.url);
                for (k, v) in &c.headers {
                    req = req.header(k.clone(), v.clone());
                }
                let resp = req.send()?;
                return Err(BackendError::internal(format!(
                    "got HTTP {}: {}",
                    resp.status,
                    resp.text()
                )));
            }
            "raw-headers" => {
                let (status, body, refused) = raw_get(&c.url, &c.headers)?;
                return Err(BackendError::internal(format!(
                    "got HTTP {status}: {body}; wasi:http refused: {}",
                    refused.join(", ")
                )));
            }
            _ => {}
        }
        Ok(Instance {
            instance_id: g.request_id.clone(),
            region: g.region.unwrap_or_else(|| "sandbox-1".into()),
            public_host: "127.0.0.1".into(),
            ssh_port: 22,
            user: w.ssh_user,
            host_key: String::new(),
            handle: String::new(),
        })
    }

    fn status(_i: Instance) -> Result<InstanceState> {
        Ok(InstanceState::Exited(0))
    }

    fn usage(_i: Instance) -> Result<ResourceUsage> {
        Ok(ResourceUsage {
            cpu_core_seconds: 0,
            ram_mib_seconds: 0,
            net_bytes: 0,
        })
    }

    fn terminate(_i: Instance) -> Result<()> {
        Ok(())
    }
}

compute_bridge_sdk::export_backend!(HostileSandbox);

/// GET `url` with `headers` through the raw `wasi:http` bindings, below the
/// SDK: every header is offered to the host's `fields`, and the request goes
/// out with whatever it took. Returns the status, the body as text and the
/// names `fields` refused as forbidden.
fn raw_get(url: &str, headers: &[(String, String)]) -> Result<(u16, String, Vec<String>)> {
    use compute_bridge_sdk::wasip2::http::outgoing_handler;
    use compute_bridge_sdk::wasip2::http::types::{
        Fields, HeaderError, IncomingBody, OutgoingBody, OutgoingRequest, Scheme,
    };
    use compute_bridge_sdk::wasip2::io::streams::StreamError;

    let fail = |what: &str| BackendError::internal(format!("raw wasi:http: {what}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("url is not http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    let mut refused = Vec::new();
    for (name, value) in headers {
        match fields.append(name, value.as_bytes()) {
            Ok(()) => {}
            Err(HeaderError::Forbidden) => refused.push(name.clone()),
            Err(e) => return Err(fail(&format!("header {name}: {e:?}"))),
        }
    }
    let request = OutgoingRequest::new(fields);
    request
        .set_scheme(Some(&Scheme::Http))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path)))
        .map_err(|()| fail("head refused"))?;
    let body = request.body().map_err(|()| fail("no body"))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| fail(&format!("{e:?}")))?;
    OutgoingBody::finish(body, None).map_err(|e| fail(&format!("{e:?}")))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        other => return Err(fail(&format!("no response: {other:?}"))),
    };
    let status = response.status();
    let incoming = response.consume().map_err(|()| fail("no response body"))?;
    let stream = incoming.stream().map_err(|()| fail("no body stream"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(fail(&format!("reading the body: {e:?}"))),
        }
    }
    drop(stream);
    drop(IncomingBody::finish(incoming));
    Ok((
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        refused,
    ))
}
