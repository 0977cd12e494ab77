//! The HCL2 language as Nomad's jobspec uses it: variables and their precedence, locals,
//! expressions, functions, `dynamic` blocks, runtime interpolations kept literal, and errors
//! that point at file:line:col.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap fixtures
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // fixtures and the corpus are read from disk

use std::io::Write;

use jobspec::ParseOptions;
use model::Job;

fn opts() -> ParseOptions {
    ParseOptions::for_file("t.hcl")
}

fn parse(src: &str) -> Job {
    jobspec::parse_hcl(src, &opts())
        .unwrap_or_else(|e| panic!("parse failed:\n{e}"))
        .job
}

fn parse_err(src: &str) -> String {
    match jobspec::parse_hcl(src, &opts()) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn check_err(src: &str) -> String {
    match jobspec::check_hcl(src, &opts()) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn env_of(job: &Job) -> &std::collections::BTreeMap<String, String> {
    &job.task_groups[0].tasks[0].env
}

const EXEC: &str = r#"
job "web" {
  group "g" {
    task "t" {
      driver = "exec"
      config { command = "/bin/true" }
      env { X = "${NOMAD_PORT_http}" }
    }
  }
}
"#;

#[test]
fn a_minimal_exec_job_parses_with_nomad_defaults() {
    let job = parse(EXEC);
    assert_eq!(job.id, "web");
    assert_eq!(job.name, "web");
    assert_eq!(job.task_groups[0].count, 1);
    let t = &job.task_groups[0].tasks[0];
    assert_eq!(t.config["command"], "/bin/true");
    assert_eq!(t.resources.as_ref().unwrap().cpu, 100);
    assert_eq!(t.resources.as_ref().unwrap().memory_mb, 300);
    assert_eq!(t.kill_timeout, Some(std::time::Duration::from_secs(5)));
    assert_eq!(t.restart_policy.as_ref().unwrap().attempts, 2);
    assert_eq!(env_of(&job)["X"], "${NOMAD_PORT_http}");
    assert!(jobspec::validate(&job).is_ok());
}

#[test]
fn runtime_interpolations_stay_literal_and_escapes_work() {
    let job = parse(
        r#"
variable "v" { default = "val" }
job "j" {
  group "g" {
    task "t" {
      driver = "exec"
      config { command = "x" }
      env {
        A = "${attr.kernel.name}"
        B = "${node.unique.id}-${var.v}"
        C = "$${literal}"
        D = "${meta.foo}"
        E = "${NOMAD_ALLOC_DIR}/x"
        F = "$attr.kernel.version"
        G = "${secret.testsecret.key}"
        H = "${attr["unique.platform.aws.instance-type"]}"
      }
    }
  }
}
"#,
    );
    let env = env_of(&job);
    assert_eq!(env["A"], "${attr.kernel.name}");
    assert_eq!(env["B"], "${node.unique.id}-val");
    assert_eq!(env["C"], "${literal}");
    assert_eq!(env["D"], "${meta.foo}");
    assert_eq!(env["E"], "${NOMAD_ALLOC_DIR}/x");
    assert_eq!(env["F"], "$attr.kernel.version");
    assert_eq!(env["G"], "${secret.testsecret.key}");
    assert_eq!(env["H"], r#"${attr["unique.platform.aws.instance-type"]}"#);
}

#[test]
fn expressions_conditionals_for_splat_heredocs_and_functions_evaluate() {
    let job = parse(
        r#"
locals {
  ports = [{ name = "a", n = 1 }, { name = "b", n = 2 }]
  names = local.ports[*].name
  upper = [for p in local.ports : upper(p.name) if p.n > 1]
  byname = { for p in local.ports : p.name => p.n * 10 }
  script = <<-EOT
    #!/bin/sh
      echo hi
    EOT
}
job "j" {
  group "g" {
    count = length(local.names) > 1 ? 3 : 1
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", local.script]
      }
      env {
        NAMES  = join(",", local.names)
        UPPER  = join(",", local.upper)
        BYNAME = jsonencode(local.byname)
        MATH   = 7 / 2 + 10 % 4
        TMPL   = "%{ for n in local.names }${n};%{ endfor }"
        STRIP  = "a %{~ if true ~} b %{~ endif ~} c"
      }
    }
  }
}
"#,
    );
    assert_eq!(job.task_groups[0].count, 3);
    let env = env_of(&job);
    assert_eq!(env["NAMES"], "a,b");
    assert_eq!(env["UPPER"], "B");
    assert_eq!(env["BYNAME"], r#"{"a":10,"b":20}"#);
    assert_eq!(env["MATH"], "5.5");
    assert_eq!(env["TMPL"], "a;b;");
    assert_eq!(env["STRIP"], "abc");
    let args = job.task_groups[0].tasks[0].config["args"]
        .as_array()
        .unwrap();
    assert_eq!(args[1], "#!/bin/sh\n  echo hi\n");
}

#[test]
fn variables_take_nomads_precedence_env_then_files_then_flags() {
    let src = r#"
variable "a" { default = "default" }
variable "b" { default = "default" }
variable "c" { default = "default" }
variable "d" { default = "default" }
variable "n" {
  type    = number
  default = 1
}
job "j" {
  group "g" {
    count = var.n
    task "t" {
      driver = "exec"
      config { command = "x" }
      env {
        A = var.a
        B = var.b
        C = var.c
        D = var.d
      }
    }
  }
}
"#;
    let dir = tempfile::tempdir().unwrap();
    let f1 = dir.path().join("one.hcl");
    std::fs::write(&f1, "b = \"file1\"\nc = \"file1\"\n").unwrap();
    let f2 = dir.path().join("two.json");
    std::fs::write(&f2, r#"{"c": "file2", "n": 4}"#).unwrap();
    let opts = ParseOptions {
        filename: "t.hcl".into(),
        env_vars: vec![
            ("NOMAD_VAR_a".into(), "env".into()),
            ("NOMAD_VAR_b".into(), "env".into()),
            ("PATH".into(), "/bin".into()),
            ("NOMAD_VAR_undeclared".into(), "ignored".into()),
        ],
        var_files: vec![f1, f2],
        vars: vec![
            ("c".into(), "flag".into()),
            ("d".into(), "flag1".into()),
            ("d".into(), "flag2".into()),
        ],
        ..Default::default()
    };
    let job = jobspec::parse_hcl(src, &opts).unwrap().job;
    let env = env_of(&job);
    assert_eq!(env["A"], "env");
    assert_eq!(env["B"], "file1");
    assert_eq!(env["C"], "flag");
    assert_eq!(env["D"], "flag2");
    assert_eq!(job.task_groups[0].count, 4);
}

#[test]
fn variable_problems_are_reported_with_how_to_fix_them() {
    let missing = parse_err("variable \"image\" {}\njob \"j\" {}\n");
    assert!(
        missing.starts_with("t.hcl:1:1: variable \"image\": has no value"),
        "{missing}"
    );
    assert!(
        missing.contains("-var image=") && missing.contains("NOMAD_VAR_image"),
        "{missing}"
    );

    let src = r#"
variable "port" {
  type = number
  validation {
    condition     = var.port > 1024
    error_message = "the port must be above 1024."
  }
}
job "j" {}
"#;
    let o = ParseOptions {
        vars: vec![("port".into(), "80".into())],
        ..opts()
    };
    let e = jobspec::parse_hcl(src, &o).unwrap_err().to_string();
    assert!(
        e.contains("the port must be above 1024.") && e.contains("-var port"),
        "{e}"
    );
    let o = ParseOptions {
        vars: vec![("port".into(), "eighty".into())],
        ..opts()
    };
    let e = jobspec::parse_hcl(src, &o).unwrap_err().to_string();
    assert!(e.contains("number"), "{e}");
    let o = ParseOptions {
        vars: vec![("nope".into(), "1".into())],
        ..opts()
    };
    let e = jobspec::parse_hcl("job \"j\" {}", &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not declare"), "{e}");
    let e =
        parse_err("variable \"l\" {\n  type = list(string)\n  default = \"x\"\n}\njob \"j\" {}");
    assert!(e.contains("list(string)"), "{e}");
}

#[test]
fn locals_are_order_free_and_cycles_are_named() {
    let job = parse(
        r#"
job "j" {
  group "g" {
    task "t" {
      driver = "exec"
      config { command = local.cmd }
    }
  }
}
locals {
  cmd  = "${local.base}/run"
  base = "/opt"
}
"#,
    );
    assert_eq!(job.task_groups[0].tasks[0].config["command"], "/opt/run");
    let e = parse_err("locals {\n  a = local.b\n  b = local.c\n  c = local.a\n}\njob \"j\" {}\n");
    assert!(
        e.contains("cycle") && e.contains("local.a → local.b → local.c → local.a"),
        "{e}"
    );
    let e = parse_err("locals {\n  a = 1\n}\nlocals {\n  a = 2\n}\njob \"j\" {}\n");
    assert!(
        e.contains("t.hcl:5:3") && e.contains("defined twice"),
        "{e}"
    );
}

#[test]
fn dynamic_blocks_expand() {
    let job = parse(
        r#"
locals {
  ports = { http = 8080, admin = 9090 }
}
job "j" {
  group "g" {
    network {
      dynamic "port" {
        for_each = local.ports
        labels   = [port.key]
        content {
          to = port.value
        }
      }
    }
    task "t" {
      driver = "exec"
      config { command = "x" }
      dynamic "template" {
        for_each = ["a", "b"]
        iterator = f
        content {
          data        = "file ${f.value}"
          destination = "local/${f.value}"
        }
      }
    }
  }
}
"#,
    );
    let ports = &job.task_groups[0].networks[0].dynamic_ports;
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0].label, "admin");
    assert_eq!(ports[0].to, 9090);
    let t = &job.task_groups[0].tasks[0];
    assert_eq!(t.templates.len(), 2);
    assert_eq!(t.templates[1].dest_path, "local/b");
    assert_eq!(t.templates[1].embedded_tmpl, "file b");
}

#[test]
fn unknown_fields_and_bad_values_are_all_reported_with_positions() {
    let e = check_err(
        r#"job "j" {
  group "web" {
    count = -1
    task "api" {
      driver = "exec"
      confg { command = "x" }
      resources {
        memory = 4
        cpu = "lots"
      }
      kill_timeout = "5 seconds"
    }
  }
}
"#,
    );
    let lines: Vec<&str> = e.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("t.hcl:6:7: job \"j\" → group \"web\" → task \"api\": unknown block \"confg\" in task; did you mean \"config\"?")), "{e}");
    assert!(lines.iter().any(|l| l.starts_with("t.hcl:9:15: job \"j\" → group \"web\" → task \"api\" → resources.cpu: a number is required")), "{e}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("t.hcl:11:22:") && l.contains("kill_timeout")),
        "{e}"
    );
    // Parse errors stop before validation, so fix them and look at what validation says.
    let e = check_err(
        r#"job "j" {
  group "web" {
    count = -1
    task "api" {
      driver = "exec"
      config {
        args = ["x"]
      }
      resources {
        memory = 4
      }
    }
  }
}
"#,
    );
    assert!(
        e.contains(
            "t.hcl:3:13: job \"j\" → group \"web\" → count: count must not be negative (got -1)"
        ),
        "{e}"
    );
    assert!(e.contains("t.hcl:10:18: job \"j\" → group \"web\" → task \"api\" → resources.memory: must be at least 10 MB (got 4)"), "{e}");
    assert!(e.contains("the exec driver needs config { command"), "{e}");
    assert_eq!(e.lines().count(), 3, "{e}");
}

