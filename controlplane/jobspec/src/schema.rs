//! The shape of a job: for every block, its fields with their HCL name, their API (JSON) name
//! and what kind of value they hold. Both decoders (HCL and API JSON) walk this one table, so
//! an unknown field is caught the same way in both, and a test checks the table against the
//! model's serde names so the two cannot drift apart.

/// What a field holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Str,
    Int,
    Bool,
    /// HCL: a Go duration string ("10s") or a number of nanoseconds. JSON: nanoseconds.
    Dur,
    StrList,
    IntList,
    /// A map of strings. HCL: a block of attributes, or an attribute holding an object.
    StrMap,
    /// A map of string lists (check `header`).
    StrListMap,
    /// Free-form data (driver `config`, scaling `policy`): a block whose structure is kept as
    /// is, decoded the way Nomad's HCL1 parser did (nested blocks become lists of objects).
    FreeForm,
    /// Free-form data whose HCL keys are converted to API names (snake_case → PascalCase).
    /// Used for the Consul gateway tree, which noded keeps but does not interpret.
    Opaque,
    /// At most one block.
    Block(&'static Schema),
    /// Any number of unlabeled blocks, a JSON array.
    Blocks(&'static Schema),
    /// Any number of blocks with one label each, a JSON array; the label goes to the
    /// schema's `label` field.
    Labeled(&'static Schema),
    /// Blocks with one unique label each, a JSON object keyed by label.
    LabeledMap(&'static Schema),
}

/// One field of a block.
#[derive(Debug)]
pub(crate) struct Field {
    /// The HCL name; empty when the field cannot be written in HCL (server bookkeeping).
    pub hcl: &'static str,
    /// The API (JSON) name.
    pub api: &'static str,
    pub kind: Kind,
}

/// One block type.
#[derive(Debug)]
pub(crate) struct Schema {
    /// The block's HCL name, for messages.
    pub name: &'static str,
    /// The API field that receives the block label, for labeled blocks.
    pub label: Option<&'static str>,
    pub fields: &'static [Field],
}

impl Schema {
    pub fn hcl_field(&self, name: &str) -> Option<&'static Field> {
        self.fields
            .iter()
            .find(|f| !f.hcl.is_empty() && f.hcl == name)
    }

    /// Looks a JSON key up the way Go's encoding/json does: exact first, then ignoring case.
    pub fn api_field(&self, key: &str) -> Option<&'static Field> {
        self.fields
            .iter()
            .find(|f| f.api == key)
            .or_else(|| self.fields.iter().find(|f| f.api.eq_ignore_ascii_case(key)))
    }

    pub fn hcl_names(&self) -> Vec<&'static str> {
        self.fields
            .iter()
            .filter(|f| !f.hcl.is_empty())
            .map(|f| f.hcl)
            .collect()
    }
}

const fn f(hcl: &'static str, api: &'static str, kind: Kind) -> Field {
    Field { hcl, api, kind }
}

use Kind::*;

pub(crate) static CONSTRAINT: Schema = Schema {
    name: "constraint",
    label: None,
    fields: &[
        f("attribute", "LTarget", Str),
        f("value", "RTarget", Str),
        f("operator", "Operand", Str),
    ],
};

pub(crate) static AFFINITY: Schema = Schema {
    name: "affinity",
    label: None,
    fields: &[
        f("attribute", "LTarget", Str),
        f("value", "RTarget", Str),
        f("operator", "Operand", Str),
        f("weight", "Weight", Int),
    ],
};

pub(crate) static SPREAD_TARGET: Schema = Schema {
    name: "target",
    label: Some("Value"),
    fields: &[f("", "Value", Str), f("percent", "Percent", Int)],
};

pub(crate) static SPREAD: Schema = Schema {
    name: "spread",
    label: None,
    fields: &[
        f("attribute", "Attribute", Str),
        f("weight", "Weight", Int),
        f("target", "SpreadTarget", Labeled(&SPREAD_TARGET)),
    ],
};

