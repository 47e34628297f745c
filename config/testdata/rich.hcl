# Every key set to something other than its default; relative paths are
# resolved against this file's directory.
workers             = 4
worker_timeout      = "45s"
graceful_timeout    = "1m30s"
max_requests        = 100000
max_requests_jitter = 500
pidfile             = "run/forkd.pid"
user                = "root"
group               = "0"
control_socket      = "/tmp/forkd-control.sock"
max_worker_memory   = "512MiB"
max_worker_memory_window = "1m"

listen {
  address    = "0.0.0.0:80"
  reuse_port = true
}

listen {
  address = "[::1]:8443"
}

listen {
  address = "unix:run/forkd.sock"
  mode    = "0660"
}

log {
  level  = "DEBUG"
  format = "json"
  file   = "forkd.log"
  access = "-"
}

limits {
  request_line        = 4096
  header_bytes        = 32768
  header_count        = 50
  body_bytes          = 0
  read_header_timeout = "5s"
  idle_timeout        = "2m"
  write_timeout       = "500ms"
  max_connections     = 256
}

metrics {
  address = "127.0.0.1:9200"
}

site "www" {
  hosts = ["Example.COM", "*.example.com"]

  route "/" {
    static {
      root     = "www"
      index    = ["index.html", "index.htm"]
      dotfiles = true
      gzip     = false
    }
  }

  route "/api/" {
    proxy {
      upstreams        = ["127.0.0.1:9000", "backend.internal:9001", "unix:api.sock"]
      connect_timeout  = "250ms"
      response_timeout = "2m"
    }
  }
}

site "fallback" {
  hosts = ["*"]

  route "/" {
    respond {
      status  = 404
      body    = "not here\n"
      headers = {
        "Content-Type" = "text/plain; charset=utf-8"
        X-Forkd        = "yes"
      }
    }
  }
}
