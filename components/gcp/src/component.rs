//! The wasm glue: configuration in, Compute Engine calls through the host's
//! `http`, the token through its `cache`, WIT types out.

use std::collections::BTreeMap;
use std::time::Duration;

use compute_bridge_sdk::http::{Request, Response};
use compute_bridge_sdk::log::Level;
use compute_bridge_sdk::prelude::*;
use compute_bridge_sdk::{bootstrap, now_unix};

use crate::api::{
    self, Api, GceInstance, Handle, InstanceList, InstanceSpec, Operation, instance_body,
    instance_name, label_value, labels,
};
use crate::auth;
use crate::catalog::{self, Want};
use crate::config::{GcpConfig, SCOPE, ServiceAccountKey, TOKEN_URL};

/// `zoneOperations.wait` calls before giving up (each waits up to ~2 min).
const MAX_WAITS: u32 = 10;
/// `instances.get` calls while the external address is assigned.
const MAX_ADDRESS_POLLS: u32 = 10;

struct Gcp;

/// One call's view of the backend: its config and credentials.
struct Ctx {
    cfg: GcpConfig,
    key: ServiceAccountKey,
    token_url: String,
}

fn load() -> Result<GcpConfig> {
    let cfg: GcpConfig = config::load()?;
    cfg.validate()?;
    Ok(cfg)
}

impl Ctx {
    fn new() -> Result<Self> {
        let cfg = load()?;
        let key = ServiceAccountKey::parse(&cfg.service_account_key)?;
        let token_url = cfg
            .token_url
            .clone()
            .or_else(|| key.token_uri.clone())
            .unwrap_or_else(|| TOKEN_URL.to_string());
        Ok(Self {
            cfg,
            key,
            token_url,
        })
    }

    fn api<'a>(&'a self, project: &'a str) -> Api<'a> {
        Api {
            base: self.cfg.compute_base(),
            project,
        }
    }

    fn cache_key(&self) -> String {
        auth::cache_key(&self.key, &self.token_url)
    }

    /// An access token: the cached one, or a new one from the token
    /// endpoint (then cached for its life less a margin).
    fn token(&self) -> Result<String> {
        let cache_key = self.cache_key();
        if let Some(t) = cache::get_string(&cache_key) {
            return Ok(t);
        }
        let signer = auth::Signer::new(&self.key)?;
        let assertion = auth::assertion(&self.key, &signer, SCOPE, &self.token_url, now_unix())?;
        let resp = auth::token_request(&self.token_url, &assertion).send()?;
        let token = auth::parse_token(&resp)?;
        cache::set(
            &cache_key,
            token.access_token.as_bytes(),
            auth::cache_ttl(token.expires_in),
        );
        log::with_fields(
            Level::Debug,
            "fetched an access token",
            &[("expires_in", &token.expires_in.to_string())],
        );
        Ok(token.access_token)
    }

    /// Send `req` with the token. A 401 means the token went bad early
    /// (revoked, clock skew): drop it and try once more with a new one.
    fn send(&self, req: Request) -> Result<Response> {
        let resp = req.clone().bearer(&self.token()?).send()?;
        if resp.status != 401 {
            return Ok(resp);
        }
        cache::remove(&self.cache_key());
        Ok(req.bearer(&self.token()?).send()?)
    }