pub(crate) static UPDATE: Schema = Schema {
    name: "update",
    label: None,
    fields: &[
        f("stagger", "Stagger", Dur),
        f("max_parallel", "MaxParallel", Int),
        f("health_check", "HealthCheck", Str),
        f("min_healthy_time", "MinHealthyTime", Dur),
        f("healthy_deadline", "HealthyDeadline", Dur),
        f("progress_deadline", "ProgressDeadline", Dur),
        f("canary", "Canary", Int),
        f("auto_revert", "AutoRevert", Bool),
        f("auto_promote", "AutoPromote", Bool),
    ],
};

pub(crate) static MIGRATE: Schema = Schema {
    name: "migrate",
    label: None,
    fields: &[
        f("max_parallel", "MaxParallel", Int),
        f("health_check", "HealthCheck", Str),
        f("min_healthy_time", "MinHealthyTime", Dur),
        f("healthy_deadline", "HealthyDeadline", Dur),
    ],
};

pub(crate) static RESCHEDULE: Schema = Schema {
    name: "reschedule",
    label: None,
    fields: &[
        f("attempts", "Attempts", Int),
        f("interval", "Interval", Dur),
        f("delay", "Delay", Dur),
        f("delay_function", "DelayFunction", Str),
        f("max_delay", "MaxDelay", Dur),
        f("unlimited", "Unlimited", Bool),
    ],
};

pub(crate) static RESTART: Schema = Schema {
    name: "restart",
    label: None,
    fields: &[
        f("attempts", "Attempts", Int),
        f("interval", "Interval", Dur),
        f("delay", "Delay", Dur),
        f("mode", "Mode", Str),
        f("render_templates", "RenderTemplates", Bool),
    ],
};

pub(crate) static DISCONNECT: Schema = Schema {
    name: "disconnect",
    label: None,
    fields: &[
        f("lost_after", "LostAfter", Dur),
        f("stop_on_client_after", "StopOnClientAfter", Dur),
        f("replace", "Replace", Bool),
        f("reconcile", "Reconcile", Str),
    ],
};

pub(crate) static EPHEMERAL_DISK: Schema = Schema {
    name: "ephemeral_disk",
    label: None,
    fields: &[
        f("sticky", "Sticky", Bool),
        f("migrate", "Migrate", Bool),
        f("size", "SizeMB", Int),
    ],
};

pub(crate) static PERIODIC: Schema = Schema {
    name: "periodic",
    label: None,
    fields: &[
        f("enabled", "Enabled", Bool),
        f("cron", "Spec", Str),
        f("crons", "Specs", StrList),
        f("", "SpecType", Str),
        f("prohibit_overlap", "ProhibitOverlap", Bool),
        f("time_zone", "TimeZone", Str),
    ],
};

pub(crate) static PARAMETERIZED: Schema = Schema {
    name: "parameterized",
    label: None,
    fields: &[
        f("payload", "Payload", Str),
        f("meta_required", "MetaRequired", StrList),
        f("meta_optional", "MetaOptional", StrList),
    ],
};

pub(crate) static MULTIREGION_STRATEGY: Schema = Schema {
    name: "strategy",
    label: None,
    fields: &[
        f("max_parallel", "MaxParallel", Int),
        f("on_failure", "OnFailure", Str),
    ],
};

pub(crate) static MULTIREGION_REGION: Schema = Schema {
    name: "region",
    label: Some("Name"),
    fields: &[
        f("", "Name", Str),
        f("count", "Count", Int),
        f("datacenters", "Datacenters", StrList),
        f("node_pool", "NodePool", Str),
        f("meta", "Meta", StrMap),
    ],
};

pub(crate) static MULTIREGION: Schema = Schema {
    name: "multiregion",
    label: None,
    fields: &[
        f("strategy", "Strategy", Block(&MULTIREGION_STRATEGY)),
        f("region", "Regions", Labeled(&MULTIREGION_REGION)),
    ],
};

pub(crate) static UI_LINK: Schema = Schema {
    name: "link",
    label: None,
    fields: &[f("label", "Label", Str), f("url", "URL", Str)],
};

