//! The command line: Nomad's verbs (`job run`, `alloc logs`, …) talking to an agent's HTTP API.
//! Flags are written Nomad's way (`-detach`, `-address=…`); `--detach` works too.
//!
//! One pattern for every command: a noun (`job`, `alloc`, `node`, `operator`) is a module
//! with an enum of its verbs; a verb is a file with its clap `Args` and, when it talks to an
//! agent, an [`global::ApiCommand`] impl. Wrapped as `Api<Verb>`, it takes the global flags
//! (`-address`, `-region`, `-namespace`, `-token` and their `NODED_*` variables, read in
//! [`global`]) and gets the one HTTP client ([`http`]). Ids are resolved by unique prefix in
//! [`resolve`]; `-json` prints through [`output`]. Adding a command is one file and one line in
//! its noun's enum.

pub mod agent;
pub mod alloc;
pub mod config;
pub mod deployment;
pub mod eval;
pub mod fmt;
pub mod format;
pub mod global;
pub mod http;
pub mod job;
pub mod node;
pub mod operator;
pub mod output;
pub mod placement_failure;
pub mod resolve;
pub mod scaling;
pub mod server;
pub mod service;
pub mod system;
pub mod tls;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use global::Api;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    Code(i32),
}

#[derive(Debug, Parser)]
#[command(
    name = "noded",
    version,
    about = "A Linux-native workload orchestrator in the spirit of Nomad, without a container daemon"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent (server, client, or both with -dev).
    Agent(agent::AgentArgs),
    /// Submit, inspect and stop jobs.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// List, inspect and delete evaluations.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// List, inspect, promote, fail, pause and resume deployments.
    #[command(subcommand)]
    Deployment(deployment::DeploymentCommand),
    /// Inspect allocations.
    #[command(subcommand, after_help = alloc::NODE_HELP)]
    Alloc(alloc::AllocCommand),
    /// Inspect, drain and purge nodes; manage node pools.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Inspect scaling policies.
    #[command(subcommand)]
    Scaling(scaling::ScalingCommand),
    /// The native service catalog: list services, show instances and their health.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Server housekeeping: garbage collection, summary reconciliation.
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Cluster operator settings.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// The region's servers.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Check agent configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// List jobs (or show one): the same as `job status`.
    Status(Api<job::status::JobStatus>),
    /// Format a jobspec canonically.
    Fmt(fmt::FmtArgs),
    /// Create the cluster CA and agent certificates.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    /// The per-node task supervisor (started by the agent; not for direct use).
    #[command(hide = true)]
    Supervisor(SupervisorArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
pub struct SupervisorArgs {
    #[arg(long)]
    pub socket: PathBuf,
    #[arg(long = "state-dir")]
    pub state_dir: PathBuf,
    #[arg(long = "cgroup-parent", default_value = crate::supervisor::CGROUP_PARENT)]
    pub cgroup_parent: String,
    #[arg(long = "exit-with-parent")]
    pub exit_with_parent: bool,
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Supervisor(args) => {
            crate::supervisor::run(
                args.socket,
                args.state_dir,
                &args.cgroup_parent,
                args.exit_with_parent,
            )?;
            Ok(Exit::Ok)
        }
        Command::Agent(args) => args.run(),
        Command::Version => {
            println!("noded v{}", env!("CARGO_PKG_VERSION"));
            Ok(Exit::Ok)
        }
        Command::Fmt(args) => args.run(),
        Command::Tls(c) => c.run(),
        Command::Config(c) => c.run(),
        Command::Job(c) => on_runtime(c.run()),
        Command::Eval(c) => on_runtime(c.run()),
        Command::Deployment(c) => on_runtime(c.run()),
        Command::Alloc(c) => on_runtime(c.run()),
        Command::Node(c) => on_runtime(c.run()),
        Command::Scaling(c) => on_runtime(c.run()),
        Command::Operator(c) => on_runtime(c.run()),
        Command::Status(c) => on_runtime(c.run()),
        Command::Server(c) => on_runtime(c.run()),
        Command::System(c) => on_runtime(c.run()),
        Command::Service(c) => on_runtime(c.run()),
    }
}

/// Runs a command that talks to an agent on a small runtime of its own.
fn on_runtime(
    command: impl std::future::Future<Output = anyhow::Result<Exit>>,
) -> anyhow::Result<Exit> {
    init_cli_logging();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(command);
    // A read of stdin (alloc exec) cannot be cancelled; do not wait for it.
    rt.shutdown_background();
    result
}

fn init_cli_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NODED_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(crate::terminal::stderr_is_terminal())
        .try_init();
}

