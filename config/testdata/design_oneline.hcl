site "example" {
  hosts = ["*"]
  route "/" {
    static { root = "./www"  index = ["index.html"] }
  }
  route "/healthz" {
    respond { status = 200  body = "ok\n" }
  }
}