pub(crate) static UI: Schema = Schema {
    name: "ui",
    label: None,
    fields: &[
        f("description", "Description", Str),
        f("link", "Links", Blocks(&UI_LINK)),
    ],
};

pub(crate) static PORT: Schema = Schema {
    name: "port",
    label: Some("Label"),
    fields: &[
        f("", "Label", Str),
        f("static", "Value", Int),
        f("to", "To", Int),
        f("host_network", "HostNetwork", Str),
        f("ignore_collision", "IgnoreCollision", Bool),
    ],
};

pub(crate) static DNS: Schema = Schema {
    name: "dns",
    label: None,
    fields: &[
        f("servers", "Servers", StrList),
        f("searches", "Searches", StrList),
        f("options", "Options", StrList),
    ],
};

pub(crate) static CNI: Schema = Schema {
    name: "cni",
    label: None,
    fields: &[f("args", "Args", StrMap)],
};

pub(crate) static NETWORK: Schema = Schema {
    name: "network",
    label: None,
    fields: &[
        f("mode", "Mode", Str),
        f("device", "Device", Str),
        f("cidr", "CIDR", Str),
        f("ip", "IP", Str),
        f("dns", "DNS", Block(&DNS)),
        f("reserved_ports", "ReservedPorts", Labeled(&PORT)),
        f("port", "DynamicPorts", Labeled(&PORT)),
        f("hostname", "Hostname", Str),
        f("mbits", "MBits", Int),
        f("cni", "CNI", Block(&CNI)),
    ],
};

pub(crate) static DEVICE: Schema = Schema {
    name: "device",
    label: Some("Name"),
    fields: &[
        f("", "Name", Str),
        f("count", "Count", Int),
        f("constraint", "Constraints", Blocks(&CONSTRAINT)),
        f("affinity", "Affinities", Blocks(&AFFINITY)),
    ],
};

pub(crate) static NUMA: Schema = Schema {
    name: "numa",
    label: None,
    fields: &[
        f("affinity", "Affinity", Str),
        f("devices", "Devices", StrList),
    ],
};

pub(crate) static RESOURCES: Schema = Schema {
    name: "resources",
    label: None,
    fields: &[
        f("cpu", "CPU", Int),
        f("cores", "Cores", Int),
        f("memory", "MemoryMB", Int),
        f("memory_max", "MemoryMaxMB", Int),
        f("disk", "DiskMB", Int),
        f("network", "Networks", Blocks(&NETWORK)),
        f("device", "Devices", Labeled(&DEVICE)),
        f("numa", "NUMA", Block(&NUMA)),
        f("secrets", "SecretsMB", Int),
        f("iops", "IOPS", Int),
    ],
};

pub(crate) static LOGS: Schema = Schema {
    name: "logs",
    label: None,
    fields: &[
        f("max_files", "MaxFiles", Int),
        f("max_file_size", "MaxFileSizeMB", Int),
        f("enabled", "Enabled", Bool),
        f("disabled", "Disabled", Bool),
    ],
};

pub(crate) static CHECK_RESTART: Schema = Schema {
    name: "check_restart",
    label: None,
    fields: &[
        f("limit", "Limit", Int),
        f("grace", "Grace", Dur),
        f("ignore_warnings", "IgnoreWarnings", Bool),
    ],
};