#[test]
fn malformed_hcl_is_a_syntax_error_at_its_position() {
    let e = parse_err("job \"j\" {\n  group \"g\" {\n    count = \n  }\n}\n");
    assert!(
        e.starts_with("t.hcl:3:") && e.contains("syntax error"),
        "{e}"
    );
    let e = parse_err("job \"j\" {");
    assert!(e.contains("syntax error"), "{e}");
}

#[test]
fn duplicate_blocks_and_attributes_are_errors() {
    let e = parse_err("job \"j\" {\n  update {}\n  update {}\n}\n");
    assert!(
        e.contains("t.hcl:3:3") && e.contains("only one update block"),
        "{e}"
    );
    let e = parse_err("job \"j\" {\n  priority = 1\n  priority = 2\n}\n");
    assert!(
        e.starts_with("t.hcl:3:3") && e.contains("redefined attribute"),
        "{e}"
    );
}

#[test]
fn job_level_tasks_become_groups_and_vault_is_inherited() {
    let job = parse(
        r#"
job "j" {
  vault { role = "r" }
  task "solo" {
    driver = "exec"
    config { command = "x" }
  }
  group "g" {
    task "t" {
      driver = "exec"
      config { command = "x" }
    }
  }
}
"#,
    );
    assert_eq!(job.task_groups.len(), 2);
    assert_eq!(job.task_groups[0].name, "solo");
    assert_eq!(
        job.task_groups[0].tasks[0].vault.as_ref().unwrap().role,
        "r"
    );
    assert_eq!(
        job.task_groups[1].tasks[0].vault.as_ref().unwrap().role,
        "r"
    );
    assert_eq!(
        job.task_groups[1].tasks[0].vault.as_ref().unwrap().env,
        Some(true)
    );
}

