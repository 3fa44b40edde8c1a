//! The backend's behaviour over a [`Host`]: the wasm glue runs it over the
//! host's capabilities ([`compute_bridge_sdk::WasmHost`]), the native tests
//! over a [`compute_bridge_sdk::MemoryHost`]. SDK types in and out;
//! [`BackendError`] is its only error.
//!
//! Invariants: every resource a provision creates is in the grant's region
//! and carries the provider, backend, request and user tags; a provision
//! that fails removes what it created (found by those tags and by the
//! names derived from the grant) before the error returns. Nothing is kept
//! between calls but the token and a virtual network's checked region in
//! the host's cache; the client secret is never logged.

use std::collections::BTreeMap;

use cb_cloud::allocation::Allocation;
use cb_cloud::catalog::Want;
use cb_cloud::token::{Bearer, Token};
use compute_bridge_sdk::bootstrap;
use compute_bridge_sdk::http::{Request, Response};
use compute_bridge_sdk::log::Level;
use compute_bridge_sdk::{
    BackendError, GrantSpec, Host, Instance, InstanceState, Offer, ResourceUsage, Workload,
};

use crate::arm::{
    self, Arm, AsyncStatus, Handle, Kind, Names, Page, Poll, PublicIp, TAGS, Tracked,
    VirtualNetwork, Vm, VmSpec,
};
use crate::auth;
use crate::catalog;
use crate::config::{AzureConfig, Network};

type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Status polls of one long-running operation before giving up (the call's
/// deadline usually ends it first).
const MAX_POLLS: u32 = 600;
/// Longest wait between polls, whatever `Retry-After` says.
const MAX_POLL_INTERVAL: u64 = 10;
/// Reads of a new static address before giving up.
const MAX_ADDRESS_POLLS: u32 = 10;
/// How long a virtual network's checked region is remembered, seconds (a
/// virtual network cannot move region; a changed `subnet_id` is a new key).
const VNET_CHECK_TTL: u32 = 3600;

/// The backend for one configuration, provider, backend name and host.
pub struct Azure<'h, H: Host> {
    cfg: AzureConfig,
    provider_id: String,
    backend_name: String,
    host: &'h H,
}

/// What a failed provision left, once cleaned up.
enum Cleanup {
    /// Nothing of the grant existed.
    Nothing,
    /// These (`type/name`) existed and were deleted.
    Removed(Vec<String>),
    /// Something could not be listed or deleted.
    Failed(String),
}

impl<'h, H: Host> Azure<'h, H> {
    /// A backend for `cfg` (validated) on behalf of `provider_id`, as the
    /// backend the operator named `backend_name`.
    pub fn new(
        cfg: AzureConfig,
        provider_id: impl Into<String>,
        backend_name: impl Into<String>,
        host: &'h H,
    ) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            provider_id: provider_id.into(),
            backend_name: backend_name.into(),
            host,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AzureConfig {
        &self.cfg
    }