pub(crate) static CHECK: Schema = Schema {
    name: "check",
    label: None,
    fields: &[
        f("name", "Name", Str),
        f("type", "Type", Str),
        f("command", "Command", Str),
        f("args", "Args", StrList),
        f("path", "Path", Str),
        f("protocol", "Protocol", Str),
        f("port", "PortLabel", Str),
        f("expose", "Expose", Bool),
        f("address_mode", "AddressMode", Str),
        f("advertise", "Advertise", Str),
        f("interval", "Interval", Dur),
        f("timeout", "Timeout", Dur),
        f("initial_status", "InitialStatus", Str),
        f("notes", "Notes", Str),
        f("tls_server_name", "TLSServerName", Str),
        f("tls_skip_verify", "TLSSkipVerify", Bool),
        f("header", "Header", StrListMap),
        f("method", "Method", Str),
        f("check_restart", "CheckRestart", Block(&CHECK_RESTART)),
        f("grpc_service", "GRPCService", Str),
        f("grpc_use_tls", "GRPCUseTLS", Bool),
        f("task", "TaskName", Str),
        f("success_before_passing", "SuccessBeforePassing", Int),
        f("failures_before_critical", "FailuresBeforeCritical", Int),
        f("failures_before_warning", "FailuresBeforeWarning", Int),
        f("body", "Body", Str),
        f("on_update", "OnUpdate", Str),
    ],
};

pub(crate) static SERVICE_WEIGHTS: Schema = Schema {
    name: "weights",
    label: None,
    fields: &[f("passing", "Passing", Int), f("warning", "Warning", Int)],
};

pub(crate) static EXPOSE_PATH: Schema = Schema {
    name: "path",
    label: None,
    fields: &[
        f("path", "Path", Str),
        f("protocol", "Protocol", Str),
        f("local_path_port", "LocalPathPort", Int),
        f("listener_port", "ListenerPort", Str),
    ],
};

pub(crate) static EXPOSE: Schema = Schema {
    name: "expose",
    label: None,
    fields: &[f("path", "Paths", Blocks(&EXPOSE_PATH))],
};

pub(crate) static MESH_GATEWAY: Schema = Schema {
    name: "mesh_gateway",
    label: None,
    fields: &[f("mode", "Mode", Str)],
};

pub(crate) static UPSTREAM: Schema = Schema {
    name: "upstreams",
    label: None,
    fields: &[
        f("destination_name", "DestinationName", Str),
        f("destination_namespace", "DestinationNamespace", Str),
        f("destination_peer", "DestinationPeer", Str),
        f("destination_partition", "DestinationPartition", Str),
        f("destination_type", "DestinationType", Str),
        f("local_bind_port", "LocalBindPort", Int),
        f("datacenter", "Datacenter", Str),
        f("local_bind_address", "LocalBindAddress", Str),
        f("local_bind_socket_path", "LocalBindSocketPath", Str),
        f("local_bind_socket_mode", "LocalBindSocketMode", Str),
        f("mesh_gateway", "MeshGateway", Block(&MESH_GATEWAY)),
        f("config", "Config", FreeForm),
    ],
};

pub(crate) static TRANSPARENT_PROXY: Schema = Schema {
    name: "transparent_proxy",
    label: None,
    fields: &[
        f("uid", "UID", Str),
        f("outbound_port", "OutboundPort", Int),
        f("exclude_inbound_ports", "ExcludeInboundPorts", StrList),
        f("exclude_outbound_ports", "ExcludeOutboundPorts", IntList),
        f("exclude_outbound_cidrs", "ExcludeOutboundCIDRs", StrList),
        f("exclude_uids", "ExcludeUIDs", StrList),
        f("no_dns", "NoDNS", Bool),
    ],
};

pub(crate) static PROXY: Schema = Schema {
    name: "proxy",
    label: None,
    fields: &[
        f("local_service_address", "LocalServiceAddress", Str),
        f("local_service_port", "LocalServicePort", Int),
        f("expose", "Expose", Block(&EXPOSE)),
        f("upstreams", "Upstreams", Blocks(&UPSTREAM)),
        f(
            "transparent_proxy",
            "TransparentProxy",
            Block(&TRANSPARENT_PROXY),
        ),
        f("config", "Config", FreeForm),
    ],
};

pub(crate) static SIDECAR_SERVICE: Schema = Schema {
    name: "sidecar_service",
    label: None,
    fields: &[
        f("tags", "Tags", StrList),
        f("port", "Port", Str),
        f("proxy", "Proxy", Block(&PROXY)),
        f("disable_default_tcp_check", "DisableDefaultTCPCheck", Bool),
        f("meta", "Meta", StrMap),
    ],
};

