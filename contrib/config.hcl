# /etc/forkd/config.hcl, installed by contrib/install.sh for
# contrib/systemd/forkd.service. README.md lists every key.
# Check a change with `forkd -t -c /etc/forkd/config.hcl`, apply it with
# `systemctl reload forkd`.

# contrib/logrotate and `forkd status -c /etc/forkd/config.hcl` (over
# /run/forkd/forkd.sock) use it; systemd creates /run/forkd.
pidfile = "/run/forkd/forkd.pid"

# Workers drop to this user when the master runs as root (as under the
# unit): create it first, e.g. `useradd --system --no-create-home forkd`.
# user = "forkd"

listen {
  address = "127.0.0.1:8080"
}

log {
  level = "info" # on stderr, which systemd sends to the journal
  # access = "/var/log/forkd/access.log"  # systemd creates /var/log/forkd
}

site "default" {
  route "/healthz" {
    respond {
      status = 200
      body   = "ok\n"
    }
  }
  route "/" {
    respond {
      status = 200
      body   = "forkd is running; edit /etc/forkd/config.hcl to serve your site.\n"
    }
  }
}
