# A first job: a service that says hello every few seconds.
#   noded job run examples/hello.hcl
#   noded job status hello
#   noded alloc logs -job hello
#   noded job stop hello
job "hello" {
  datacenters = ["*"]
  type        = "service"

  group "greeter" {
    count = 1

    task "hello" {
      driver = "exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do echo \"hello from $NOMAD_TASK_NAME in allocation $NOMAD_SHORT_ALLOC_ID\"; sleep 3; done"]
      }

      env {
        GREETING = "hello"
      }

      resources {
        cpu    = 100 # MHz
        memory = 64  # MB
      }
    }
  }
}