/// Rewrites Nomad-style `-flag` / `-flag=value` into clap's `--flag`, leaving single-letter
/// flags (`-f`, `-n 10`), negative numbers and everything after `--` alone.
pub fn normalize_args(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut passthrough = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let bytes = arg.as_bytes();
        let long_single_dash = bytes.len() > 2
            && bytes[0] == b'-'
            && bytes[1].is_ascii_alphabetic()
            && (bytes[2].is_ascii_alphanumeric() || bytes[2] == b'-' || bytes[2] == b'_');
        if long_single_dash {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nomad_style_flags_are_accepted() {
        assert_eq!(
            normalize_args(v(&[
                "noded",
                "job",
                "run",
                "-detach",
                "-var=x=1",
                "-address=http://h:1",
                "f.hcl"
            ])),
            v(&[
                "noded",
                "job",
                "run",
                "--detach",
                "--var=x=1",
                "--address=http://h:1",
                "f.hcl"
            ])
        );
        assert_eq!(
            normalize_args(v(&[
                "noded", "alloc", "logs", "-f", "-n", "5", "-tail", "a"
            ])),
            v(&["noded", "alloc", "logs", "-f", "-n", "5", "--tail", "a"])
        );
        assert_eq!(
            normalize_args(v(&["noded", "x", "--", "-la"])),
            v(&["noded", "x", "--", "-la"])
        );
        assert_eq!(
            normalize_args(v(&["noded", "x", "-5"])),
            v(&["noded", "x", "-5"])
        );
    }

    #[test]
    fn the_command_tree_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(normalize_args(v(&[
            "noded", "job", "run", "-detach", "x.hcl",
        ])))
        .unwrap();
        assert!(format!("{cli:?}").contains("detach: true"), "{cli:?}");
        let cli = Cli::try_parse_from(normalize_args(v(&[
            "noded",
            "alloc",
            "logs",
            "-f",
            "-stderr",
            "-address=http://h:1",
            "-region=eu",
            "-token=t",
            "abcd",
            "web",
        ])))
        .unwrap();
        let shown = format!("{cli:?}");
        for want in [
            "follow: true",
            "stderr: true",
            "address: \"http://h:1\"",
            "region: \"eu\"",
            "token: \"t\"",
        ] {
            assert!(shown.contains(want), "{want} in {shown}");
        }
    }

    #[test]
    fn deployment_commands_parse_as_nomads() {
        for (args, wants) in [
            (
                &[
                    "noded",
                    "deployment",
                    "status",
                    "-monitor",
                    "-verbose",
                    "ab12",
                ][..],
                &["monitor: true", "verbose: true", "deployment_id: \"ab12\""][..],
            ),
            (
                &[
                    "noded",
                    "deployment",
                    "promote",
                    "-group",
                    "web",
                    "-group",
                    "api",
                    "-detach",
                    "ab12",
                ],
                &["groups: [\"web\", \"api\"]", "detach: true"],
            ),
            (
                &["noded", "job", "promote", "-group=web", "example"],
                &["groups: [\"web\"]", "job: \"example\""],
            ),
            (
                &["noded", "job", "deployments", "-latest", "-json", "example"],
                &["latest: true", "json: true"],
            ),
            (
                &["noded", "deployment", "list", "-verbose"],
                &["verbose: true"],
            ),
            (&["noded", "deployment", "resume", "ab12"], &["Resume"]),
            (&["noded", "deployment", "unblock", "ab12"], &["Unblock"]),
        ] {
            let cli = Cli::try_parse_from(normalize_args(v(args))).unwrap();
            let shown = format!("{cli:?}");
            for want in wants {
                assert!(shown.contains(want), "{args:?}: {want} in {shown}");
            }
        }
    }

    /// Every command that talks to an agent takes the global flags, and every command that
    /// shows something takes `-json`: the pattern holds for commands added later too.
    #[test]
    fn every_agent_command_takes_the_global_flags() {
        use clap::CommandFactory;
        let local = [
            "agent",
            "fmt",
            "supervisor",
            "version",
            "validate",
            "init",
            "create",
            "help",
            // `operator snapshot inspect` reads a local file.
            "inspect",
        ];
        let mut leaves = Vec::new();
        fn walk<'a>(
            c: &'a clap::Command,
            path: String,
            out: &mut Vec<(String, &'a clap::Command)>,
        ) {
            for sub in c.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()), out);
            }
            if c.get_subcommands().next().is_none() {
                out.push((path, c));
            }
        }
        let root = Cli::command();
        walk(&root, "noded".into(), &mut leaves);
        let mut checked = 0;
        for (path, command) in leaves {
            if local.contains(&command.get_name()) {
                continue;
            }
            let args: Vec<&str> = command
                .get_arguments()
                .filter_map(|a| a.get_long())
                .collect();
            for flag in ["address", "region", "namespace", "token"] {
                assert!(args.contains(&flag), "{path} lacks -{flag}");
            }
            checked += 1;
        }
        assert!(checked >= 12, "{checked} commands checked");
    }
}