pub(crate) static VOLUME_MOUNT: Schema = Schema {
    name: "volume_mount",
    label: None,
    fields: &[
        f("volume", "Volume", Str),
        f("destination", "Destination", Str),
        f("read_only", "ReadOnly", Bool),
        f("propagation_mode", "PropagationMode", Str),
        f("selinux_label", "SELinuxLabel", Str),
    ],
};

pub(crate) static SIDECAR_TASK: Schema = Schema {
    name: "sidecar_task",
    label: None,
    fields: &[
        f("name", "Name", Str),
        f("driver", "Driver", Str),
        f("user", "User", Str),
        f("config", "Config", FreeForm),
        f("env", "Env", StrMap),
        f("resources", "Resources", Block(&RESOURCES)),
        f("meta", "Meta", StrMap),
        f("kill_timeout", "KillTimeout", Dur),
        f("logs", "LogConfig", Block(&LOGS)),
        f("shutdown_delay", "ShutdownDelay", Dur),
        f("kill_signal", "KillSignal", Str),
        f("volume_mount", "VolumeMounts", Blocks(&VOLUME_MOUNT)),
    ],
};

pub(crate) static CONNECT: Schema = Schema {
    name: "connect",
    label: None,
    fields: &[
        f("native", "Native", Bool),
        f("gateway", "Gateway", Opaque),
        f("sidecar_service", "SidecarService", Block(&SIDECAR_SERVICE)),
        f("sidecar_task", "SidecarTask", Block(&SIDECAR_TASK)),
    ],
};

pub(crate) static IDENTITY: Schema = Schema {
    name: "identity",
    label: None,
    fields: &[
        f("name", "Name", Str),
        f("aud", "Audience", StrList),
        f("change_mode", "ChangeMode", Str),
        f("change_signal", "ChangeSignal", Str),
        f("env", "Env", Bool),
        f("file", "File", Bool),
        f("filepath", "Filepath", Str),
        f("service_name", "ServiceName", Str),
        f("ttl", "TTL", Dur),
        f("extra_claims", "ExtraClaims", StrList),
    ],
};

pub(crate) static SERVICE: Schema = Schema {
    name: "service",
    label: None,
    fields: &[
        f("name", "Name", Str),
        f("tags", "Tags", StrList),
        f("canary_tags", "CanaryTags", StrList),
        f("enable_tag_override", "EnableTagOverride", Bool),
        f("port", "PortLabel", Str),
        f("address_mode", "AddressMode", Str),
        f("address", "Address", Str),
        f("check", "Checks", Blocks(&CHECK)),
        f("check_restart", "CheckRestart", Block(&CHECK_RESTART)),
        f("connect", "Connect", Block(&CONNECT)),
        f("meta", "Meta", StrMap),
        f("canary_meta", "CanaryMeta", StrMap),
        f("tagged_addresses", "TaggedAddresses", StrMap),
        f("task", "TaskName", Str),
        f("on_update", "OnUpdate", Str),
        f("identity", "Identity", Block(&IDENTITY)),
        f("weights", "Weights", Block(&SERVICE_WEIGHTS)),
        f("provider", "Provider", Str),
        f("cluster", "Cluster", Str),
        f("kind", "Kind", Str),
    ],
};

pub(crate) static CONSUL: Schema = Schema {
    name: "consul",
    label: None,
    fields: &[
        f("namespace", "Namespace", Str),
        f("cluster", "Cluster", Str),
        f("partition", "Partition", Str),
    ],
};

pub(crate) static MOUNT_OPTIONS: Schema = Schema {
    name: "mount_options",
    label: None,
    fields: &[
        f("fs_type", "FSType", Str),
        f("mount_flags", "MountFlags", StrList),
    ],
};