    /// Follow an operation until it is done; its failure, classified.
    fn wait(&self, api: Api<'_>, zone: &str, mut op: Operation) -> Result<()> {
        for _ in 0..MAX_WAITS {
            if op.done() {
                return op.failure().map_or(Ok(()), Err);
            }
            let resp = self.send(api.wait(zone, &op.name))?;
            if !resp.is_success() {
                return Err(api::api_error(&resp));
            }
            op = resp.json()?;
            if !op.done() {
                // `wait` may return early; do not spin.
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Err(BackendError::transient(format!(
            "operation {} still not done after {MAX_WAITS} waits",
            op.name
        )))
    }

    /// The instance, or `None` if it does not exist.
    fn get(&self, api: Api<'_>, zone: &str, name: &str) -> Result<Option<GceInstance>> {
        let resp = self.send(api.get(zone, name))?;
        match resp.status {
            404 => Ok(None),
            _ if resp.is_success() => Ok(Some(resp.json()?)),
            _ => Err(api::api_error(&resp)),
        }
    }

    /// Delete the instance and wait; an instance already gone is success.
    fn delete(&self, api: Api<'_>, zone: &str, name: &str) -> Result<()> {
        let resp = self.send(api.delete(zone, name))?;
        if resp.status == 404 {
            return Ok(());
        }
        if !resp.is_success() {
            return Err(api::api_error(&resp));
        }
        self.wait(api, zone, resp.json()?)
    }
}

fn want(g: &GrantSpec) -> Want<'_> {
    Want {
        cpu_millicores: g.cpu_millicores,
        ram_mib: g.ram_mib,
        region: g.region.as_deref(),
        tdx: g.tdx,
    }
}

fn to_instance(inst: &GceInstance, handle: &Handle, user: String) -> Result<Instance> {
    let ip = inst.external_ip().ok_or_else(|| {
        BackendError::internal(format!("instance {} has no external address", inst.name))
    })?;
    Ok(Instance {
        instance_id: handle.name.clone(),
        region: catalog::region_of(&handle.zone).to_string(),
        public_host: ip.to_string(),
        ssh_port: 22,
        user,
        host_key: String::new(),
        handle: handle.encode(),
    })
}

impl Backend for Gcp {
    fn capabilities() -> Result<Offer> {
        // Parse the key now so a broken one shows at start, not at the
        // first grant.
        let c = Ctx::new()?;
        auth::Signer::new(&c.key)?;
        Ok(Offer {
            regions: catalog::regions(&c.cfg.machine_types),
            tdx_capable: catalog::tdx_capable(&c.cfg.machine_types),
            max_cpu_millicores: c.cfg.max_cpu_millicores,
            max_ram_mib: c.cfg.max_ram_mib,
        })
    }

    fn can_satisfy(g: &GrantSpec) -> bool {
        let Ok(cfg) = load() else { return false };
        bootstrap::PinnedImage::parse(&g.image).is_ok()
            && catalog::pick(&cfg.machine_types, want(g)).is_some()
    }

    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        let c = Ctx::new()?;
        let image = bootstrap::PinnedImage::parse(&g.image)?;
        let choice = catalog::pick(&c.cfg.machine_types, want(&g)).ok_or_else(|| {
            BackendError::rejected(
                "no machine type in `machine_types` fits this grant's size, region and TDX need",
            )
        })?;
        let (zone, machine) = (choice.zone, choice.machine);
        let provider = config::provider_id();
        let name = instance_name(&provider, &g.request_id);
        let script = bootstrap::script(&w.ssh_user, &w.ssh_public_key, &image)?;
        let spec = InstanceSpec {
            name: &name,
            zone,
            machine_type: &machine.name,
            tdx: machine.tdx,
            image: &c.cfg.image,
            disk_gb: c.cfg.boot_disk_gb,
            network: &c.cfg.network,
            subnetwork: c.cfg.subnetwork.as_deref(),
            tags: &c.cfg.network_tags,
            labels: BTreeMap::from([
                (labels::PROVIDER.to_string(), label_value(&provider)),
                (labels::REQUEST.to_string(), label_value(&g.request_id)),
                (
                    labels::BACKEND.to_string(),
                    label_value(&config::backend_name()),
                ),
                (labels::USER.to_string(), label_value(&w.ssh_user)),
            ]),
            request_id: &g.request_id,
            startup_script: &script,
        };
        let api = c.api(&c.cfg.project);
        let started = now_unix();
        let resp = c.send(api.insert(zone, &instance_body(&spec)))?;
        let adopted = resp.status == 409
            && api::error_reasons(&resp)
                .iter()
                .any(|r| r == "alreadyExists");
        if adopted {
            // The same grant provisioned again (the name is derived from
            // it): take the instance that is already there.
            log::with_fields(
                Level::Info,
                "instance already exists, adopting it",
                &[("instance", &name), ("zone", zone)],
            );
        } else if !resp.is_success() {
            return Err(api::api_error(&resp));
        } else if let Err(e) = c.wait(api, zone, resp.json()?) {
            // A failed insert normally leaves nothing; if it left an
            // instance, remove it so the failover leaves nothing billed.
            if let Ok(Some(_)) = c.get(api, zone, &name)
                && let Err(de) = c.delete(api, zone, &name)
            {
                log::warn(&format!(
                    "deleting {name} after its insert failed: {}",
                    de.message()
                ));
            }
            return Err(e);
        }
        log::with_fields(
            Level::Info,
            "instance created",
            &[
                ("instance", &name),
                ("zone", zone),
                ("machine_type", &machine.name),
                ("tdx", if machine.tdx { "yes" } else { "no" }),
            ],
        );

