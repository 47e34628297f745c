# forkd sample configuration: serves the site in ./www on 127.0.0.1:8080.
# Run it with `forkd -c config.hcl`; check it with `forkd -t -c config.hcl`.
# Keys left out take their defaults (listen.address, static.root and
# proxy.upstreams are required in their blocks); docs/configuration.md
# lists every key with its default.

workers          = 0     # one worker per CPU
graceful_timeout = "30s"
pidfile          = "forkd.pid"  # beside this file; `forkd status -c config.hcl` talks
                                # to the master over forkd.sock next to it

listen {
  address = "127.0.0.1:8080"
}

log {
  level  = "info"
  access = "-"           # access log to stderr; a path appends to a file, reopened on USR1
}

site "sample" {
  hosts = ["*"]

  # Static files; relative roots are resolved from this file's directory.
  # style.css.gz is served to clients that accept gzip.
  route "/" {
    static {
      root  = "./www"
      index = ["index.html"]
    }
  }

  route "/healthz" {
    respond {
      status = 200
      body   = "ok\n"
    }
  }

  # A reverse proxy: round robin over the upstreams, failing over to the
  # next one when a connect fails.
  #
  # route "/api/" {
  #   proxy {
  #     upstreams        = ["127.0.0.1:9000", "127.0.0.1:9001", "unix:/run/app.sock"]
  #     connect_timeout  = "5s"
  #     response_timeout = "60s"
  #   }
  # }
}

# Another site, chosen by Host, proxying everything to one application:
#
# site "app" {
#   hosts = ["app.example.com", "*.app.example.com"]
#   route "/" {
#     proxy { upstreams = ["127.0.0.1:3000"] }
#   }
# }