    fn arm(&self) -> Arm<'_> {
        Arm {
            base: self.cfg.management_url.trim_end_matches('/'),
            subscription: &self.cfg.subscription_id,
            resource_group: &self.cfg.resource_group,
        }
    }

    /// This app's token in the host's cache.
    fn bearer(&self) -> Bearer<'h, H> {
        Bearer::new(self.host, auth::cache_key(&self.cfg))
    }

    /// A new access token for the app's client credentials.
    fn fetch_token(&self) -> Result<Token> {
        auth::parse_token(&self.host.send(&auth::token_request(&self.cfg))?)
    }

    /// Send `req` with the token ([`Bearer::send`]: a 401 gets one new
    /// token).
    fn send(&self, req: Request) -> Result<Response> {
        Ok(self.bearer().send(&req, || self.fetch_token())?)
    }

    /// Follow an accepted request's long-running operation to its end.
    fn follow(&self, first: Response) -> Result<()> {
        let (url, by_status) = match arm::poll_for(&first) {
            Poll::Done => return Ok(()),
            Poll::AsyncOperation(u) => (u, true),
            Poll::Location(u) => (u, false),
        };
        let mut last = first;
        for _ in 0..MAX_POLLS {
            self.host.sleep(arm::retry_after(&last, MAX_POLL_INTERVAL));
            let resp = self.send(Request::get(&url))?;
            if by_status {
                if !resp.is_success() {
                    return Err(arm::api_error(&resp));
                }
                let status: AsyncStatus = resp.json()?;
                if let Some(outcome) = status.outcome() {
                    return outcome;
                }
            } else {
                match resp.status {
                    202 => {}
                    200..=299 => return Ok(()),
                    _ => return Err(arm::api_error(&resp)),
                }
            }
            last = resp;
        }
        Err(BackendError::transient(format!(
            "operation still running after {MAX_POLLS} polls"
        )))
    }

    fn put(&self, kind: Kind, name: &str, body: &serde_json::Value) -> Result<()> {
        let resp = self.send(self.arm().put(kind, name, body))?;
        if !resp.is_success() {
            return Err(arm::api_error(&resp));
        }
        self.follow(resp)
    }

    /// Delete and wait. `true` if it existed; a resource already gone (204,
    /// 404) is `false`, not an error.
    fn delete(&self, kind: Kind, name: &str) -> Result<bool> {
        let resp = self.send(self.arm().delete(kind, name))?;
        match resp.status {
            204 | 404 => Ok(false),
            _ if resp.is_success() => self.follow(resp).map(|()| true),
            _ => Err(arm::api_error(&resp)),
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<Option<T>> {
        let resp = self.send(self.arm().get(kind, name))?;
        match resp.status {
            404 => Ok(None),
            _ if resp.is_success() => Ok(Some(resp.json()?)),
            _ => Err(arm::api_error(&resp)),
        }
    }

    /// Every resource of `kind` in the resource group, all pages.
    fn list<T: serde::de::DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut next = Some(self.arm().list(kind));
        while let Some(req) = next.take() {
            let resp = self.send(req)?;
            if !resp.is_success() {
                return Err(arm::api_error(&resp));
            }
            let page: Page<T> = resp.json()?;
            out.extend(page.value);
            next = page.next_link.map(Request::get);
        }
        Ok(out)
    }

    fn address(&self, ip_name: &str) -> Result<Option<String>> {
        Ok(self
            .get::<PublicIp>(Kind::PublicIp, ip_name)?
            .and_then(|p| p.properties.ip_address)
            .filter(|a| !a.is_empty()))
    }

    /// Remove the VM, then its NIC, then its address.
    fn remove_all(&self, names: &Names) -> Result<()> {
        self.delete(Kind::Vm, &names.vm)?;
        self.delete(Kind::Nic, &names.nic)?;
        self.delete(Kind::PublicIp, &names.ip).map(|_| ())
    }

    /// The network `region` uses, its virtual network checked to be in
    /// that region. ARM would refuse the NIC anyway; asking first names the
    /// key to fix and creates nothing. The answer is cached.
    fn network(&self, region: &str) -> Result<&Network> {
        let net = self.cfg.networks.get(region).ok_or_else(|| {
            // validate() refuses a catalog region without a network.
            BackendError::config(format!("`networks`: region {region} has no network"))
        })?;
        let vnet = net.virtual_network_id();
        let key = format!("azure-vnet-region {vnet}");
        if self.host.cache_get(&key).as_deref() == Some(region.as_bytes()) {
            return Ok(net);
        }
        let resp = self.send(self.arm().get_virtual_network(vnet))?;
        let found: VirtualNetwork = match resp.status {
            404 => {
                return Err(BackendError::config(format!(
                    "`networks.{region}.subnet_id`: its virtual network {vnet} does not exist"
                )));
            }
            _ if resp.is_success() => resp.json()?,
            _ => return Err(arm::api_error(&resp)),
        };
        let actual = arm::region_key(&found.location);
        if actual != region {
            return Err(BackendError::config(format!(
                "`networks.{region}.subnet_id`: its virtual network is in {actual}, not in \
                 {region}; a NIC must be in a virtual network of its VM's region"
            )));
        }
        self.host.cache_set(&key, region.as_bytes(), VNET_CHECK_TTL);
        Ok(net)
    }

    /// Create the address, NIC and VM, all in `location`; the address.
    fn create(
        &self,
        names: &Names,
        location: &str,
        vm: &VmSpec<'_>,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let a = self.arm();
        let net = self.network(location)?;
        self.put(
            Kind::PublicIp,
            &names.ip,
            &arm::public_ip_body(location, tags),
        )?;
        let mut address = None;
        for attempt in 0..MAX_ADDRESS_POLLS {
            address = self.address(&names.ip)?;
            if address.is_some() || attempt + 1 == MAX_ADDRESS_POLLS {
                break;
            }
            self.host.sleep(1);
        }
        let address = address.ok_or_else(|| {
            BackendError::transient(format!("public address {} was not allocated", names.ip))
        })?;
        self.put(
            Kind::Nic,
            &names.nic,
            &arm::nic_body(
                location,
                tags,
                &net.subnet_id,
                &a.id(Kind::PublicIp, &names.ip),
                net.network_security_group_id.as_deref(),
            ),
        )
        .map_err(|e| match e {
            BackendError::Config(m) => BackendError::config(format!("`networks.{location}`: {m}")),
            e => e,
        })?;
        self.put(Kind::Vm, &names.vm, &arm::vm_body(vm))?;
        Ok(address)
    }

    /// The grant's resources, found by their tags (this provider, this
    /// backend, this request) in the resource group's VM, NIC and address
    /// lists, and by the names the grant gives them (a list can lag a
    /// create). In removal order, each `(kind, name)` once.
    fn find_grant(&self, names: &Names, request_id: &str) -> Result<Vec<(Kind, String)>> {
        let (provider, backend) = (&self.provider_id, &self.backend_name);
        let mut found = Vec::new();
        for kind in Kind::REMOVAL_ORDER {
            let tagged = self
                .list::<Tracked>(kind)?
                .into_iter()
                .filter(|r| arm::is_ours(&r.tags, provider, backend, Some(request_id)))
                .map(|r| r.name);
            let named = match kind {
                Kind::Vm => &names.vm,
                Kind::Nic => &names.nic,
                Kind::PublicIp => &names.ip,
            };
            for name in tagged.chain(std::iter::once(named.clone())) {
                if !found.contains(&(kind, name.clone())) {
                    found.push((kind, name));
                }
            }
        }
        Ok(found)
    }

    /// After a failed provision: remove whatever of the grant exists, its
    /// answers lost or not. When the listing fails, the names alone are
    /// tried.
    fn clean_up(&self, names: &Names, request_id: &str) -> Cleanup {
        let (targets, listing) = match self.find_grant(names, request_id) {
            Ok(t) => (t, None),
            Err(e) => (
                vec![
                    (Kind::Vm, names.vm.clone()),
                    (Kind::Nic, names.nic.clone()),
                    (Kind::PublicIp, names.ip.clone()),
                ],
                Some(e),
            ),
        };
        let mut removed = Vec::new();
        for (kind, name) in targets {
            match self.delete(kind, &name) {
                Ok(true) => removed.push(format!("{}/{name}", kind.type_name())),
                Ok(false) => {}
                Err(e) => {
                    return Cleanup::Failed(format!(
                        "deleting {}/{name}: {}",
                        kind.type_name(),
                        e.message()
                    ));
                }
            }
        }
        match (listing, removed.is_empty()) {
            (Some(e), _) => Cleanup::Failed(format!(
                "listing the grant's resources by their tags: {}",
                e.message()
            )),
            (None, true) => Cleanup::Nothing,
            (None, false) => Cleanup::Removed(removed),
        }
    }
}