pub(crate) static VOLUME: Schema = Schema {
    name: "volume",
    label: Some("Name"),
    fields: &[
        f("", "Name", Str),
        f("type", "Type", Str),
        f("source", "Source", Str),
        f("read_only", "ReadOnly", Bool),
        f("sticky", "Sticky", Bool),
        f("access_mode", "AccessMode", Str),
        f("attachment_mode", "AttachmentMode", Str),
        f("mount_options", "MountOptions", Block(&MOUNT_OPTIONS)),
        f("per_alloc", "PerAlloc", Bool),
    ],
};

pub(crate) static SCALING: Schema = Schema {
    name: "scaling",
    label: None,
    fields: &[
        f("min", "Min", Int),
        f("max", "Max", Int),
        f("policy", "Policy", FreeForm),
        f("enabled", "Enabled", Bool),
        f("type", "Type", Str),
        f("", "ID", Str),
        f("", "Namespace", Str),
        f("", "Target", StrMap),
        f("", "CreateIndex", Int),
        f("", "ModifyIndex", Int),
    ],
};

pub(crate) static LIFECYCLE: Schema = Schema {
    name: "lifecycle",
    label: None,
    fields: &[f("hook", "Hook", Str), f("sidecar", "Sidecar", Bool)],
};

pub(crate) static ARTIFACT: Schema = Schema {
    name: "artifact",
    label: None,
    fields: &[
        f("source", "GetterSource", Str),
        f("options", "GetterOptions", StrMap),
        f("headers", "GetterHeaders", StrMap),
        f("mode", "GetterMode", Str),
        f("insecure", "GetterInsecure", Bool),
        f("destination", "RelativeDest", Str),
        f("chown", "Chown", Bool),
    ],
};

pub(crate) static CHANGE_SCRIPT: Schema = Schema {
    name: "change_script",
    label: None,
    fields: &[
        f("command", "Command", Str),
        f("args", "Args", StrList),
        f("timeout", "Timeout", Dur),
        f("fail_on_error", "FailOnError", Bool),
        f("run_on_first_render", "RunOnFirstRender", Bool),
    ],
};

pub(crate) static WAIT: Schema = Schema {
    name: "wait",
    label: None,
    fields: &[f("min", "Min", Dur), f("max", "Max", Dur)],
};

pub(crate) static TEMPLATE: Schema = Schema {
    name: "template",
    label: None,
    fields: &[
        f("source", "SourcePath", Str),
        f("destination", "DestPath", Str),
        f("data", "EmbeddedTmpl", Str),
        f("change_mode", "ChangeMode", Str),
        f("change_script", "ChangeScript", Block(&CHANGE_SCRIPT)),
        f("change_signal", "ChangeSignal", Str),
        f("once", "Once", Bool),
        f("splay", "Splay", Dur),
        f("perms", "Perms", Str),
        f("uid", "Uid", Int),
        f("gid", "Gid", Int),
        f("left_delimiter", "LeftDelim", Str),
        f("right_delimiter", "RightDelim", Str),
        f("env", "Envvars", Bool),
        f("vault_grace", "VaultGrace", Dur),
        f("wait", "Wait", Block(&WAIT)),
        f("error_on_missing_key", "ErrMissingKey", Bool),
    ],
};

pub(crate) static VAULT: Schema = Schema {
    name: "vault",
    label: None,
    fields: &[
        f("policies", "Policies", StrList),
        f("role", "Role", Str),
        f("namespace", "Namespace", Str),
        f("cluster", "Cluster", Str),
        f("env", "Env", Bool),
        f("disable_file", "DisableFile", Bool),
        f("change_mode", "ChangeMode", Str),
        f("change_signal", "ChangeSignal", Str),
        f("allow_token_expiration", "AllowTokenExpiration", Bool),
    ],
};

pub(crate) static SECRET: Schema = Schema {
    name: "secret",
    label: Some("Name"),
    fields: &[
        f("", "Name", Str),
        f("provider", "Provider", Str),
        f("path", "Path", Str),
        f("config", "Config", FreeForm),
        f("env", "Env", StrMap),
    ],
};

