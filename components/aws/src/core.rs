//! The backend's behaviour over a [`Host`]: the wasm glue runs it over the
//! host's capabilities ([`compute_bridge_sdk::WasmHost`]), the native tests
//! over a [`compute_bridge_sdk::MemoryHost`]. SDK types in and out;
//! [`BackendError`] is its only error.
//!
//! Nothing is kept between calls: an instance is found again from its id
//! and its [`Handle`] (region, type, sizes, times), and `list_instances`
//! rebuilds both from the instance's tags.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use compute_bridge_sdk::http::{self as sdk_http, HttpError};
use compute_bridge_sdk::log::Level;
use compute_bridge_sdk::{
    BackendError, GrantSpec, Host, Instance, InstanceState, Offer, ResourceUsage, TdxRequirement,
    Workload,
};

use crate::config::{AwsConfig, InstanceType, RegionConfig};
use crate::ec2::{self, Ec2Instance, HttpResponse, Query};
use crate::error::Ec2Error;
use crate::userdata;

/// Tag holding the provider id of the bridge that launched the instance.
pub const TAG_PROVIDER: &str = "compute-bridge:provider";
/// Tag holding the grant's request id.
pub const TAG_REQUEST: &str = "compute-bridge:request";
/// Tag holding the grant's `valid_to` (unix seconds).
pub const TAG_VALID_TO: &str = "compute-bridge:valid-to";
/// Tag holding the workload's login name.
pub const TAG_USER: &str = "compute-bridge:user";

/// Seconds between looks at a new instance while waiting for its address.
const ADDRESS_POLL_SEC: u64 = 2;
/// Most `DescribeInstances` pages `list_instances` reads per region.
const MAX_PAGES: usize = 50;
/// Looks for what a `RunInstances` with a lost answer launched.
const ABANDON_LOOKS: u32 = 3;

/// What the backend keeps in `instance.handle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    /// Region.
    pub region: String,
    /// Instance type.
    #[serde(rename = "type")]
    pub instance_type: String,
    /// Its vCPUs.
    pub vcpu: u32,
    /// Its memory, MiB.
    pub ram_mib: u32,
    /// Unix seconds at launch.
    pub launched: u64,
    /// The grant's `valid_to`.
    pub valid_to: u64,
}

impl Handle {
    /// Parse a handle this backend wrote.
    pub fn parse(s: &str) -> Result<Self, BackendError> {
        serde_json::from_str(s)
            .map_err(|e| BackendError::Rejected(format!("not an aws instance handle: {e}")))
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a handle serializes")
    }
}

/// The backend for one configuration, provider and host.
pub struct Aws<'h, H: Host> {
    cfg: AwsConfig,
    provider_id: String,
    host: &'h H,
}

