//! The backend's behaviour over a [`Host`]: the wasm glue runs it over the
//! host's capabilities ([`compute_bridge_sdk::WasmHost`]), the native tests
//! over a [`compute_bridge_sdk::MemoryHost`]. SDK types in and out;
//! [`BackendError`] is its only error.
//!
//! Nothing is kept between calls but the access token, in the host's
//! cache: an instance is found again from its [`Handle`], and
//! `list_instances` rebuilds handles from the instances' labels. The
//! service-account key is never logged.

use cb_cloud::allocation::Allocation;
use cb_cloud::catalog::Want;
use cb_cloud::token::{Bearer, SendError, Token};
use compute_bridge_sdk::bootstrap;
use compute_bridge_sdk::http::Request;
use compute_bridge_sdk::http::Response;
use compute_bridge_sdk::log::Level;
use compute_bridge_sdk::{
    BackendError, GrantSpec, Host, Instance, InstanceState, Offer, ResourceUsage, Workload,
};

use crate::api::{
    self, Api, GceInstance, Handle, InstanceAggregatedList, InstanceList, InstanceSpec, LABELS,
    Operation, Refusal, instance_body, instance_name, label_value,
};
use crate::auth;
use crate::catalog::{self, MachineType};
use crate::config::{GcpConfig, SCOPE, ServiceAccountKey, TOKEN_URL};

type Result<T, E = BackendError> = std::result::Result<T, E>;

/// `zoneOperations.wait` calls before giving up (each waits up to ~2 min).
const MAX_WAITS: u32 = 10;
/// `instances.get` calls while the external address is assigned.
const MAX_ADDRESS_POLLS: u32 = 10;
/// Looks (one second apart) for what an `instances.insert` whose answer
/// was lost may have created.
const ABANDON_LOOKS: u32 = 3;
/// Most pages `list_instances` and the lost-answer lookup read.
const MAX_PAGES: usize = 50;

/// The backend for one configuration, provider, backend name and host.
pub struct Gcp<'h, H: Host> {
    cfg: GcpConfig,
    key: ServiceAccountKey,
    token_url: String,
    provider_id: String,
    backend_name: String,
    host: &'h H,
}

impl<'h, H: Host> Gcp<'h, H> {
    /// A backend for `cfg` (validated, its key parsed) on behalf of
    /// `provider_id`, as the backend the operator named `backend_name`.
    pub fn new(
        cfg: GcpConfig,
        provider_id: impl Into<String>,
        backend_name: impl Into<String>,
        host: &'h H,
    ) -> Result<Self> {
        cfg.validate()?;
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
            provider_id: provider_id.into(),
            backend_name: backend_name.into(),
            host,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GcpConfig {
        &self.cfg
    }

    fn api<'a>(&'a self, project: &'a str) -> Api<'a> {
        Api {
            base: self.cfg.compute_base(),
            project,
        }
    }

    /// This key's token in the host's cache.
    fn bearer(&self) -> Bearer<'h, H> {
        Bearer::new(self.host, auth::cache_key(&self.key, &self.token_url))
    }

    /// A new access token from the token endpoint, for a signed assertion.
    fn fetch_token(&self) -> Result<Token> {
        let signer = auth::Signer::new(&self.key)?;
        let assertion =
            auth::assertion(&self.key, &signer, SCOPE, &self.token_url, self.host.now())?;
        auth::parse_token(
            &self
                .host
                .send(&auth::token_request(&self.token_url, &assertion))?,
        )
    }

    /// Send `req` with the token ([`Bearer::send`]: a 401 gets one new
    /// token).
    fn send(&self, req: Request) -> Result<Response> {
        Ok(self.send_tracked(req)?)
    }

    /// [`Gcp::send`], telling a request that never left from one whose
    /// answer was lost.
    fn send_tracked(&self, req: Request) -> Result<Response, SendError> {
        self.bearer().send(&req, || self.fetch_token())
    }

