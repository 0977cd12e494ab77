//! The command line: Nomad's verbs (`job run`, `alloc logs`, …) talking to an agent's HTTP API.
//! Flags are written Nomad's way (`-detach`, `-address=…`); `--detach` works too.

pub mod alloc;
pub mod exec;
pub mod format;
pub mod http;
pub mod job;
pub mod node;
pub mod operator;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::agent;

/// Output mode of a command.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub json: bool,
}

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

#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Address of the agent's HTTP API.
    #[arg(
        long,
        env = "NODED_ADDR",
        default_value = "http://127.0.0.1:4646",
        global = true
    )]
    pub address: String,
    /// Namespace of the objects.
    #[arg(
        long,
        env = "NODED_NAMESPACE",
        default_value = "default",
        global = true
    )]
    pub namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent (server, client, or both with -dev).
    Agent(AgentArgs),
    /// Submit, inspect and stop jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Inspect allocations.
    #[command(subcommand)]
    Alloc(AllocCommand),
    /// Inspect nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Cluster operator settings.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// List jobs (or show one).
    Status {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
        id: Option<String>,
    },
    /// Format a jobspec canonically.
    Fmt {
        /// Only check; exit 1 if the file is not formatted.
        #[arg(long)]
        check: bool,
        files: Vec<PathBuf>,
    },
    /// The per-node task supervisor (started by the agent; not for direct use).
    #[command(hide = true)]
    Supervisor(SupervisorArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Development mode: server and client in one process, state in a temporary dir.
    #[arg(long)]
    pub dev: bool,
    /// Agent config file(s) (HCL or JSON); later files override earlier ones.
    #[arg(long)]
    pub config: Vec<PathBuf>,
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Address to bind (default 127.0.0.1 with -dev, 0.0.0.0 otherwise).
    #[arg(long)]
    pub bind: Option<String>,
    #[arg(long = "http-port")]
    pub http_port: Option<u16>,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long = "dc")]
    pub datacenter: Option<String>,
    #[arg(long = "node")]
    pub node_name: Option<String>,
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
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

#[derive(Debug, Args, Clone)]
pub struct SpecArgs {
    /// Read the file as API JSON ({"Job": {...}}).
    #[arg(long)]
    pub json: bool,
    /// Set an HCL variable: -var name=value.
    #[arg(long = "var")]
    pub vars: Vec<String>,
    /// Read HCL variables from a file.
    #[arg(long = "var-file")]
    pub var_files: Vec<PathBuf>,
    pub file: PathBuf,
}

