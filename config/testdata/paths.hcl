# Relative paths, resolved against this file's directory.
pidfile = "forkd.pid"

listen {
  address = "unix:forkd.sock"
}

listen {
  address = "unix:@forkd"
  mode    = 600
}

listen {
  address = "unix:/run/forkd.sock"
  mode    = "0o640"
}

log {
  file   = "../log/forkd.log"
  access = "./access.log"
}

metrics {
  address = "unix:metrics.sock"
}

site "local" {
  route "/" {
    static {
      root = "www"
    }
  }
  route "/dot/" {
    static {
      root = "."
    }
  }
  route "/abs/" {
    static {
      root = "/"
    }
  }
  route "/app/" {
    proxy {
      upstreams = ["localhost:9000", "unix:app.sock"]
    }
  }
}