    /// Follow an operation until it is done; its failure, classified.
    fn wait(&self, api: Api<'_>, zone: &str, mut op: Operation) -> Result<(), Refusal> {
        for _ in 0..MAX_WAITS {
            if op.done() {
                return op.refusal().map_or(Ok(()), Err);
            }
            let resp = self.send(api.wait(zone, &op.name)).map_err(Refusal::from)?;
            if !resp.is_success() {
                return Err(api::refusal(&resp));
            }
            op = resp.json().map_err(Refusal::from)?;
            if !op.done() {
                // `wait` may return early; do not spin.
                self.host.sleep(1);
            }
        }
        Err(Refusal::from(BackendError::transient(format!(
            "operation {} still not done after {MAX_WAITS} waits",
            op.name
        ))))
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
        self.wait(api, zone, resp.json()?).map_err(|r| r.error)
    }

    /// Create the instance of `spec`. `Ok(true)` when it already existed
    /// (the same grant provisioned again: the name is derived from it) and
    /// is adopted. When the outcome is unknown (the answer lost, a server
    /// fault, an unreadable success) whatever the insert may have made is
    /// looked for and removed first ([`Gcp::abandon`]); when the operation
    /// failed, anything it left is removed. So an error leaves nothing
    /// billed here, unless its message says otherwise.
    fn create(&self, api: Api<'_>, spec: &InstanceSpec<'_>, filter: &str) -> Result<bool, Refusal> {
        let zone = spec.zone;
        let resp = match self.send_tracked(api.insert(zone, &instance_body(spec))) {
            Ok(resp) => resp,
            Err(SendError::NotSent(e)) => return Err(Refusal::from(e)),
            Err(SendError::Lost(e)) => {
                return Err(Refusal::from(self.abandon(api, zone, spec.name, filter, e)));
            }
        };
        if resp.status == 409
            && api::error_reasons(&resp)
                .iter()
                .any(|r| r == "alreadyExists")
        {
            self.host.log(
                Level::Info,
                "instance already exists, adopting it",
                &[("instance", spec.name), ("zone", zone)],
            );
            return Ok(true);
        }
        if resp.status >= 500 {
            let e = api::api_error(&resp);
            return Err(Refusal::from(self.abandon(api, zone, spec.name, filter, e)));
        }
        if !resp.is_success() {
            return Err(api::refusal(&resp));
        }
        let op: Operation = match resp.json() {
            Ok(op) => op,
            Err(e) => return Err(Refusal::from(self.abandon(api, zone, spec.name, filter, e))),
        };
        match self.wait(api, zone, op) {
            Ok(()) => Ok(false),
            Err(r) => {
                // A failed insert normally leaves nothing; if it left an
                // instance (or following the operation failed), remove it.
                let left = match self.get(api, zone, spec.name) {
                    Ok(None) => None,
                    Ok(Some(_)) => Some(
                        self.delete(api, zone, spec.name)
                            .map(|()| format!("instance {} it left was deleted", spec.name)),
                    ),
                    Err(e) => Some(Err(e)),
                };
                Err(match left {
                    None => r,
                    Some(Ok(what)) => Refusal {
                        error: r
                            .error
                            .with_message(format!("{}; {what}", r.error.message())),
                        ..r
                    },
                    Some(Err(e)) => Refusal {
                        error: r.error.with_message(format!(
                            "{}; {}",
                            r.error.message(),
                            unchecked(spec.name, &e)
                        )),
                        ..r
                    },
                })
            }
        }
    }

