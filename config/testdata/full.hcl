# The DESIGN.md example, every key set to its default, with the one-line
# static and respond blocks split over lines (HCL allows one argument in a
# single-line block).
workers             = 0
worker_timeout      = "30s"
graceful_timeout    = "30s"
max_requests        = 0
max_requests_jitter = 0
pidfile             = ""
user                = ""
group               = ""
control_socket      = ""
max_worker_memory   = "0"
max_worker_memory_window = "30s"

listen {
  address    = "127.0.0.1:8080"
  reuse_port = false
}

log {
  level  = "info"
  format = "text"
  file   = ""
  access = ""
}

limits {
  request_line        = 8192
  header_bytes        = 65536
  header_count        = 100
  body_bytes          = 10485760
  read_header_timeout = "10s"
  idle_timeout        = "75s"
  write_timeout       = "60s"
  max_connections     = 10000
}

site "example" {
  hosts = ["*"]
  route "/" {
    static {
      root  = "./www"
      index = ["index.html"]
    }
  }
  route "/api/" {
    proxy {
      upstreams         = ["127.0.0.1:9000", "127.0.0.1:9001"]
      balance           = "least_conn"
      weights           = [3, 1]
      keepalive         = 16
      max_fails         = 3
      fail_timeout      = "30s"
      host              = "api.internal"
      via               = true
      retry_body_buffer = "8KiB"
    }
  }
  route "/healthz" {
    respond {
      status = 200
      body   = "ok\n"
    }
  }
}
