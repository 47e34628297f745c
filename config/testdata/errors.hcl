workers        = -1
worker_timeout = "10x"

listen {
  address = "localhost"
}

log {
  level = "loud"
}

site "a" {
  route "api" {
    respond { status = 99 }
  }
  route "/x" {
  }
}