#[test]
fn meta_may_be_a_block_or_an_attribute_and_removed_tokens_warn() {
    let p = jobspec::parse_hcl(
        "job \"j\" {\n  meta = { a = 1 }\n  vault_token = \"x\"\n  group \"g\" {\n    meta { b = true }\n  }\n}\n",
        &opts(),
    )
    .unwrap();
    assert_eq!(p.job.meta["a"], "1");
    assert_eq!(p.job.task_groups[0].meta["b"], "true");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.to_string().contains("vault_token is ignored")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let o = ParseOptions {
        limits: jobspec::Limits {
            max_bytes: 10,
            ..Default::default()
        },
        ..opts()
    };
    let e = jobspec::parse_hcl("job \"j\" {}\n", &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than the limit of 10 bytes"), "{e}");
    let deep = format!(
        "job \"j\" {{ meta = {}{} }}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let e = parse_err(&deep);
    assert!(e.contains("nesting is deeper than 64 levels"), "{e}");
    let e = parse_err("locals {\n  x = range(1000000000)\n}\njob \"j\" {}");
    assert!(e.contains("more than"), "{e}");
    let src = EXEC.replace("group \"g\" {", "group \"g\" {\n    count = 50001");
    let e = check_err(&src);
    assert!(
        e.contains("count 50001 is more than the limit of 50000"),
        "{e}"
    );

    // A huge file is refused from its size, without being read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.hcl");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(2 * 1024 * 1024 * 1024).unwrap();
    let started = std::time::Instant::now();
    let e = jobspec::parse_file(&path, &ParseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than the limit of 1048576 bytes"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let mut f = std::fs::File::create(dir.path().join("ok.hcl")).unwrap();
    f.write_all(EXEC.as_bytes()).unwrap();
    assert!(jobspec::parse_file(&dir.path().join("ok.hcl"), &ParseOptions::default()).is_ok());
}

#[test]
fn config_keeps_arbitrary_structure_like_hcl1() {
    let job = parse(
        r#"
job "j" {
  group "g" {
    task "t" {
      driver = "docker"
      config {
        big   = 21474836470
        f     = 3.2
        mixed = [1, "a", { k = "v" }]
        m     = { K = "V" }
        port_map { db = 1234 }
        lb "l1" "l2" { k = "b" }
        rep { a = 1 }
        rep { b = 2 }
      }
    }
  }
}
"#,
    );
    let c = serde_json::Value::Object(job.task_groups[0].tasks[0].config.clone());
    assert_eq!(
        c,
        serde_json::json!({
            "big": 21474836470i64,
            "f": 3.2,
            "mixed": [1, "a", {"k": "v"}],
            "m": [{"K": "V"}],
            "port_map": [{"db": 1234}],
            "lb": [{"l1": [{"l2": [{"k": "b"}]}]}],
            "rep": [{"a": 1}, {"b": 2}],
        })
    );
}

#[test]
fn unsupported_fields_are_kept_and_named_in_warnings() {
    let p = jobspec::check_hcl(
        r#"
job "j" {
  group "g" {
    network {
      port "http" {}
    }
    task "t" {
      driver = "exec"
      config {
        command = "x"
        pid_mode = "host"
        image_digest = "sha256:abc"
      }
      artifact { source = "https://example.com/x.tgz" }
    }
  }
}
"#,
        &opts(),
    )
    .unwrap();
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        !w.iter().any(|w| w.contains("network")),
        "the network block is acted on: {w:?}"
    );
    assert!(w.iter().any(|w| w.contains("artifact")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("config.image_digest")), "{w:?}");
    assert!(
        !w.iter().any(|w| w.contains("pid_mode")),
        "pid_mode is acted on: {w:?}"
    );
    assert!(
        !w.iter()
            .any(|w| w.contains("restart") || w.contains("update") || w.contains("ephemeral_disk")),
        "defaults must not warn: {w:?}"
    );
    assert_eq!(
        p.job.task_groups[0].networks[0].dynamic_ports[0].label,
        "http"
    );
    let none = jobspec::check_hcl(EXEC, &opts()).unwrap();
    assert!(none.warnings.is_empty(), "{:?}", none.warnings);
}

#[test]
fn try_can_and_convert_take_unevaluated_arguments() {
    let job = parse(
        r#"
locals {
  m = { a = "1" }
}
job "j" {
  group "g" {
    count = convert("2", number)
    task "t" {
      driver = "exec"
      config { command = "x" }
      env {
        TRY  = try(local.m.missing, local.m.a, "fallback")
        CAN  = can(local.m.missing)
        CAN2 = can(local.m.a)
        LIST = jsonencode(convert(["a", 1], list(string)))
      }
    }
  }
}
"#,
    );
    assert_eq!(job.task_groups[0].count, 2);
    let env = env_of(&job);
    assert_eq!(env["TRY"], "1");
    assert_eq!(env["CAN"], "false");
    assert_eq!(env["CAN2"], "true");
    assert_eq!(env["LIST"], r#"["a","1"]"#);
    let e = parse_err("locals {\n  x = try(local.nope)\n}\njob \"j\" {}");
    assert!(e.contains("no local named \"nope\""), "{e}");
    let e = parse_err("locals {\n  x = nosuch(1)\n}\njob \"j\" {}");
    assert!(
        e.contains("t.hcl:2:7") && e.contains("no function named \"nosuch\""),
        "{e}"
    );
    let e = parse_err("locals {\n  x = lenght([1])\n}\njob \"j\" {}");
    assert!(e.contains("did you mean \"length\"?"), "{e}");
}

#[test]
fn filesystem_functions_are_off_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("motd.txt"), "hello\n").unwrap();
    let src = "locals {\n  m = chomp(file(\"motd.txt\"))\n  p = abspath(\"motd.txt\")\n}\njob \"j\" {\n  meta {\n    m = local.m\n    p = local.p\n  }\n}\n";
    let e = parse_err(src);
    assert!(
        e.contains("file() reads the filesystem, which is disabled"),
        "{e}"
    );
    let o = ParseOptions {
        filename: dir.path().join("job.hcl").display().to_string(),
        allow_fs_functions: true,
        ..Default::default()
    };
    let job = jobspec::parse_hcl(src, &o).unwrap().job;
    assert_eq!(job.meta["m"], "hello");
    assert_eq!(
        job.meta["p"],
        dir.path().join("motd.txt").display().to_string()
    );
}

#[test]
fn every_kind_of_list_is_bounded_by_the_list_limit() {
    let o = ParseOptions {
        limits: jobspec::Limits {
            max_list_len: 2,
            ..Default::default()
        },
        ..opts()
    };
    let strings = "job \"j\" {\n  datacenters = [\"a\", \"b\", \"c\"]\n}\n";
    let e = jobspec::parse_hcl(strings, &o).unwrap_err().to_string();
    assert!(
        e.contains("has 3 elements, more than the limit of 2"),
        "{e}"
    );
    let numbers = r#"job "j" {
  group "g" {
    service {
      connect {
        sidecar_service {
          proxy {
            transparent_proxy {
              exclude_outbound_ports = [1, 2, 3]
            }
          }
        }
      }
    }
  }
}
"#;
    let e = jobspec::parse_hcl(numbers, &o).unwrap_err().to_string();
    assert!(
        e.contains("has 3 elements, more than the limit of 2"),
        "{e}"
    );
    assert!(e.contains("exclude_outbound_ports"), "{e}");
    // Within the limit, both parse.
    jobspec::parse_hcl(&numbers.replace("[1, 2, 3]", "[1, 2]"), &o).unwrap();
}

