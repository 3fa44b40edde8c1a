//! The wasm glue: configuration in, ARM calls through the host's `http`,
//! the token through its `cache`, WIT types out.

use std::collections::BTreeMap;
use std::time::Duration;

use compute_bridge_sdk::http::{Request, Response};
use compute_bridge_sdk::log::Level;
use compute_bridge_sdk::prelude::*;
use compute_bridge_sdk::{bootstrap, now_unix};

use crate::arm::{
    self, Arm, AsyncStatus, Handle, Kind, Names, Page, Poll, PublicIp, Vm, VmSpec, tags,
};
use crate::auth;
use crate::catalog::{self, Want};
use crate::config::AzureConfig;

/// Status polls of one long-running operation before giving up (the call's
/// deadline usually ends it first).
const MAX_POLLS: u32 = 600;
/// Longest wait between polls, whatever `Retry-After` says.
const MAX_POLL_INTERVAL: u64 = 10;
/// Reads of a new static address before giving up.
const MAX_ADDRESS_POLLS: u32 = 10;

struct Azure;

/// One call's view of the backend.
struct Ctx {
    cfg: AzureConfig,
}

impl Ctx {
    fn new() -> Result<Self> {
        let cfg: AzureConfig = config::load()?;
        cfg.validate()?;
        Ok(Self { cfg })
    }