pub(crate) static CSI_PLUGIN: Schema = Schema {
    name: "csi_plugin",
    label: None,
    fields: &[
        f("id", "ID", Str),
        f("type", "Type", Str),
        f("mount_dir", "MountDir", Str),
        f("stage_publish_base_dir", "StagePublishBaseDir", Str),
        f("health_timeout", "HealthTimeout", Dur),
    ],
};

pub(crate) static ACTION: Schema = Schema {
    name: "action",
    label: Some("Name"),
    fields: &[
        f("", "Name", Str),
        f("command", "Command", Str),
        f("args", "Args", StrList),
    ],
};

pub(crate) static SCHEDULE_CRON: Schema = Schema {
    name: "cron",
    label: None,
    fields: &[
        f("start", "Start", Str),
        f("end", "End", Str),
        f("timezone", "Timezone", Str),
    ],
};

pub(crate) static SCHEDULE: Schema = Schema {
    name: "schedule",
    label: None,
    fields: &[f("cron", "Cron", Block(&SCHEDULE_CRON))],
};

pub(crate) static DISPATCH_PAYLOAD: Schema = Schema {
    name: "dispatch_payload",
    label: None,
    fields: &[f("file", "File", Str)],
};

pub(crate) static TASK: Schema = Schema {
    name: "task",
    label: Some("Name"),
    fields: &[
        f("", "Name", Str),
        f("driver", "Driver", Str),
        f("user", "User", Str),
        f("config", "Config", FreeForm),
        f("env", "Env", StrMap),
        f("resources", "Resources", Block(&RESOURCES)),
        f("restart", "RestartPolicy", Block(&RESTART)),
        f("meta", "Meta", StrMap),
        f("kill_timeout", "KillTimeout", Dur),
        f("kill_signal", "KillSignal", Str),
        f("logs", "LogConfig", Block(&LOGS)),
        f("leader", "Leader", Bool),
        f("lifecycle", "Lifecycle", Block(&LIFECYCLE)),
        f("constraint", "Constraints", Blocks(&CONSTRAINT)),
        f("affinity", "Affinities", Blocks(&AFFINITY)),
        f("service", "Services", Blocks(&SERVICE)),
        f("artifact", "Artifacts", Blocks(&ARTIFACT)),
        f("vault", "Vault", Block(&VAULT)),
        f("consul", "Consul", Block(&CONSUL)),
        f("template", "Templates", Blocks(&TEMPLATE)),
        f(
            "dispatch_payload",
            "DispatchPayload",
            Block(&DISPATCH_PAYLOAD),
        ),
        f("volume_mount", "VolumeMounts", Blocks(&VOLUME_MOUNT)),
        f("csi_plugin", "CSIPluginConfig", Block(&CSI_PLUGIN)),
        f("shutdown_delay", "ShutdownDelay", Dur),
        f("kind", "Kind", Str),
        // HCL: `scaling "cpu"` / `scaling "mem"` blocks, decoded specially.
        f("", "ScalingPolicies", Blocks(&SCALING)),
        f("secret", "Secrets", Labeled(&SECRET)),
        f("", "Identity", Block(&IDENTITY)),
        f("identity", "Identities", Blocks(&IDENTITY)),
        f("action", "Actions", Labeled(&ACTION)),
        f("schedule", "Schedule", Block(&SCHEDULE)),
    ],
};