#[test]
fn timestamp_is_the_now_the_caller_passes_so_a_parse_is_reproducible() {
    let src = r#"
job "j" {
  meta {
    at    = timestamp()
    later = timeadd(timestamp(), "90m")
    day   = formatdate("EEEE D MMMM YYYY", timestamp())
  }
}
"#;
    let o = ParseOptions {
        now_unix_nanos: 1_700_000_000_500_000_000,
        ..opts()
    };
    let first = jobspec::parse_hcl(src, &o).unwrap().job;
    assert_eq!(first.meta["at"], "2023-11-14T22:13:20Z");
    assert_eq!(first.meta["later"], "2023-11-14T23:43:20Z");
    assert_eq!(first.meta["day"], "Tuesday 14 November 2023");
    assert_eq!(jobspec::parse_hcl(src, &o).unwrap().job, first);
    // Options made without a time take the clock's, when they are made.
    let year = jobspec::parse_hcl(src, &opts()).unwrap().job.meta["at"].clone();
    assert!(year.as_str() > "2025", "{year}");
}

#[test]
fn periodic_time_zones_come_from_the_bundled_database() {
    let job = |tz: &str| {
        format!(
            "job \"p\" {{\n  type = \"batch\"\n  periodic {{\n    cron      = \"@daily\"\n    time_zone = \"{tz}\"\n  }}\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n"
        )
    };
    for ok in [
        "UTC",
        "Europe/Minsk",
        "America/Argentina/Buenos_Aires",
        "Local",
    ] {
        jobspec::check_hcl(&job(ok), &opts()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in ["utc", "Europe/Minks", "Local/Time"] {
        let e = check_err(&job(bad));
        assert!(e.contains("unknown time zone"), "{bad}: {e}");
    }
}

/// Nomad's Go decoder ignores keys it does not know, so API JSON from a tool written for a
/// newer Nomad still parses; noded warns with the place and the key. HCL stays strict.
#[test]
fn unknown_api_json_keys_are_ignored_with_a_warning_but_unknown_hcl_keys_are_errors() {
    let json = "{\n  \"Job\": {\n    \"ID\": \"web\",\n    \"FutureField\": {\"a\": 1},\n    \"TaskGroups\": [{\n      \"Name\": \"g\",\n      \"Tasks\": [{\"Name\": \"t\", \"Driver\": \"exec\", \"Comand\": \"/bin/true\", \"Nme\": null}]\n    }]\n  }\n}\n";
    let parsed = jobspec::parse_api_json(json, &ParseOptions::for_file("j.json")).unwrap();
    let warnings: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings.contains(
            &"j.json:4:5: FutureField: unknown key \"FutureField\" in job, ignored".to_string()
        ),
        "{warnings:#?}"
    );
    assert!(
        warnings.contains(
            &"j.json:7:49: TaskGroups[0].Tasks[0].Comand: unknown key \"Comand\" in task, ignored"
                .to_string()
        ),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with("j.json:7:72: TaskGroups[0].Tasks[0].Nme: unknown key \"Nme\" in task, ignored; did you mean \"Name\"?")),
        "{warnings:#?}"
    );
    assert_eq!(parsed.job.task_groups[0].tasks[0].name, "t");
    // A value of the wrong type is still an error.
    let bad = json.replace("\"Name\": \"g\"", "\"Name\": 7");
    let e = jobspec::parse_api_json(&bad, &ParseOptions::for_file("j.json")).unwrap_err();
    assert!(
        e.to_string()
            .contains("TaskGroups[0].Name: a string is required, got a number"),
        "{e}"
    );
    // In HCL an unknown key is an error with its line.
    let e = parse_err("job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      comand = \"x\"\n    }\n  }\n}\n");
    assert!(e.contains("t.hcl:5:7") && e.contains("comand"), "{e}");
}