impl SpecArgs {
    fn input(&self) -> job::SpecInput {
        job::SpecInput {
            file: self.file.clone(),
            json: self.json,
            vars: self.vars.clone(),
            var_files: self.var_files.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job and follow it until it runs (service) or finishes (batch).
    Run {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        spec: SpecArgs,
        /// Return after submitting, without monitoring.
        #[arg(long)]
        detach: bool,
        /// Print the job as API JSON instead of submitting it.
        #[arg(long)]
        output: bool,
        /// Give up monitoring after this long (the job keeps running).
        #[arg(long = "monitor-timeout", default_value = "10m")]
        monitor_timeout: String,
    },
    /// Check a jobspec without submitting it.
    Validate {
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Show all jobs, or one job's status and allocations.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
        id: Option<String>,
    },
    /// Stop a job (and with -purge, forget it).
    Stop {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        detach: bool,
        #[arg(long)]
        json: bool,
        id: String,
    },
    /// Print a job as API JSON.
    Inspect {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        version: Option<u64>,
        id: String,
    },
    /// Write an example jobspec.
    Init {
        #[arg(long)]
        force: bool,
        #[arg(default_value = "example.nomad.hcl")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AllocCommand {
    /// Show an allocation and its tasks' events.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
        /// Include resource usage.
        #[arg(long)]
        stats: bool,
        id: String,
    },
    /// Print a task's stdout (or stderr).
    Logs {
        #[command(flatten)]
        api: ApiArgs,
        /// Follow new output.
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(long)]
        stderr: bool,
        /// Start from the end.
        #[arg(long)]
        tail: bool,
        /// Lines to show with -tail.
        #[arg(short = 'n')]
        lines: Option<usize>,
        /// Bytes to show (with -tail: from the end).
        #[arg(short = 'c')]
        bytes: Option<u64>,
        /// ID is a job: pick one of its allocations.
        #[arg(long)]
        job: bool,
        id: String,
        task: Option<String>,
    },
    /// Send a signal to a task (or to every running task).
    Signal {
        #[command(flatten)]
        api: ApiArgs,
        /// Signal name (default SIGKILL).
        #[arg(short = 's', default_value = "SIGKILL")]
        signal: String,
        #[arg(long)]
        task: Option<String>,
        id: String,
        task_arg: Option<String>,
    },
    /// Restart a task (or every running task) in place, outside its restart policy.
    Restart {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        task: Option<String>,
        id: String,
        task_arg: Option<String>,
    },
    /// Run a command inside a running task (same namespaces, root, cgroup, user, seccomp).
    Exec {
        #[command(flatten)]
        api: ApiArgs,
        /// Pass stdin (default true).
        #[arg(short = 'i', default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        stdin: bool,
        /// Allocate a terminal (default: when stdin and stdout are terminals).
        #[arg(short = 't', num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        tty: Option<bool>,
        #[arg(long)]
        task: Option<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// List a directory or print a file of the allocation.
    Fs {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        stat: bool,
        #[arg(long)]
        json: bool,
        id: String,
        path: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// The scheduler configuration.
    #[command(subcommand)]
    Scheduler(SchedulerCommand),
}

#[derive(Debug, Subcommand)]
pub enum SchedulerCommand {
    /// Show it.
    GetConfig {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Change it.
    SetConfig {
        #[command(flatten)]
        api: ApiArgs,
        /// binpack (spread is not implemented yet).
        #[arg(long = "scheduler-algorithm")]
        algorithm: Option<String>,
        /// Let tasks use memory_max above their memory reservation.
        #[arg(long = "memory-oversubscription")]
        memory_oversubscription: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes, or show one.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
        id: Option<String>,
    },
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

fn client(api: &ApiArgs) -> anyhow::Result<http::ApiClient> {
    http::ApiClient::new(&api.address, &api.namespace)
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
        Command::Agent(args) => run_agent(args),
        Command::Version => {
            println!("noded v{}", env!("CARGO_PKG_VERSION"));
            Ok(Exit::Ok)
        }
        Command::Fmt { check, files } => fmt(check, &files),
        other => {
            init_cli_logging();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(run_api_command(other));
            // A read of stdin (alloc exec) cannot be cancelled; do not wait for it.
            rt.shutdown_background();
            result
        }
    }
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

fn run_agent(args: AgentArgs) -> anyhow::Result<Exit> {
    let files = args
        .config
        .iter()
        .map(|p| agent::config::load_file(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let overrides = agent::Overrides {
        dev: args.dev,
        data_dir: args.data_dir,
        bind: args.bind,
        http_port: args.http_port,
        region: args.region,
        datacenter: args.datacenter,
        node_name: args.node_name,
        log_level: args.log_level,
    };
    let config = agent::AgentConfig::build(&files, &overrides, agent::temp_data_dir)?;
    let filter = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| format!("{},h2=warn,hyper=warn,openraft=warn", config.log_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(crate::terminal::stderr_is_terminal())
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(agent::run(config))?;
    Ok(Exit::Ok)
}

fn fmt(check: bool, files: &[PathBuf]) -> anyhow::Result<Exit> {
    if files.is_empty() {
        anyhow::bail!("name at least one file to format");
    }
    let mut unformatted = false;
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
        let formatted = controlplane::jobspec::format_hcl(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        if formatted == text {
            continue;
        }
        if check {
            println!("{}", file.display());
            unformatted = true;
        } else {
            std::fs::write(file, formatted)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
            println!("{}", file.display());
        }
    }
    Ok(if unformatted { Exit::Code(1) } else { Exit::Ok })
}

async fn run_api_command(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Job(JobCommand::Run {
            api,
            spec,
            detach,
            output,
            monitor_timeout,
        }) => {
            let timeout = controlplane::model::duration::parse_go(&monitor_timeout)
                .map_err(|e| anyhow::anyhow!("-monitor-timeout: {e}"))?;
            job::run(
                &client(&api)?,
                &spec.input(),
                job::RunOptions {
                    detach,
                    output,
                    monitor_timeout: timeout,
                },
                Output::default(),
            )
            .await
        }
        Command::Job(JobCommand::Validate { spec }) => {
            job::validate(&spec.input(), Output::default()).await
        }
        Command::Job(JobCommand::Status { api, json, id }) => {
            job::status(&client(&api)?, id.as_deref(), Output { json }).await
        }
        Command::Status { api, json, id } => {
            job::status(&client(&api)?, id.as_deref(), Output { json }).await
        }
        Command::Job(JobCommand::Stop {
            api,
            purge,
            detach,
            json,
            id,
        }) => job::stop(&client(&api)?, &id, purge, detach, Output { json }).await,
        Command::Job(JobCommand::Inspect {
            api,
            json,
            version,
            id,
        }) => job::inspect(&client(&api)?, &id, version, Output { json }).await,
        Command::Job(JobCommand::Init { force, file }) => job::init(&file, force),
        Command::Alloc(AllocCommand::Status {
            api,
            json,
            stats,
            id,
        }) => alloc::status(&client(&api)?, &id, stats, Output { json }).await,
        Command::Alloc(AllocCommand::Logs {
            api,
            follow,
            stderr,
            tail,
            lines,
            bytes,
            job,
            id,
            task,
        }) => {
            alloc::logs(
                &client(&api)?,
                &id,
                task.as_deref(),
                alloc::LogsOptions {
                    follow,
                    stderr,
                    tail,
                    lines,
                    bytes,
                    job,
                },
            )
            .await
        }
        Command::Alloc(AllocCommand::Signal {
            api,
            signal,
            task,
            id,
            task_arg,
        }) => alloc::signal(&client(&api)?, &id, task.or(task_arg).as_deref(), &signal).await,
        Command::Alloc(AllocCommand::Restart {
            api,
            task,
            id,
            task_arg,
        }) => alloc::restart(&client(&api)?, &id, task.or(task_arg).as_deref()).await,
        Command::Alloc(AllocCommand::Exec {
            api,
            stdin,
            tty,
            task,
            id,
            command,
        }) => {
            exec::exec(
                &client(&api)?,
                &id,
                &command,
                exec::ExecOptions {
                    task: task.as_deref(),
                    stdin,
                    tty,
                },
            )
            .await
        }
        Command::Alloc(AllocCommand::Fs {
            api,
            stat,
            json,
            id,
            path,
        }) => alloc::fs(&client(&api)?, &id, path.as_deref(), stat, Output { json }).await,
        Command::Operator(OperatorCommand::Scheduler(SchedulerCommand::GetConfig {
            api,
            json,
        })) => operator::get_config(&client(&api)?, Output { json }).await,
        Command::Operator(OperatorCommand::Scheduler(SchedulerCommand::SetConfig {
            api,
            algorithm,
            memory_oversubscription,
        })) => operator::set_config(&client(&api)?, algorithm, memory_oversubscription).await,
        Command::Node(NodeCommand::Status { api, json, id }) => {
            node::status(&client(&api)?, id.as_deref(), Output { json }).await
        }
        Command::Agent(_) | Command::Supervisor(_) | Command::Version | Command::Fmt { .. } => {
            Ok(Exit::Ok)
        }
    }
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
        assert!(matches!(
            cli.command,
            Command::Job(JobCommand::Run { detach: true, .. })
        ));
        let cli = Cli::try_parse_from(normalize_args(v(&[
            "noded", "alloc", "logs", "-f", "-stderr", "abcd", "web",
        ])))
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Alloc(AllocCommand::Logs {
                follow: true,
                stderr: true,
                ..
            })
        ));
    }
}