impl<'h, H: Host> Azure<'h, H> {
    /// `capabilities`: the catalog's regions, TDX when some TDX size has a
    /// region, the configured totals.
    pub fn offer(&self) -> Offer {
        let c = self;
        Offer {
            regions: catalog::regions(&c.cfg.vm_sizes),
            tdx_capable: catalog::tdx_capable(&c.cfg.vm_sizes),
            max_cpu_millicores: c.cfg.max_cpu_millicores,
            max_ram_mib: c.cfg.max_ram_mib,
            td_measurements: vec![],
        }
    }

    /// `can-satisfy`: an image pinned by digest and a catalog size that
    /// fits. No network.
    pub fn can_satisfy(&self, g: &GrantSpec) -> bool {
        bootstrap::PinnedImage::parse(&g.image).is_ok()
            && catalog::pick(&self.cfg.vm_sizes, Want::of(g)).is_some()
    }

    /// `provision`: the address, NIC and VM in the chosen region; on any
    /// failure what the grant created is removed first.
    pub fn provision(&self, g: &GrantSpec, w: &Workload) -> Result<Instance> {
        let c = self;
        let image = bootstrap::PinnedImage::parse(&g.image)?;
        // The grant's region, when it names one, is the only one tried
        // (`pick` keeps to it): the fleet moves a grant between regions.
        let choice = catalog::pick(&c.cfg.vm_sizes, Want::of(g)).ok_or_else(|| {
            BackendError::rejected(
                "no size in `vm_sizes` fits this grant's size, region and TDX need",
            )
        })?;
        let (size, location) = (choice.entry, choice.place);
        let provider = self.provider_id.clone();
        let names = Names::for_grant(&provider, &g.request_id);
        let script = bootstrap::script(&w.ssh_user, &w.ssh_public_key, &image)?;
        let tags = TAGS.map(
            provider.clone(),
            g.request_id.clone(),
            self.backend_name.clone(),
            w.ssh_user.clone(),
        );
        let nic_id = c.arm().id(Kind::Nic, &names.nic);
        let spec = VmSpec {
            location,
            tags: &tags,
            size: &size.name,
            tdx: size.tdx,
            image: &c.cfg.image,
            disk_gb: c.cfg.os_disk_gb,
            disk_type: &c.cfg.os_disk_type,
            computer_name: &names.vm,
            user: &w.ssh_user,
            ssh_public_key: &w.ssh_public_key,
            custom_data: &script,
            nic_id: &nic_id,
        };
        let started = self.host.now();
        let address = match c.create(&names, location, &spec, &tags) {
            Ok(a) => a,
            Err(e) => {
                // Whatever failed (a refusal, a capacity code, or an answer
                // lost after ARM acted), leave nothing billed behind the
                // failover: the error says what was found and removed.
                let note = match c.clean_up(&names, &g.request_id) {
                    Cleanup::Nothing => "nothing had been created".to_string(),
                    Cleanup::Removed(r) => {
                        self.host.log(
                            Level::Warn,
                            "provision failed; removed what it had created",
                            &[("vm", &names.vm), ("removed", &r.join(","))],
                        );
                        format!("removed {} it had created", r.join(", "))
                    }
                    Cleanup::Failed(why) => {
                        self.host.log(
                            Level::Warn,
                            "provision failed and its resources could not be removed",
                            &[("vm", &names.vm), ("error", &why)],
                        );
                        format!(
                            "could not remove what it may have created ({why}); sweep_orphans \
                             finds the grant's resources by their tags and removes them at the \
                             next start"
                        )
                    }
                };
                return Err(e.with_message(format!("{}; {note}", e.message())));
            }
        };
        self.host.log(
            Level::Info,
            "virtual machine created",
            &[
                ("vm", &names.vm),
                ("location", location),
                ("size", &size.name),
                ("tdx", if size.tdx { "yes" } else { "no" }),
            ],
        );
        let handle = Handle {
            subscription: c.cfg.subscription_id.clone(),
            resource_group: c.cfg.resource_group.clone(),
            vm: names.vm.clone(),
            location: location.to_string(),
            size: size.name.clone(),
            allocation: Allocation {
                cpus: size.cpus,
                ram_mib: size.ram_mib,
                started,
            },
        };
        Ok(Instance {
            instance_id: names.vm,
            region: location.to_string(),
            public_host: address,
            ssh_port: 22,
            user: w.ssh_user.clone(),
            host_key: String::new(),
            handle: handle.encode(),
        })
    }