#[test]
fn periodic_parameterized_dispatch_payload_and_scaling_are_acted_on() {
    let p = jobspec::check_hcl(
        r#"
job "p" {
  type = "batch"
  periodic {
    crons            = ["*/5 * * * *"]
    prohibit_overlap = true
    time_zone        = "Europe/Paris"
  }
  parameterized {
    payload       = "optional"
    meta_required = ["input"]
  }
  group "g" {
    scaling {
      min = 1
      max = 4
    }
    task "t" {
      driver = "exec"
      config { command = "x" }
      dispatch_payload { file = "input.txt" }
    }
  }
}
"#,
        &opts(),
    )
    .unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn lifecycle_max_run_duration_and_init_are_acted_on_and_checked() {
    let p = jobspec::check_hcl(
        r#"
job "j" {
  type = "batch"
  group "g" {
    max_run_duration = "1h"
    task "setup" {
      driver = "exec"
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }
      config { command = "x" }
    }
    task "main" {
      driver = "exec"
      config {
        command = "x"
        init    = false
      }
    }
  }
}
"#,
        &opts(),
    )
    .unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(
        p.job.task_groups[0].max_run_duration,
        Some(std::time::Duration::from_secs(3600))
    );
    let e = jobspec::check_hcl(
        r#"
job "j" {
  group "g" {
    max_run_duration = "1h"
    task "main" {
      driver = "exec"
      config { command = "x" }
    }
  }
}
"#,
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("max_run_duration") && e.contains("job type \"service\" does not allow"),
        "{e}"
    );
}