pub(crate) static GROUP: Schema = Schema {
    name: "group",
    label: Some("Name"),
    fields: &[
        f("", "Name", Str),
        f("count", "Count", Int),
        f("task", "Tasks", Labeled(&TASK)),
        f("restart", "RestartPolicy", Block(&RESTART)),
        f("meta", "Meta", StrMap),
        f("constraint", "Constraints", Blocks(&CONSTRAINT)),
        f("affinity", "Affinities", Blocks(&AFFINITY)),
        f("spread", "Spreads", Blocks(&SPREAD)),
        f("volume", "Volumes", LabeledMap(&VOLUME)),
        f("disconnect", "Disconnect", Block(&DISCONNECT)),
        f("reschedule", "ReschedulePolicy", Block(&RESCHEDULE)),
        f("ephemeral_disk", "EphemeralDisk", Block(&EPHEMERAL_DISK)),
        f("update", "Update", Block(&UPDATE)),
        f("migrate", "Migrate", Block(&MIGRATE)),
        f("network", "Networks", Blocks(&NETWORK)),
        f("service", "Services", Blocks(&SERVICE)),
        f("shutdown_delay", "ShutdownDelay", Dur),
        f("max_run_duration", "MaxRunDuration", Dur),
        f(
            "stop_after_client_disconnect",
            "StopAfterClientDisconnect",
            Dur,
        ),
        f("max_client_disconnect", "MaxClientDisconnect", Dur),
        f("scaling", "Scaling", Block(&SCALING)),
        f("consul", "Consul", Block(&CONSUL)),
        f(
            "prevent_reschedule_on_lost",
            "PreventRescheduleOnLost",
            Bool,
        ),
    ],
};

pub(crate) static VERSION_TAG: Schema = Schema {
    name: "version_tag",
    label: None,
    fields: &[
        f("", "Name", Str),
        f("", "Description", Str),
        f("", "TaggedTime", Int),
    ],
};

pub(crate) static JOB: Schema = Schema {
    name: "job",
    label: Some("ID"),
    fields: &[
        f("region", "Region", Str),
        f("namespace", "Namespace", Str),
        f("id", "ID", Str),
        f("name", "Name", Str),
        f("type", "Type", Str),
        f("priority", "Priority", Int),
        f("all_at_once", "AllAtOnce", Bool),
        f("datacenters", "Datacenters", StrList),
        f("node_pool", "NodePool", Str),
        f("group", "TaskGroups", Labeled(&GROUP)),
        f("meta", "Meta", StrMap),
        f("constraint", "Constraints", Blocks(&CONSTRAINT)),
        f("affinity", "Affinities", Blocks(&AFFINITY)),
        f("spread", "Spreads", Blocks(&SPREAD)),
        f("update", "Update", Block(&UPDATE)),
        f("multiregion", "Multiregion", Block(&MULTIREGION)),
        f("periodic", "Periodic", Block(&PERIODIC)),
        f("parameterized", "ParameterizedJob", Block(&PARAMETERIZED)),
        f("reschedule", "Reschedule", Block(&RESCHEDULE)),
        f("migrate", "Migrate", Block(&MIGRATE)),
        f("ui", "UI", Block(&UI)),
        f("", "ConsulNamespace", Str),
        f("", "VaultNamespace", Str),
        f("", "Stop", Bool),
        f("", "Status", Str),
        f("", "StatusDescription", Str),
        f("", "Stable", Bool),
        f("", "Version", Int),
        f("", "SubmitTime", Int),
        f("", "CreateIndex", Int),
        f("", "ModifyIndex", Int),
        f("", "JobModifyIndex", Int),
        f("", "ParentID", Str),
        f("", "Dispatched", Bool),
        f("", "DispatchIdempotencyToken", Str),
        f("", "Payload", Str),
        f("", "NomadTokenID", Str),
        f("", "VersionTag", Block(&VERSION_TAG)),
    ],
};

/// Keys Nomad once had in its API job and has removed. Nomad still accepts old files that
/// carry them, so noded accepts them too, with a warning, and drops them.
pub(crate) const REMOVED_API_KEYS: &[(&str, &str)] = &[
    (
        "VaultToken",
        "Nomad removed job-level Vault tokens in 1.10; use workload identities",
    ),
    (
        "ConsulToken",
        "Nomad removed job-level Consul tokens in 1.10; use workload identities",
    ),
];

/// HCL arguments Nomad once accepted at job level and has removed; named in the error so the
/// fix is clear.
pub(crate) const REMOVED_HCL_KEYS: &[(&str, &str)] = &[
    (
        "vault_token",
        "Nomad removed job-level Vault tokens in 1.10; delete it and use workload identities",
    ),
    (
        "consul_token",
        "Nomad removed job-level Consul tokens in 1.10; delete it and use workload identities",
    ),
];