    /// `status`: the VM's power state ([`Vm::state`]); gone when ARM no
    /// longer knows it.
    pub fn status(&self, i: &Instance) -> Result<InstanceState> {
        let h = Handle::decode(&i.handle)?;
        let c = self;
        Ok(match c.get::<Vm>(Kind::Vm, &h.vm)? {
            None => InstanceState::Gone,
            Some(vm) => vm.state(),
        })
    }

    /// `usage`: allocated × time, to now.
    pub fn usage(&self, i: &Instance) -> Result<ResourceUsage> {
        Ok(Handle::decode(&i.handle)?.allocation.usage(self.host.now()))
    }

    /// `terminate`: the VM, its NIC and its address; already gone is
    /// success.
    pub fn terminate(&self, i: &Instance) -> Result<()> {
        let h = Handle::decode(&i.handle)?;
        let c = self;
        c.remove_all(&Names::for_vm(&h.vm))?;
        self.host
            .log(Level::Info, "virtual machine deleted", &[("vm", &h.vm)]);
        Ok(())
    }

    /// This provider's and backend's VMs, by their tags; and, as instances
    /// of their own, NICs and addresses so tagged whose VM does not exist
    /// (a provision whose cleanup failed), so the orphan sweep removes them
    /// too.
    pub fn list_instances(&self) -> Result<Vec<Instance>> {
        let c = self;
        let (provider, backend) = (&self.provider_id, &self.backend_name);
        let ours = |tags: &BTreeMap<String, String>| arm::is_ours(tags, provider, backend, None);
        let vms: Vec<Vm> = c.list::<Vm>(Kind::Vm)?;
        let mut out = Vec::new();
        for vm in vms.iter().filter(|vm| ours(&vm.resource.tags)) {
            let names = Names::for_vm(&vm.resource.name);
            let size = &vm.properties.hardware_profile.vm_size;
            let known = c.cfg.vm_sizes.iter().find(|s| &s.name == size);
            let handle = Handle {
                subscription: c.cfg.subscription_id.clone(),
                resource_group: c.cfg.resource_group.clone(),
                vm: vm.resource.name.clone(),
                location: vm.resource.location.clone(),
                size: size.clone(),
                allocation: Allocation {
                    cpus: known.map_or(0, |s| s.cpus),
                    ram_mib: known.map_or(0, |s| s.ram_mib),
                    started: vm
                        .properties
                        .time_created
                        .as_deref()
                        .and_then(compute_bridge_sdk::time::unix_from_rfc3339)
                        .unwrap_or_else(|| self.host.now()),
                },
            };
            out.push(Instance {
                instance_id: vm.resource.name.clone(),
                region: vm.resource.location.clone(),
                public_host: c.address(&names.ip)?.unwrap_or_default(),
                ssh_port: 22,
                user: vm.resource.tags.get(TAGS.user).cloned().unwrap_or_default(),
                host_key: String::new(),
                handle: handle.encode(),
            });
        }
        for (kind, suffix) in [(Kind::Nic, "-nic"), (Kind::PublicIp, "-ip")] {
            for r in c
                .list::<Tracked>(kind)?
                .into_iter()
                .filter(|r| ours(&r.tags))
            {
                let Some(vm) = r.name.strip_suffix(suffix) else {
                    continue;
                };
                if vms.iter().any(|v| v.resource.name == vm)
                    || out.iter().any(|i| i.instance_id == vm)
                {
                    continue;
                }
                let handle = Handle {
                    subscription: c.cfg.subscription_id.clone(),
                    resource_group: c.cfg.resource_group.clone(),
                    vm: vm.to_string(),
                    location: r.location.clone(),
                    size: String::new(),
                    allocation: Allocation {
                        cpus: 0,
                        ram_mib: 0,
                        started: self.host.now(),
                    },
                };
                out.push(Instance {
                    instance_id: vm.to_string(),
                    region: r.location.clone(),
                    public_host: String::new(),
                    ssh_port: 22,
                    user: r.tags.get(TAGS.user).cloned().unwrap_or_default(),
                    host_key: String::new(),
                    handle: handle.encode(),
                });
            }
        }
        Ok(out)
    }
}
