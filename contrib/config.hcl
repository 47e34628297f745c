# /etc/forkd/config.hcl, installed by contrib/install.sh for
# contrib/systemd/forkd.service. README.md lists every key.
# Check a change with `forkd -t -c /etc/forkd/config.hcl`, apply it with
# `systemctl reload forkd`.

# contrib/logrotate and `forkd status -c /etc/forkd/config.hcl` (over
# /run/forkd/forkd.sock, next to it) use it; systemd creates /run/forkd
# (RuntimeDirectory=forkd).
pidfile = "/run/forkd/forkd.pid"

# The master runs as root; workers drop to this user and group, which
# contrib/sysusers/forkd.conf creates (contrib/install.sh runs
# systemd-sysusers on it).
user  = "forkd"
group = "forkd"

# The address of contrib/systemd/forkd.socket's ListenStream=: with socket
# activation the master takes that socket instead of binding. Change both
# together.
listen {
  address = "0.0.0.0:80"
}

log {
  level = "info" # errors on stderr, which systemd sends to the journal
  # systemd creates /var/log/forkd (LogsDirectory=forkd); the master creates
  # the file and hands it to the workers' user, who append to it.
  # contrib/logrotate rotates it and sends USR1 to reopen it.
  access = "/var/log/forkd/access.log"
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
