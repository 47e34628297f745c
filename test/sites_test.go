package test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSitesPerListenerRedirectOneHop runs the documented HTTP->HTTPS
// redirect in one instance that also has the TLS listener: the redirect
// site serves only the plain listener (site.listen), so curl -L follows
// one 308 and gets the HTTPS site's 200, instead of a redirect to itself.
func TestSitesPerListenerRedirectOneHop(t *testing.T) {
	env := newTLSEnv(t)
	env.issue("localhost", "localhost")
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{
		listen: "  name = \"http\"\n",
		extra:  strings.Replace(env.listen(httpsAddr, "", "localhost"), "listen {\n", "listen {\n  name = \"https\"\n", 1),
		sites: fmt.Sprintf(`site "to-https" {
  listen = ["http"]
  route "/" {
    redirect {
      status   = 308
      location = "https://{host}:%s{uri}"
    }
  }
}
site "app" {
  listen = ["https"]
  route "/" {
    respond {
      body = "secure\n"
    }
  }
}
`, strings.Split(httpsAddr, ":")[1]),
	})
	ca := env.path("ca.pem")
	if err := os.WriteFile(ca, env.ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	port := strings.Split(s.addr, ":")[1]
	out, err := exec.Command("curl", "-sS", "-L", "--max-redirs", "1", "--cacert", ca,
		"-o", "/dev/null", "-w", "%{http_code} %{num_redirects} %{url_effective}",
		"http://localhost:"+port+"/a/b?c=1").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	want := fmt.Sprintf("200 1 https://localhost:%s/a/b?c=1", strings.Split(httpsAddr, ":")[1])
	if string(out) != want {
		t.Errorf("curl -L: %q, want %q", out, want)
	}
}
