//! Which parts of a job are compared and under what names: one table, after Nomad's
//! `nomad/structs/diff.go`. A block's scalar fields are compared as they are (minus its
//! `filter`); its string maps (`maps`) as `Meta[key]` fields; its `children` as nested
//! objects. Field names are the job's API JSON names, which are Nomad's.

/// A block of a job and how its parts are compared.
pub(crate) struct Block {
    /// The object's name in the diff (`RestartPolicy`, `Service`, …).
    pub name: &'static str,
    /// Scalar fields never compared (bookkeeping, or compared elsewhere).
    pub filter: &'static [&'static str],
    /// String-to-string maps compared key by key as `Name[key]` fields.
    pub maps: &'static [&'static str],
    pub children: &'static [Child],
}

/// A nested part of a block: the JSON field holding it and how it is matched.
#[derive(Clone, Copy)]
pub(crate) struct Child {
    pub field: &'static str,
    pub kind: Kind,
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// One optional block.
    One(&'static Block),
    /// A list of strings compared as a set; `keep_unchanged` keeps an unchanged set (as a
    /// `None` object) in a contextual diff.
    Strings {
        name: &'static str,
        keep_unchanged: bool,
    },
    /// A list compared as a set: an edited member shows as one deleted and one added.
    Set(&'static Block),
    /// A list whose members are matched by these fields.
    Keyed(&'static Block, &'static [&'static str]),
    /// A list whose members are matched by position.
    Indexed(&'static Block),
    /// An object of label → block.
    Map(&'static Block),
    /// A free-form value flattened whole (`args[1]`), under this name.
    Flat(&'static str),
}

const fn leaf(name: &'static str) -> Block {
    Block {
        name,
        filter: &[],
        maps: &[],
        children: &[],
    }
}

const fn one(field: &'static str, block: &'static Block) -> Child {
    Child {
        field,
        kind: Kind::One(block),
    }
}

const fn strings(field: &'static str) -> Child {
    Child {
        field,
        kind: Kind::Strings {
            name: field,
            keep_unchanged: true,
        },
    }
}

static CONSTRAINT: Block = leaf("Constraint");
static AFFINITY: Block = leaf("Affinity");
static SPREAD: Block = leaf("Spread");
static RESTART: Block = leaf("RestartPolicy");
static MIGRATE: Block = leaf("Migrate");
static RESCHEDULE: Block = leaf("ReschedulePolicy");
static EPHEMERAL_DISK: Block = leaf("EphemeralDisk");
static CONSUL: Block = leaf("Consul");
static DISCONNECT: Block = leaf("Disconnect");
static LOG_CONFIG: Block = leaf("LogConfig");
static DISPATCH_PAYLOAD: Block = leaf("DispatchPayload");
static LIFECYCLE: Block = leaf("Lifecycle");
static CHECK_RESTART: Block = leaf("CheckRestart");
static WEIGHTS: Block = leaf("Weights");
static CONNECT: Block = leaf("ConsulConnect");
static VOLUME_MOUNT: Block = leaf("VolumeMount");
static WAIT: Block = leaf("Template");
static NUMA: Block = leaf("NUMA");
static LINK: Block = leaf("Link");
static MULTIREGION_STRATEGY: Block = leaf("Strategy");
static CNI: Block = Block {
    name: "CNIConfig",
    filter: &[],
    maps: &["Args"],
    children: &[],
};

static UPDATE: Block = Block {
    name: "Update",
    filter: &["Stagger"],
    maps: &[],
    children: &[],
};

static STATIC_PORT: Block = leaf("Static Port");
static DYNAMIC_PORT: Block = Block {
    name: "Dynamic Port",
    filter: &["Value", "IgnoreCollision"],
    maps: &[],
    children: &[],
};

static DNS: Block = Block {
    name: "DNS",
    filter: &[],
    maps: &[],
    children: &[strings("Servers"), strings("Searches"), strings("Options")],
};

static NETWORK: Block = Block {
    name: "Network",
    filter: &["Device", "CIDR", "IP", "MBits"],
    maps: &[],
    children: &[
        Child {
            field: "ReservedPorts",
            kind: Kind::Keyed(&STATIC_PORT, &["Label"]),
        },
        Child {
            field: "DynamicPorts",
            kind: Kind::Keyed(&DYNAMIC_PORT, &["Label"]),
        },
        one("DNS", &DNS),
        one("CNI", &CNI),
    ],
};

static DEVICE: Block = Block {
    name: "Device",
    filter: &[],
    maps: &[],
    children: &[
        Child {
            field: "Constraints",
            kind: Kind::Set(&CONSTRAINT),
        },
        Child {
            field: "Affinities",
            kind: Kind::Set(&AFFINITY),
        },
    ],
};

static RESOURCES: Block = Block {
    name: "Resources",
    filter: &[],
    maps: &[],
    children: &[
        Child {
            field: "Networks",
            kind: Kind::Set(&NETWORK),
        },
        Child {
            field: "Devices",
            kind: Kind::Keyed(&DEVICE, &["Name"]),
        },
        one("NUMA", &NUMA),
    ],
};

static IDENTITY: Block = Block {
    name: "Identity",
    filter: &[],
    maps: &[],
    children: &[strings("Audience")],
};

static CHECK: Block = Block {
    name: "Check",
    filter: &[],
    maps: &[],
    children: &[
        Child {
            field: "Header",
            kind: Kind::Flat("Header"),
        },
        one("CheckRestart", &CHECK_RESTART),
    ],
};

static SERVICE: Block = Block {
    name: "Service",
    filter: &[],
    maps: &["Meta", "CanaryMeta", "TaggedAddresses"],
    children: &[
        strings("CanaryTags"),
        strings("Tags"),
        Child {
            field: "Checks",
            kind: Kind::Keyed(&CHECK, &["Name"]),
        },
        one("Connect", &CONNECT),
        one("Identity", &IDENTITY),
        one("Weights", &WEIGHTS),
    ],
};

static CHANGE_SCRIPT: Block = Block {
    name: "ChangeScript",
    filter: &[],
    maps: &[],
    children: &[strings("Args")],
};

static TEMPLATE: Block = Block {
    name: "Template",
    filter: &[],
    maps: &[],
    children: &[one("Wait", &WAIT), one("ChangeScript", &CHANGE_SCRIPT)],
};

static ARTIFACT: Block = Block {
    name: "Artifact",
    filter: &[],
    maps: &["GetterOptions", "GetterHeaders"],
    children: &[],
};

static VAULT: Block = Block {
    name: "Vault",
    filter: &[],
    maps: &[],
    children: &[strings("Policies")],
};

static SECRET: Block = Block {
    name: "Secret",
    filter: &[],
    maps: &["Env"],
    children: &[Child {
        field: "Config",
        kind: Kind::Flat("Config"),
    }],
};

static ACTION: Block = Block {
    name: "Action",
    filter: &[],
    maps: &[],
    children: &[strings("Args")],
};

static MOUNT_OPTIONS: Block = Block {
    name: "MountOptions",
    filter: &[],
    maps: &[],
    children: &[strings("MountFlags")],
};

static VOLUME: Block = Block {
    name: "Volume",
    filter: &[],
    maps: &[],
    children: &[one("MountOptions", &MOUNT_OPTIONS)],
};

static SCALING: Block = Block {
    name: "Scaling",
    filter: &["ID", "CreateIndex", "ModifyIndex"],
    maps: &["Target"],
    children: &[Child {
        field: "Policy",
        kind: Kind::Flat("Policy"),
    }],
};

static PERIODIC: Block = Block {
    name: "Periodic",
    filter: &[],
    maps: &[],
    children: &[Child {
        field: "Specs",
        kind: Kind::Strings {
            name: "Specs",
            keep_unchanged: false,
        },
    }],
};

static PARAMETERIZED: Block = Block {
    name: "ParameterizedJob",
    filter: &[],
    maps: &[],
    children: &[strings("MetaOptional"), strings("MetaRequired")],
};

static REGION: Block = Block {
    name: "Region",
    filter: &[],
    maps: &["Meta"],
    children: &[strings("Datacenters")],
};

static MULTIREGION: Block = Block {
    name: "Multiregion",
    filter: &[],
    maps: &[],
    children: &[
        one("Strategy", &MULTIREGION_STRATEGY),
        Child {
            field: "Regions",
            kind: Kind::Keyed(&REGION, &["Name"]),
        },
    ],
};

static UI: Block = Block {
    name: "UI",
    filter: &[],
    maps: &[],
    children: &[Child {
        field: "Links",
        kind: Kind::Indexed(&LINK),
    }],
};

const PLACEMENT: [Child; 3] = [
    Child {
        field: "Constraints",
        kind: Kind::Set(&CONSTRAINT),
    },
    Child {
        field: "Affinities",
        kind: Kind::Set(&AFFINITY),
    },
    Child {
        field: "Spreads",
        kind: Kind::Set(&SPREAD),
    },
];

/// Services are matched by name and port: two services of one name on different ports are
/// two services.
const SERVICES: Child = Child {
    field: "Services",
    kind: Kind::Keyed(&SERVICE, &["Name", "PortLabel"]),
};

/// The job: its bookkeeping is never a difference, and its `update` block is compared
/// where it takes effect, in each group (Nomad merges it into the groups).
pub(crate) static JOB: Block = Block {
    name: "Job",
    filter: &[
        "ID",
        "Status",
        "StatusDescription",
        "Version",
        "Stable",
        "CreateIndex",
        "ModifyIndex",
        "JobModifyIndex",
        "Update",
        "SubmitTime",
        "NomadTokenID",
        "VaultToken",
        "ConsulToken",
        "Payload",
    ],
    maps: &["Meta"],
    children: &[
        Child {
            field: "Datacenters",
            kind: Kind::Strings {
                name: "Datacenters",
                keep_unchanged: false,
            },
        },
        PLACEMENT[0],
        PLACEMENT[1],
        PLACEMENT[2],
        one("Periodic", &PERIODIC),
        one("ParameterizedJob", &PARAMETERIZED),
        one("Multiregion", &MULTIREGION),
        one("UI", &UI),
    ],
};

pub(crate) static GROUP: Block = Block {
    name: "Task Group",
    filter: &["Name"],
    maps: &["Meta"],
    children: &[
        PLACEMENT[0],
        PLACEMENT[1],
        PLACEMENT[2],
        one("RestartPolicy", &RESTART),
        one("Migrate", &MIGRATE),
        one("ReschedulePolicy", &RESCHEDULE),
        one("EphemeralDisk", &EPHEMERAL_DISK),
        one("Consul", &CONSUL),
        one("Update", &UPDATE),
        one("Disconnect", &DISCONNECT),
        Child {
            field: "Networks",
            kind: Kind::Set(&NETWORK),
        },
        one("Scaling", &SCALING),
        SERVICES,
        Child {
            field: "Volumes",
            kind: Kind::Map(&VOLUME),
        },
    ],
};

/// A task: its `config` is flattened whole, so `args = ["a", "b"]` compares as `args[0]`
/// and `args[1]`. `Lifecycle` is compared too (Nomad leaves it out; a changed hook is a
/// different task to run).
pub(crate) static TASK: Block = Block {
    name: "Task",
    filter: &["Name", "Config"],
    maps: &["Env", "Meta"],
    children: &[
        PLACEMENT[0],
        PLACEMENT[1],
        Child {
            field: "Config",
            kind: Kind::Flat("Config"),
        },
        one("Resources", &RESOURCES),
        one("LogConfig", &LOG_CONFIG),
        one("DispatchPayload", &DISPATCH_PAYLOAD),
        Child {
            field: "Artifacts",
            kind: Kind::Set(&ARTIFACT),
        },
        SERVICES,
        one("Vault", &VAULT),
        Child {
            field: "Secrets",
            kind: Kind::Keyed(&SECRET, &["Name"]),
        },
        one("Consul", &CONSUL),
        Child {
            field: "Templates",
            kind: Kind::Keyed(&TEMPLATE, &["DestPath"]),
        },
        one("Identity", &IDENTITY),
        Child {
            field: "Identities",
            kind: Kind::Keyed(&IDENTITY, &["Name"]),
        },
        Child {
            field: "Actions",
            kind: Kind::Indexed(&ACTION),
        },
        Child {
            field: "VolumeMounts",
            kind: Kind::Indexed(&VOLUME_MOUNT),
        },
        one("Lifecycle", &LIFECYCLE),
    ],
};
