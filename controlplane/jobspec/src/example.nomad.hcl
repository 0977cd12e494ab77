# An example job, written by `noded job init`. Run it with `noded job run example.nomad.hcl`.
#
# A job declares what to run; noded decides where. This file uses the HCL2 jobspec language,
# the same one Nomad uses: blocks, attributes, variables and functions.

# Input variables let one file serve several environments. Override them with
# `-var greeting=hello`, a `-var-file`, or the environment variable NOMAD_VAR_greeting.
variable "greeting" {
  type        = string
  default     = "hello from noded"
  description = "What the task prints."
}

job "example" {
  # Where the job may run: datacenter names, or globs such as "dc*". "*" means anywhere.
  datacenters = ["*"]

  # service jobs keep running; batch jobs run to completion; system jobs run on every node.
  type = "service"

  # A group holds tasks that run together on the same node.
  group "web" {
    # How many copies of the group to run.
    count = 1

    # What to do when a task exits: try again twice within 30 minutes, 15s apart, then
    # fail the allocation so the scheduler can replace it.
    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }

    task "greeter" {
      # exec runs the command isolated in its own namespaces and cgroup.
      driver = "exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do echo \"$GREETING\"; sleep 10; done"]
      }

      # Environment for the task. ${NOMAD_ALLOC_ID} and friends are filled in on the node.
      env {
        GREETING = var.greeting
        ALLOC    = "${NOMAD_ALLOC_ID}"
      }

      # What the task needs: CPU in MHz, memory in MB.
      resources {
        cpu    = 100
        memory = 64
      }

      # Keep up to 3 log files of 10 MB each for stdout and for stderr.
      logs {
        max_files     = 3
        max_file_size = 10
      }

      # On stop, send SIGINT and wait up to 5 seconds before killing the task.
      kill_signal  = "SIGINT"
      kill_timeout = "5s"
    }
  }
}