impl<'h, H: Host> Aws<'h, H> {
    /// A backend for `cfg` (validated) on behalf of `provider_id`.
    pub fn new(
        cfg: AwsConfig,
        provider_id: impl Into<String>,
        host: &'h H,
    ) -> Result<Self, BackendError> {
        let provider_id = provider_id.into();
        if provider_id.is_empty() {
            return Err(BackendError::Internal(
                "the host passed no provider id".into(),
            ));
        }
        cfg.validate()?;
        Ok(Self {
            cfg,
            provider_id,
            host,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AwsConfig {
        &self.cfg
    }

    /// `capabilities`: the configured regions and capacity; never TDX.
    pub fn offer(&self) -> Offer {
        Offer {
            regions: self.cfg.regions.iter().map(|r| r.name.clone()).collect(),
            tdx_capable: false,
            max_cpu_millicores: self.cfg.max_vcpus.saturating_mul(1000),
            max_ram_mib: self.cfg.max_ram_mib,
            td_measurements: vec![],
        }
    }

    /// `can-satisfy`: no TDX, a configured region, a type that fits, within
    /// the declared capacity. No network.
    pub fn can_satisfy(&self, g: &GrantSpec) -> bool {
        let offer = self.offer();
        g.tdx != TdxRequirement::Required
            && self.cfg.placement_region(g.region.as_deref()).is_some()
            && self.cfg.cheapest_fit(g.cpu_millicores, g.ram_mib).is_some()
            && g.cpu_millicores <= offer.max_cpu_millicores
            && g.ram_mib <= offer.max_ram_mib
    }

    /// `provision`: launch the cheapest type that fits, tagged and with the
    /// workload's user-data, in the grant's region (the first configured
    /// region when it names none), and wait for its public address.
    ///
    /// One region per call: moving on to the next region when this one has
    /// no capacity is the fleet's job (it offers a grant without a region
    /// to each of [`Offer::regions`] in turn and records each step as a
    /// failover the operator sees), so a `no-capacity` goes straight back.
    pub fn provision(&self, g: &GrantSpec, w: &Workload) -> Result<Instance, BackendError> {
        let (user, public_key) = (w.ssh_user.as_str(), w.ssh_public_key.as_str());
        if g.tdx == TdxRequirement::Required {
            return Err(BackendError::Rejected(
                "EC2 offers no TDX guests here".into(),
            ));
        }
        let ty = self
            .cfg
            .cheapest_fit(g.cpu_millicores, g.ram_mib)
            .ok_or_else(|| {
                BackendError::Rejected(format!(
                    "no instance type in `instance_types` has {} millicores and {} MiB",
                    g.cpu_millicores, g.ram_mib
                ))
            })?;
        let user_data = userdata::Workload {
            user,
            public_key,
            image: &g.image,
            cpu_millicores: g.cpu_millicores,
            ram_mib: g.ram_mib,
            valid_to: g.valid_to,
        }
        .cloud_config()?;
        let region = self
            .cfg
            .placement_region(g.region.as_deref())
            .ok_or_else(|| {
                BackendError::Rejected(format!(
                    "region {:?} is not in `regions`",
                    g.region.as_deref().unwrap_or_default()
                ))
            })?;
        self.launch(region, ty, g, user, &user_data)
    }

    fn launch(
        &self,
        region: &RegionConfig,
        ty: &InstanceType,
        g: &GrantSpec,
        user: &str,
        user_data: &str,
    ) -> Result<Instance, BackendError> {
        let q = self.run_instances_query(region, ty, g, user, user_data);
        let sent = self.call(&region.name, &q);
        let launched_at = self.host.now();
        let first = match &sent {
            Ok(resp) => ec2::parse_run_instances(resp).and_then(|list| {
                list.into_iter()
                    .next()
                    .filter(|i| !i.id.is_empty())
                    .ok_or_else(|| {
                        BackendError::Internal("EC2 RunInstances returned no instance".into())
                    })
            }),
            Err(e) => Err(e.clone()),
        };
        let inst = match first {
            Ok(inst) => inst,
            Err(e) if may_have_launched(&sent, &e) => {
                return Err(self.abandon(&region.name, &g.request_id, e));
            }
            Err(e) => return Err(e),
        };
        self.host.log(
            Level::Info,
            "instance launched",
            &[
                ("instance", &inst.id),
                ("region", &region.name),
                ("type", &ty.name),
                ("request", &g.request_id),
            ],
        );
        let id = inst.id.clone();
        // From here on the instance exists: whatever fails, it is
        // terminated before the error goes back, so a failover leaves
        // nothing running here.
        self.await_address(region, ty, g, user, inst, launched_at)
            .map_err(|e| {
                let cleanup = match self.terminate_id(&region.name, &id) {
                    Ok(()) => format!("instance {id} terminated"),
                    Err(t) => {
                        self.host.log(
                            Level::Warn,
                            "could not terminate an instance that failed to come up",
                            &[("instance", &id), ("error", &t.describe())],
                        );
                        format!(
                            "instance {id} could not be terminated ({}); it powers itself off \
                             at the grant's valid_to, and sweep_orphans removes it at the next start",
                            t.describe()
                        )
                    }
                };
                e.with_message(format!("{}; {cleanup}", e.message()))
            })
    }

    /// Wait until a launched instance has a public address (or give up
    /// after `public_address_wait_sec`).
    fn await_address(
        &self,
        region: &RegionConfig,
        ty: &InstanceType,
        g: &GrantSpec,
        user: &str,
        mut inst: Ec2Instance,
        launched_at: u64,
    ) -> Result<Instance, BackendError> {
        let deadline = launched_at + self.cfg.public_address_wait_sec;
        while inst.public_host().is_none() {
            if matches!(inst.state.as_str(), "shutting-down" | "terminated") {
                return Err(ended_at_launch(&inst));
            }
            if self.host.now() >= deadline {
                return Err(BackendError::Transient(format!(
                    "instance {} had no public address after {} s (state {})",
                    inst.id, self.cfg.public_address_wait_sec, inst.state
                )));
            }
            self.host.sleep(ADDRESS_POLL_SEC);
            if let Some(now) = self.describe_one(&region.name, &inst.id)? {
                inst = now;
            }
        }

        let handle = Handle {
            region: region.name.clone(),
            instance_type: ty.name.clone(),
            vcpu: ty.vcpu,
            ram_mib: ty.ram_mib,
            launched: inst.launch_time.unwrap_or(launched_at),
            valid_to: g.valid_to,
        };
        Ok(Instance {
            public_host: inst.public_host().unwrap_or_default().to_string(),
            instance_id: inst.id,
            region: region.name.clone(),
            ssh_port: 22,
            user: user.to_string(),
            host_key: String::new(),
            handle: handle.to_json(),
        })
    }

    /// After a `RunInstances` whose outcome is unknown (its answer was
    /// lost, timed out, was a server fault or could not be read): find what
    /// it may have launched for this grant, by the provider and request
    /// tags, and terminate it. EC2's listing can lag a launch, so an empty
    /// answer is asked again a few times. The error is always transient:
    /// the grant may be tried elsewhere, and nothing of it is left here
    /// unless the message says so.
    fn abandon(&self, region: &str, request_id: &str, cause: BackendError) -> BackendError {
        let mut looks = 0;
        let outcome = loop {
            looks += 1;
            match self.find_by_request(region, request_id) {
                Ok(found) if !found.is_empty() => {
                    let mut done = Vec::new();
                    let mut failed = None;
                    for inst in found {
                        match self.terminate_id(region, &inst.id) {
                            Ok(()) => done.push(inst.id),
                            Err(e) => failed = Some((inst.id, e)),
                        }
                    }
                    break match failed {
                        None => Ok(done),
                        Some((id, e)) => Err(format!("instance {id}: {}", e.describe())),
                    };
                }
                Ok(_) if looks < ABANDON_LOOKS => self.host.sleep(ADDRESS_POLL_SEC),
                Ok(_) => break Ok(Vec::new()),
                Err(e) => break Err(e.describe()),
            }
        };
        let what = match outcome {
            Ok(ids) if ids.is_empty() => {
                format!("no instance was launched for this grant (looked {looks} times)")
            }
            Ok(ids) => {
                self.host.log(
                    Level::Warn,
                    "RunInstances failed after launching; instance terminated",
                    &[("instances", &ids.join(",")), ("request", request_id)],
                );
                format!("terminated {} it had launched", ids.join(", "))
            }
            Err(e) => {
                self.host.log(
                    Level::Warn,
                    "RunInstances failed and what it launched could not be checked",
                    &[("request", request_id), ("error", &e)],
                );
                format!(
                    "could not check for an instance it may have launched ({e}); such an \
                     instance powers itself off at the grant's valid_to, and sweep_orphans \
                     removes it at the next start"
                )
            }
        };
        BackendError::Transient(format!("{}; {what}", cause.message()))
    }

    /// Live instances tagged with this provider and `request_id` in
    /// `region`.
    fn find_by_request(
        &self,
        region: &str,
        request_id: &str,
    ) -> Result<Vec<Ec2Instance>, BackendError> {
        let mut q = Query::new("DescribeInstances")
            .param("Filter.1.Name", format!("tag:{TAG_PROVIDER}"))
            .param("Filter.1.Value.1", &self.provider_id)
            .param("Filter.2.Name", format!("tag:{TAG_REQUEST}"))
            .param("Filter.2.Value.1", request_id)
            .param("Filter.3.Name", "instance-state-name");
        for (i, s) in ["pending", "running", "stopping", "stopped"]
            .iter()
            .enumerate()
        {
            q = q.param(format!("Filter.3.Value.{}", i + 1), *s);
        }
        let (list, _) = ec2::parse_describe_instances(&self.call(region, &q)?)?;
        Ok(list
            .into_iter()
            .filter(|i| {
                i.tag(TAG_PROVIDER) == Some(self.provider_id.as_str())
                    && i.tag(TAG_REQUEST) == Some(request_id)
                    && !matches!(i.state.as_str(), "shutting-down" | "terminated")
            })
            .collect())
    }

    /// The `RunInstances` call for one grant in one region.
    pub fn run_instances_query(
        &self,
        region: &RegionConfig,
        ty: &InstanceType,
        g: &GrantSpec,
        user: &str,
        user_data: &str,
    ) -> Query {
        let name: String = format!("compute-bridge-{}", g.request_id)
            .chars()
            .take(255)
            .collect();
        let tags = [
            ("Name", name),
            (TAG_PROVIDER, self.provider_id.clone()),
            (TAG_REQUEST, g.request_id.clone()),
            (TAG_VALID_TO, g.valid_to.to_string()),
            (TAG_USER, user.to_string()),
        ];
        let mut q = Query::new("RunInstances")
            .param("ImageId", &region.ami)
            .param("InstanceType", &ty.name)
            .param("MinCount", "1")
            .param("MaxCount", "1")
            .param(
                "UserData",
                base64::engine::general_purpose::STANDARD.encode(user_data),
            )
            // The workload powers the instance off when it ends: keep it
            // (stopped) so `status` can read the exit code; `terminate`
            // removes it.
            .param("InstanceInitiatedShutdownBehavior", "stop")
            // IMDSv2 only, one hop: the container cannot reach the
            // metadata service through the bridge network.
            .param("MetadataOptions.HttpTokens", "required")
            .param("MetadataOptions.HttpPutResponseHopLimit", "1");
        for (n, resource) in ["instance", "volume"].iter().enumerate() {
            let spec = format!("TagSpecification.{}", n + 1);
            q = q.param(format!("{spec}.ResourceType"), *resource);
            for (i, (k, v)) in tags.iter().enumerate() {
                q = q
                    .param(format!("{spec}.Tag.{}.Key", i + 1), *k)
                    .param(format!("{spec}.Tag.{}.Value", i + 1), v);
            }
        }
        match &region.subnet_id {
            Some(subnet) => {
                // A network interface spec, so the instance gets a public
                // address whatever the subnet's default.
                q = q
                    .param("NetworkInterface.1.DeviceIndex", "0")
                    .param("NetworkInterface.1.SubnetId", subnet)
                    .param("NetworkInterface.1.AssociatePublicIpAddress", "true")
                    .param("NetworkInterface.1.DeleteOnTermination", "true");
                for (i, sg) in region.security_group_ids.iter().enumerate() {
                    q = q.param(format!("NetworkInterface.1.SecurityGroupId.{}", i + 1), sg);
                }
            }
            None => {
                for (i, sg) in region.security_group_ids.iter().enumerate() {
                    q = q.param(format!("SecurityGroupId.{}", i + 1), sg);
                }
            }
        }
        let token = client_token(&region.name, &q);
        q.param("ClientToken", token)
    }

    /// `status` from the instance state: `pending` is starting,
    /// `running`/`stopping` running (still up and billed), `stopped` exited
    /// (the code the container's, read from the console, -1 if unreadable),
    /// `shutting-down`/`terminated`/unknown to EC2 gone.
    pub fn status(&self, i: &Instance) -> Result<InstanceState, BackendError> {
        let (instance_id, h) = (i.instance_id.as_str(), Handle::parse(&i.handle)?);
        let Some(inst) = self.describe_one(&h.region, instance_id)? else {
            return Ok(InstanceState::Gone);
        };
        Ok(match inst.state.as_str() {
            "pending" => InstanceState::Starting,
            "running" | "stopping" => InstanceState::Running,
            "stopped" => InstanceState::Exited(self.exit_code(&h.region, instance_id)),
            "shutting-down" | "terminated" => InstanceState::Gone,
            other => {
                return Err(BackendError::Internal(format!(
                    "instance {instance_id} is in an unknown state {other:?}"
                )));
            }
        })
    }

    fn exit_code(&self, region: &str, instance_id: &str) -> i32 {
        let q = Query::new("GetConsoleOutput").param("InstanceId", instance_id);
        match self
            .call(region, &q)
            .and_then(|r| ec2::parse_console_output(&r))
        {
            Ok(console) => userdata::exit_code(&console).unwrap_or(-1),
            Err(e) => {
                self.host.log(
                    Level::Debug,
                    "console output unavailable; exit code unknown",
                    &[("instance", instance_id), ("error", &e.describe())],
                );
                -1
            }
        }
    }

    /// `usage`: the instance type's vCPUs and memory × the seconds from
    /// launch until it stopped (or now, if it still runs). An instance EC2
    /// no longer knows is counted from its launch to `valid_to` or now,
    /// whichever is earlier.
    /// EC2's API reports no network bytes (CloudWatch does, on an endpoint
    /// this backend is not given), so `net-bytes` is always 0.
    pub fn usage(&self, i: &Instance) -> Result<ResourceUsage, BackendError> {
        let (instance_id, h) = (i.instance_id.as_str(), Handle::parse(&i.handle)?);
        let now = self.host.now();
        let (start, end) = match self.describe_one(&h.region, instance_id)? {
            Some(i) => {
                let start = i.launch_time.unwrap_or(h.launched);
                let end = match i.state.as_str() {
                    "stopped" | "terminated" => i.stopped_at().unwrap_or(now),
                    _ => now,
                };
                (start, end)
            }
            None => (h.launched, now.min(h.valid_to)),
        };
        let secs = end.saturating_sub(start);
        Ok(ResourceUsage {
            cpu_core_seconds: u64::from(h.vcpu) * secs,
            ram_mib_seconds: u64::from(h.ram_mib) * secs,
            net_bytes: 0,
        })
    }

    /// `terminate`: idempotent; an instance EC2 no longer knows is success.
    pub fn terminate(&self, i: &Instance) -> Result<(), BackendError> {
        let h = Handle::parse(&i.handle)?;
        self.terminate_id(&h.region, &i.instance_id)
    }

    fn terminate_id(&self, region: &str, instance_id: &str) -> Result<(), BackendError> {
        let q = Query::new("TerminateInstances").param("InstanceId.1", instance_id);
        let resp = self.call(region, &q)?;
        if is_not_found(&resp) {
            return Ok(());
        }
        ec2::parse_terminate_instances(&resp)?;
        self.host.log(
            Level::Info,
            "instance terminated",
            &[("instance", instance_id), ("region", region)],
        );
        Ok(())
    }

    /// `list-instances`: every live (not terminated) instance tagged with
    /// this provider id, in every configured region.
    pub fn list_instances(&self) -> Result<Vec<Instance>, BackendError> {
        let mut out = Vec::new();
        for region in &self.cfg.regions {
            let mut token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut q = Query::new("DescribeInstances")
                    .param("Filter.1.Name", format!("tag:{TAG_PROVIDER}"))
                    .param("Filter.1.Value.1", &self.provider_id)
                    .param("Filter.2.Name", "instance-state-name");
                for (i, s) in ["pending", "running", "stopping", "stopped"]
                    .iter()
                    .enumerate()
                {
                    q = q.param(format!("Filter.2.Value.{}", i + 1), *s);
                }
                q = q.param("MaxResults", "100");
                if let Some(t) = &token {
                    q = q.param("NextToken", t);
                }
                let (page, next) = ec2::parse_describe_instances(&self.call(&region.name, &q)?)?;
                out.extend(
                    page.into_iter()
                        .filter(|i| i.tag(TAG_PROVIDER) == Some(self.provider_id.as_str()))
                        .map(|i| self.launched_from_tags(&region.name, i)),
                );
                token = next;
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn launched_from_tags(&self, region: &str, i: Ec2Instance) -> Instance {
        let ty = self.cfg.instance_type(&i.instance_type);
        let handle = Handle {
            region: region.to_string(),
            instance_type: i.instance_type.clone(),
            vcpu: ty.map_or(0, |t| t.vcpu),
            ram_mib: ty.map_or(0, |t| t.ram_mib),
            launched: i.launch_time.unwrap_or(0),
            valid_to: i
                .tag(TAG_VALID_TO)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        };
        Instance {
            public_host: i.public_host().unwrap_or_default().to_string(),
            user: i.tag(TAG_USER).unwrap_or_default().to_string(),
            instance_id: i.id,
            region: region.to_string(),
            ssh_port: 22,
            host_key: String::new(),
            handle: handle.to_json(),
        }
    }

    /// One instance by id, or `None` if EC2 does not know it.
    fn describe_one(
        &self,
        region: &str,
        instance_id: &str,
    ) -> Result<Option<Ec2Instance>, BackendError> {
        let q = Query::new("DescribeInstances").param("InstanceId.1", instance_id);
        let resp = self.call(region, &q)?;
        if is_not_found(&resp) {
            return Ok(None);
        }
        let (list, _) = ec2::parse_describe_instances(&resp)?;
        Ok(list.into_iter().find(|i| i.id == instance_id))
    }

    /// Sign `q` for `region` and send it through the host. A request the
    /// host refused is the operator's to fix (`config`: allow the
    /// endpoint); a timeout or transport failure passes (`transient`).
    fn call(&self, region: &str, q: &Query) -> Result<HttpResponse, BackendError> {
        let req = q.signed(
            &self.cfg.endpoint(region),
            region,
            &self.cfg.credentials(),
            self.host.now(),
        )?;
        let mut r = sdk_http::Request::post(req.url.clone()).body(req.body);
        for (k, v) in req.headers {
            r = r.header(k, v);
        }
        match self.host.send(&r) {
            Ok(resp) => Ok(HttpResponse {
                status: resp.status,
                body: resp.body,
            }),
            Err(e) => {
                let msg = format!("{}: {}", req.url, sdk_http::describe(&e));
                Err(match e {
                    HttpError::Denied(_) => BackendError::Config(format!(
                        "{msg}; list the EC2 endpoint in this backend's http.allowed_hosts"
                    )),
                    HttpError::Timeout | HttpError::Transport(_) => BackendError::Transient(msg),
                    HttpError::InvalidRequest(_) | HttpError::TooLarge(_) => {
                        BackendError::Internal(msg)
                    }
                })
            }
        }
    }
}

/// Whether a failed `RunInstances` may still have launched an instance:
/// its answer was lost (transport error, timeout), was a server fault, or
/// was a success that could not be read. An EC2 client error (4xx), a
/// capacity code, refused credentials, or a request the host refused to
/// send mean it did not.
fn may_have_launched(sent: &Result<HttpResponse, BackendError>, e: &BackendError) -> bool {
    match sent {
        Err(BackendError::Config(_)) => false,
        Err(_) => true,
        Ok(r) if (400..500).contains(&r.status) => false,
        Ok(_) => !matches!(
            e,
            BackendError::NoCapacity(_) | BackendError::Config(_) | BackendError::Rejected(_)
        ),
    }
}

/// EC2's idempotency token for one `RunInstances`: a digest of the region
/// and every other parameter of the request (the grant's tags, the type,
/// the AMI, and the user-data with this provision's workload key).
///
/// EC2 returns the original launch to a request that repeats a token with
/// the same parameters, and `IdempotentParameterMismatch` to one that
/// repeats it with any parameter changed; a token stays taken for at least
/// 24 hours after its instance is terminated ("Ensuring idempotency in
/// Amazon EC2 API requests",
/// <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Run_Instance_Idempotency.html>).
/// So a retry of the same request reuses its token and gets the instance
/// it launched, while a new provision of the same grant (which carries a
/// fresh workload key) gets a new token and a new instance. At most 64
/// ASCII characters (`ClientToken`, botocore `ec2/2016-11-15/service-2.json`).
fn client_token(region: &str, q: &Query) -> String {
    let digest = Sha256::digest(format!("{region}\n{}", q.body()));
    format!("cb-{}", &hex::encode(digest)[..48])
}

/// Why an instance that ended before it had an address failed, from its
/// `stateReason` code (the codes are those of the EC2 API reference's
/// `StateReason` page). A capacity or per-region limit code is
/// `no-capacity`, so the fleet tries the next region; a missing snapshot
/// is the region's AMI; anything else (an internal error, no reason at
/// all) is `transient`.
fn ended_at_launch(inst: &Ec2Instance) -> BackendError {
    let code = inst.state_reason_code.as_str();
    let why = if code.is_empty() {
        String::from("EC2 gave no reason")
    } else if inst.state_reason_message.is_empty() {
        format!("reason {code}")
    } else {
        format!("reason {code}: {}", inst.state_reason_message)
    };
    let what = format!(
        "instance {} ended at launch, before it had a public address (state {}; {why})",
        inst.id, inst.state
    );
    match code {
        "Server.InsufficientInstanceCapacity" | "Client.VolumeLimitExceeded" => {
            BackendError::NoCapacity(what)
        }
        "Client.InvalidSnapshot.NotFound" => BackendError::Config(format!(
            "{what}; the snapshot behind the AMI is gone: check `regions[].ami` in [backends.config]"
        )),
        _ => BackendError::Transient(what),
    }
}

fn is_not_found(resp: &HttpResponse) -> bool {
    !(200..300).contains(&resp.status)
        && Ec2Error::parse(resp.status, &resp.body).is_instance_not_found()
}