#[test]
fn update_blocks_follow_nomads_rules() {
    let job = |kind: &str, update: &str| {
        format!(
            "job \"j\" {{\n  type = \"{kind}\"\n  group \"web\" {{\n    update {{\n{update}\n    }}\n    task \"t\" {{\n      driver = \"exec\"\n      config {{ command = \"/bin/true\" }}\n    }}\n  }}\n}}\n"
        )
    };
    let e = check_err(&job("batch", "      max_parallel = 1"));
    assert!(
        e.contains("group \"web\"") && e.contains("does not allow an update block"),
        "{e}"
    );
    // Nomad refuses a healthy deadline that is not below the progress deadline.
    let e = check_err(&job(
        "service",
        "      healthy_deadline = \"5m\"\n      progress_deadline = \"5m\"",
    ));
    assert!(
        e.contains("progress_deadline") && e.contains("must be more than healthy_deadline"),
        "{e}"
    );
    let e = check_err(&job(
        "service",
        "      min_healthy_time = \"5m\"\n      healthy_deadline = \"5m\"",
    ));
    assert!(e.contains("min_healthy_time"), "{e}");
    // As in Nomad, more canaries than count is allowed (the extra ones are named past the
    // count and stopped on promotion); an update block is no longer reported as ignored.
    let parsed = jobspec::check_hcl(
        &job("service", "      canary = 3\n      max_parallel = 1"),
        &opts(),
    )
    .unwrap();
    assert!(
        parsed
            .warnings
            .iter()
            .all(|w| !w.to_string().contains("update")),
        "{:?}",
        parsed.warnings
    );
}