        let handle = Handle {
            project: c.cfg.project.clone(),
            zone: zone.to_string(),
            name: name.clone(),
            machine_type: machine.name.clone(),
            cpus: machine.cpus,
            ram_mib: machine.ram_mib,
            started,
        };
        // The external address is assigned as the VM starts; poll for it.
        // If it never comes, do not leave a billed VM behind the failover.
        for attempt in 0..MAX_ADDRESS_POLLS {
            match c.get(api, zone, &name)? {
                Some(inst) if inst.external_ip().is_some() => {
                    let mut handle = handle;
                    if adopted {
                        handle.started =
                            compute_bridge_sdk::time::unix_from_rfc3339(&inst.creation_timestamp)
                                .unwrap_or(started);
                    }
                    return to_instance(&inst, &handle, w.ssh_user);
                }
                Some(_) if attempt + 1 < MAX_ADDRESS_POLLS => {
                    std::thread::sleep(Duration::from_secs(1))
                }
                Some(_) => break,
                None => {
                    return Err(BackendError::transient(format!(
                        "instance {name} disappeared right after it was created"
                    )));
                }
            }
        }
        if let Err(e) = c.delete(api, zone, &name) {
            log::warn(&format!(
                "deleting {name} after it got no address failed: {}",
                e.message()
            ));
        }
        Err(BackendError::transient(format!(
            "instance {name} got no external address; it was deleted"
        )))
    }

    fn status(i: Instance) -> Result<InstanceState> {
        let h = Handle::decode(&i.handle)?;
        let c = Ctx::new()?;
        Ok(match c.get(c.api(&h.project), &h.zone, &h.name)? {
            None => InstanceState::Gone,
            Some(inst) => inst.state(),
        })
    }

    fn usage(i: Instance) -> Result<ResourceUsage> {
        let h = Handle::decode(&i.handle)?;
        let c = Ctx::new()?;
        let end = c
            .get(c.api(&h.project), &h.zone, &h.name)?
            .and_then(|inst| inst.stopped_at())
            .unwrap_or_else(now_unix);
        Ok(h.usage(end))
    }

    fn terminate(i: Instance) -> Result<()> {
        let h = Handle::decode(&i.handle)?;
        let c = Ctx::new()?;
        c.delete(c.api(&h.project), &h.zone, &h.name)?;
        log::with_fields(Level::Info, "instance deleted", &[("instance", &h.name)]);
        Ok(())
    }

    fn list_instances() -> Result<Vec<Instance>> {
        let c = Ctx::new()?;
        let api = c.api(&c.cfg.project);
        let filter = api::list_filter(&config::provider_id(), &config::backend_name());
        let mut zones: Vec<&str> = Vec::new();
        for z in c.cfg.machine_types.iter().flat_map(|t| &t.zones) {
            if !zones.contains(&z.as_str()) {
                zones.push(z);
            }
        }
        let mut out = Vec::new();
        for zone in zones {
            let mut page: Option<String> = None;
            loop {
                let resp = c.send(api.list(zone, &filter, page.as_deref()))?;
                if !resp.is_success() {
                    return Err(api::api_error(&resp));
                }
                let list: InstanceList = resp.json()?;
                for inst in &list.items {
                    let machine = c
                        .cfg
                        .machine_types
                        .iter()
                        .find(|t| t.name == inst.machine_type_name());
                    let handle = Handle {
                        project: c.cfg.project.clone(),
                        zone: zone.to_string(),
                        name: inst.name.clone(),
                        machine_type: inst.machine_type_name().to_string(),
                        cpus: machine.map_or(0, |t| t.cpus),
                        ram_mib: machine.map_or(0, |t| t.ram_mib),
                        started: compute_bridge_sdk::time::unix_from_rfc3339(
                            &inst.creation_timestamp,
                        )
                        .unwrap_or_else(now_unix),
                    };
                    let user = inst.labels.get(labels::USER).cloned().unwrap_or_default();
                    let mut found = to_instance(inst, &handle, user.clone()).unwrap_or(Instance {
                        instance_id: inst.name.clone(),
                        region: catalog::region_of(zone).to_string(),
                        public_host: String::new(),
                        ssh_port: 22,
                        user,
                        host_key: String::new(),
                        handle: handle.encode(),
                    });
                    found.region = catalog::region_of(zone).to_string();
                    out.push(found);
                }
                match list.next_page_token {
                    Some(t) if !t.is_empty() => page = Some(t),
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

compute_bridge_sdk::export_backend!(Gcp);