    /// After an `instances.insert` whose outcome is unknown: find what it
    /// may have made, by this provider's, backend's and request's labels
    /// in `zone` (and the instance name, which the exact request id
    /// decides), and delete it. An empty answer is asked again a few times
    /// (the reference does not say how soon a new instance is listed). The
    /// error is always `transient`: the fleet may try the grant elsewhere,
    /// and nothing of it is left here unless the message says so.
    fn abandon(
        &self,
        api: Api<'_>,
        zone: &str,
        name: &str,
        filter: &str,
        cause: BackendError,
    ) -> BackendError {
        let mut looks = 0;
        let outcome = loop {
            looks += 1;
            match self.find(api, zone, filter, name) {
                Ok(true) => {
                    break self
                        .delete(api, zone, name)
                        .map(|()| format!("deleted instance {name}, which it had created"))
                        .map_err(|e| unchecked(name, &e));
                }
                Ok(false) if looks < ABANDON_LOOKS => self.host.sleep(1),
                Ok(false) => {
                    break Ok(format!(
                        "no instance was created for this grant (looked {looks} times)"
                    ));
                }
                Err(e) => break Err(unchecked(name, &e)),
            }
        };
        let what = match outcome {
            Ok(what) => {
                self.host.log(
                    Level::Warn,
                    "instances.insert answer lost; cleaned up",
                    &[("instance", name), ("zone", zone), ("outcome", &what)],
                );
                what
            }
            Err(what) => {
                self.host.log(
                    Level::Warn,
                    "instances.insert answer lost; what it made could not be checked",
                    &[("instance", name), ("zone", zone)],
                );
                what
            }
        };
        BackendError::transient(format!("{}; {what}", cause.message()))
    }