    fn arm(&self) -> Arm<'_> {
        Arm {
            base: self.cfg.management_url.trim_end_matches('/'),
            subscription: &self.cfg.subscription_id,
            resource_group: &self.cfg.resource_group,
        }
    }

    /// An access token: the cached one, or a new one (then cached for its
    /// life less a margin).
    fn token(&self) -> Result<String> {
        let key = auth::cache_key(&self.cfg);
        if let Some(t) = cache::get_string(&key) {
            return Ok(t);
        }
        let resp = auth::token_request(&self.cfg).send()?;
        let token = auth::parse_token(&resp)?;
        cache::set(
            &key,
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

    /// Send `req` with the token; on 401 drop the token and retry once.
    fn send(&self, req: Request) -> Result<Response> {
        let resp = req.clone().bearer(&self.token()?).send()?;
        if resp.status != 401 {
            return Ok(resp);
        }
        cache::remove(&auth::cache_key(&self.cfg));
        Ok(req.bearer(&self.token()?).send()?)
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
            std::thread::sleep(Duration::from_secs(arm::retry_after(
                &last,
                MAX_POLL_INTERVAL,
            )));
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

    /// Delete and wait; a resource already gone (204, 404) is success.
    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let resp = self.send(self.arm().delete(kind, name))?;
        match resp.status {
            204 | 404 => Ok(()),
            _ if resp.is_success() => self.follow(resp),
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

    fn address(&self, ip_name: &str) -> Result<Option<String>> {
        Ok(self
            .get::<PublicIp>(Kind::PublicIp, ip_name)?
            .and_then(|p| p.properties.ip_address)
            .filter(|a| !a.is_empty()))
    }

    /// Remove the VM, then its NIC, then its address (a NIC cannot go while
    /// a VM holds it, nor an address while a NIC does).
    fn remove_all(&self, names: &Names) -> Result<()> {
        self.delete(Kind::Vm, &names.vm)?;
        self.delete(Kind::Nic, &names.nic)?;
        self.delete(Kind::PublicIp, &names.ip)
    }

    /// Create the address, NIC and VM; the address.
    fn create(
        &self,
        names: &Names,
        location: &str,
        vm: &VmSpec<'_>,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let a = self.arm();
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
            std::thread::sleep(Duration::from_secs(1));
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
                &self.cfg.subnet_id,
                &a.id(Kind::PublicIp, &names.ip),
                self.cfg.network_security_group_id.as_deref(),
            ),
        )?;
        self.put(Kind::Vm, &names.vm, &arm::vm_body(vm))?;
        Ok(address)
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

impl Backend for Azure {
    fn capabilities() -> Result<Offer> {
        let c = Ctx::new()?;
        Ok(Offer {
            regions: catalog::regions(&c.cfg.vm_sizes),
            tdx_capable: catalog::tdx_capable(&c.cfg.vm_sizes),
            max_cpu_millicores: c.cfg.max_cpu_millicores,
            max_ram_mib: c.cfg.max_ram_mib,
        })
    }

    fn can_satisfy(g: &GrantSpec) -> bool {
        let Ok(c) = Ctx::new() else { return false };
        bootstrap::PinnedImage::parse(&g.image).is_ok()
            && catalog::pick(&c.cfg.vm_sizes, want(g)).is_some()
    }

    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        let c = Ctx::new()?;
        let image = bootstrap::PinnedImage::parse(&g.image)?;
        let choice = catalog::pick(&c.cfg.vm_sizes, want(&g)).ok_or_else(|| {
            BackendError::rejected(
                "no size in `vm_sizes` fits this grant's size, region and TDX need",
            )
        })?;
        let (size, location) = (choice.size, choice.region);
        let provider = config::provider_id();
        let names = Names::for_grant(&provider, &g.request_id);
        let script = bootstrap::script(&w.ssh_user, &w.ssh_public_key, &image)?;
        let tags = BTreeMap::from([
            (tags::PROVIDER.to_string(), provider.clone()),
            (tags::REQUEST.to_string(), g.request_id.clone()),
            (tags::BACKEND.to_string(), config::backend_name()),
            (tags::USER.to_string(), w.ssh_user.clone()),
        ]);
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
        let started = now_unix();
        let address = match c.create(&names, location, &spec, &tags) {
            Ok(a) => a,
            Err(e) => {
                // Leave nothing billed behind a failover.
                if let Err(ce) = c.remove_all(&names) {
                    log::warn(&format!(
                        "cleaning up {} after a failed create: {}",
                        names.vm,
                        ce.message()
                    ));
                }
                return Err(e);
            }
        };
        log::with_fields(
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
            cpus: size.cpus,
            ram_mib: size.ram_mib,
            started,
        };
        Ok(Instance {
            instance_id: names.vm,
            region: location.to_string(),
            public_host: address,
            ssh_port: 22,
            user: w.ssh_user,
            host_key: String::new(),
            handle: handle.encode(),
        })
    }

    fn status(i: Instance) -> Result<InstanceState> {
        let h = Handle::decode(&i.handle)?;
        let c = Ctx::new()?;
        Ok(match c.get::<Vm>(Kind::Vm, &h.vm)? {
            None => InstanceState::Gone,
            Some(vm) => vm.state(),
        })
    }

    fn usage(i: Instance) -> Result<ResourceUsage> {
        Ok(Handle::decode(&i.handle)?.usage(now_unix()))
    }

    fn terminate(i: Instance) -> Result<()> {
        let h = Handle::decode(&i.handle)?;
        let c = Ctx::new()?;
        c.remove_all(&Names::for_vm(&h.vm))?;
        log::with_fields(Level::Info, "virtual machine deleted", &[("vm", &h.vm)]);
        Ok(())
    }

    fn list_instances() -> Result<Vec<Instance>> {
        let c = Ctx::new()?;
        let provider = config::provider_id();
        let backend = config::backend_name();
        let mut out = Vec::new();
        let mut next = Some(c.arm().list_vms());
        while let Some(req) = next.take() {
            let resp = c.send(req)?;
            if !resp.is_success() {
                return Err(arm::api_error(&resp));
            }
            let page: Page<Vm> = resp.json()?;
            for vm in page.value.iter().filter(|vm| {
                vm.tags.get(tags::PROVIDER) == Some(&provider)
                    && vm.tags.get(tags::BACKEND) == Some(&backend)
            }) {
                let names = Names::for_vm(&vm.name);
                let size = &vm.properties.hardware_profile.vm_size;
                let known = c.cfg.vm_sizes.iter().find(|s| &s.name == size);
                let handle = Handle {
                    subscription: c.cfg.subscription_id.clone(),
                    resource_group: c.cfg.resource_group.clone(),
                    vm: vm.name.clone(),
                    location: vm.location.clone(),
                    size: size.clone(),
                    cpus: known.map_or(0, |s| s.cpus),
                    ram_mib: known.map_or(0, |s| s.ram_mib),
                    started: vm
                        .properties
                        .time_created
                        .as_deref()
                        .and_then(compute_bridge_sdk::time::unix_from_rfc3339)
                        .unwrap_or_else(now_unix),
                };
                out.push(Instance {
                    instance_id: vm.name.clone(),
                    region: vm.location.clone(),
                    public_host: c.address(&names.ip)?.unwrap_or_default(),
                    ssh_port: 22,
                    user: vm.tags.get(tags::USER).cloned().unwrap_or_default(),
                    host_key: String::new(),
                    handle: handle.encode(),
                });
            }
            next = page.next_link.map(Request::get);
        }
        Ok(out)
    }
}

compute_bridge_sdk::export_backend!(Azure);