    /// Whether `name` is among the instances `filter` lists in `zone`.
    fn find(&self, api: Api<'_>, zone: &str, filter: &str, name: &str) -> Result<bool> {
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let resp = self.send(api.list(zone, filter, page.as_deref()))?;
            if !resp.is_success() {
                return Err(api::api_error(&resp));
            }
            let list: InstanceList = resp.json()?;
            if list.items.iter().any(|i| i.name == name) {
                return Ok(true);
            }
            match list.next_page_token {
                Some(t) if !t.is_empty() => page = Some(t),
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Wait for the new instance's external address. Whatever fails on the
    /// way, the instance is deleted before the error goes back, so a
    /// failover leaves nothing billed here.
    fn come_up(
        &self,
        api: Api<'_>,
        handle: Handle,
        adopted: bool,
        user: String,
    ) -> Result<Instance> {
        let (zone, name) = (handle.zone.clone(), handle.name.clone());
        let result = self.await_address(api, handle, adopted, user);
        result.map_err(|e| {
            let cleanup = match self.delete(api, &zone, &name) {
                Ok(()) => format!("instance {name} was deleted"),
                Err(d) => unchecked(&name, &d),
            };
            e.with_message(format!("{}; {cleanup}", e.message()))
        })
    }

    fn await_address(
        &self,
        api: Api<'_>,
        mut handle: Handle,
        adopted: bool,
        user: String,
    ) -> Result<Instance> {
        for attempt in 0..MAX_ADDRESS_POLLS {
            match self.get(api, &handle.zone, &handle.name)? {
                Some(inst) if inst.external_ip().is_some() => {
                    if adopted {
                        handle.allocation.started =
                            compute_bridge_sdk::time::unix_from_rfc3339(&inst.creation_timestamp)
                                .unwrap_or(handle.allocation.started);
                    }
                    return to_instance(&inst, &handle, user);
                }
                Some(_) if attempt + 1 < MAX_ADDRESS_POLLS => self.host.sleep(1),
                Some(_) => break,
                None => {
                    return Err(BackendError::transient(format!(
                        "instance {} disappeared right after it was created",
                        handle.name
                    )));
                }
            }
        }
        Err(BackendError::transient(format!(
            "instance {} got no external address",
            handle.name
        )))
    }
}

/// What to say when an instance may be left: it carries the provider's
/// labels, so the orphan sweep finds it.
fn unchecked(name: &str, e: &BackendError) -> String {
    format!(
        "could not check or delete instance {name}, which it may have created ({}); it carries \
         this provider's labels, and `sweep_orphans` deletes it at the next start",
        e.message()
    )
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

impl<'h, H: Host> Gcp<'h, H> {
    /// `capabilities`: the catalog's regions, TDX when some TDX type has
    /// a zone, the configured totals.
    pub fn offer(&self) -> Result<Offer> {
        // Parse the key now so a broken one shows at start, not at the
        // first grant.
        auth::Signer::new(&self.key)?;
        Ok(Offer {
            regions: catalog::regions(&self.cfg.machine_types),
            tdx_capable: catalog::tdx_capable(&self.cfg.machine_types),
            max_cpu_millicores: self.cfg.max_cpu_millicores,
            max_ram_mib: self.cfg.max_ram_mib,
            td_measurements: vec![],
        })
    }

    /// `can-satisfy`: an image pinned by digest and a catalog type that
    /// fits. No network.
    pub fn can_satisfy(&self, g: &GrantSpec) -> bool {
        bootstrap::PinnedImage::parse(&g.image).is_ok()
            && catalog::pick(&self.cfg.machine_types, Want::of(g)).is_some()
    }

    /// `provision`: see the crate docs (type and zone, zones within a
    /// region, lost answers).
    pub fn provision(&self, g: &GrantSpec, w: &Workload) -> Result<Instance> {
        let c = self;
        let image = bootstrap::PinnedImage::parse(&g.image)?;
        let want = Want::of(g);
        let choice = catalog::pick(&c.cfg.machine_types, want).ok_or_else(|| {
            BackendError::rejected(
                "no machine type in `machine_types` fits this grant's size, region and TDX need",
            )
        })?;
        let machine = choice.entry;
        let region = catalog::region_of(choice.place);
        let subnetwork = c.cfg.subnetwork_for(region);
        let (provider, backend) = (&self.provider_id, &self.backend_name);
        let name = instance_name(provider, &g.request_id);
        let filter = api::request_filter(provider, backend, &g.request_id);
        let script = bootstrap::script(&w.ssh_user, &w.ssh_public_key, &image)?;
        let labels = LABELS.map(
            label_value(provider),
            label_value(&g.request_id),
            label_value(backend),
            label_value(&w.ssh_user),
        );
        let api = c.api(&c.cfg.project);
        // The zones of the chosen type in this region, in the operator's
        // order: a zone out of stock moves on to the next; anything else
        // (a quota, a rate limit, a refusal) answers for the region.
        let zones = catalog::zones_to_try(choice, want);
        let mut full: Vec<&str> = Vec::new();
        for (i, zone) in zones.iter().copied().enumerate() {
            let spec = InstanceSpec {
                name: &name,
                zone,
                machine_type: &machine.name,
                tdx: machine.tdx,
                image: &c.cfg.image,
                disk_gb: c.cfg.boot_disk_gb,
                network: &c.cfg.network,
                subnetwork: subnetwork.as_deref(),
                tags: &c.cfg.network_tags,
                labels: labels.clone(),
                request_id: &g.request_id,
                startup_script: &script,
            };
            let started = self.host.now();
            match c.create(api, &spec, &filter) {
                Ok(adopted) => {
                    self.host.log(
                        Level::Info,
                        "instance created",
                        &[
                            ("instance", &name),
                            ("zone", zone),
                            ("machine_type", &machine.name),
                            ("tdx", if machine.tdx { "yes" } else { "no" }),
                        ],
                    );
                    let handle = handle_for(&c.cfg.project, zone, &name, machine, started);
                    return c.come_up(api, handle, adopted, w.ssh_user.clone());
                }
                Err(r) if r.zonal && i + 1 < zones.len() => {
                    self.host.log(
                        Level::Info,
                        "zone out of stock, trying the next zone of the region",
                        &[("zone", zone), ("machine_type", &machine.name)],
                    );
                    full.push(zone);
                }
                Err(r) if full.is_empty() => return Err(r.error),
                Err(r) => {
                    return Err(r.error.with_message(format!(
                        "{} (zones {} of {region} were out of stock before)",
                        r.error.message(),
                        full.join(", ")
                    )));
                }
            }
        }
        Err(BackendError::internal("no zone to try"))
    }

    /// `status`: the instance's `Status`, mapped ([`GceInstance::state`]).
    pub fn status(&self, i: &Instance) -> Result<InstanceState> {
        let h = Handle::decode(&i.handle)?;
        let c = self;
        Ok(match c.get(c.api(&h.project), &h.zone, &h.name)? {
            None => InstanceState::Gone,
            Some(inst) => inst.state(),
        })
    }

    /// `usage`: allocated × time, to the stop or now.
    pub fn usage(&self, i: &Instance) -> Result<ResourceUsage> {
        let h = Handle::decode(&i.handle)?;
        let c = self;
        let end = c
            .get(c.api(&h.project), &h.zone, &h.name)?
            .and_then(|inst| inst.stopped_at())
            .unwrap_or_else(|| self.host.now());
        Ok(h.allocation.usage(end))
    }

    /// `terminate`: delete and wait; already gone is success.
    pub fn terminate(&self, i: &Instance) -> Result<()> {
        let h = Handle::decode(&i.handle)?;
        let c = self;
        c.delete(c.api(&h.project), &h.zone, &h.name)?;
        self.host
            .log(Level::Info, "instance deleted", &[("instance", &h.name)]);
        Ok(())
    }

    /// Every instance of this provider and backend in the project, in
    /// any zone (`instances.aggregatedList`), so an instance in a zone the
    /// catalog no longer lists is still found by the orphan sweep.
    pub fn list_instances(&self) -> Result<Vec<Instance>> {
        let c = self;
        let api = c.api(&c.cfg.project);
        let filter = api::list_filter(&self.provider_id, &self.backend_name);
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let resp = c.send(api.aggregated_list(&filter, page.as_deref()))?;
            if !resp.is_success() {
                return Err(api::api_error(&resp));
            }
            let list: InstanceAggregatedList = resp.json()?;
            if !list.unreachables.is_empty() {
                // A partial list would let the sweep miss an orphan there;
                // say so rather than answer as if it were whole.
                return Err(BackendError::transient(format!(
                    "Compute Engine could not list instances in {}",
                    list.unreachables.join(", ")
                )));
            }
            for inst in list.items.values().flat_map(|s| &s.instances) {
                out.push(c.listed(inst));
            }
            match list.next_page_token {
                Some(t) if !t.is_empty() => page = Some(t),
                _ => return Ok(out),
            }
        }
        Err(BackendError::transient(format!(
            "instances.aggregatedList still had pages after {MAX_PAGES}"
        )))
    }
}

/// The handle of a new instance.
fn handle_for(project: &str, zone: &str, name: &str, t: &MachineType, started: u64) -> Handle {
    Handle {
        project: project.to_string(),
        zone: zone.to_string(),
        name: name.to_string(),
        machine_type: t.name.clone(),
        allocation: Allocation {
            cpus: t.cpus,
            ram_mib: t.ram_mib,
            started,
        },
    }
}

impl<H: Host> Gcp<'_, H> {
    /// A listed instance as the contract's record (no address yet is an
    /// empty `public_host`).
    fn listed(&self, inst: &GceInstance) -> Instance {
        let c = self;
        let zone = inst.zone_name();
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
            allocation: Allocation {
                cpus: machine.map_or(0, |t| t.cpus),
                ram_mib: machine.map_or(0, |t| t.ram_mib),
                started: compute_bridge_sdk::time::unix_from_rfc3339(&inst.creation_timestamp)
                    .unwrap_or_else(|| self.host.now()),
            },
        };
        let user = inst.labels.get(LABELS.user).cloned().unwrap_or_default();
        let mut found = to_instance(inst, &handle, user.clone()).unwrap_or(Instance {
            instance_id: inst.name.clone(),
            region: String::new(),
            public_host: String::new(),
            ssh_port: 22,
            user,
            host_key: String::new(),
            handle: handle.encode(),
        });
        found.region = catalog::region_of(zone).to_string();
        found
    }
}
