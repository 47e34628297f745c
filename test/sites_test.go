package test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
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

// TestSiteFeatures runs one configuration that uses every site and route
// feature of the third wave through a real master and its workers: sites
// bound to listeners, headers, allow/deny, basic_auth from an htpasswd
// file, request IDs (sent back, forwarded, logged), a static fallback,
// error pages (forkd's own and an upstream's bare error), and a proxy
// route with strip_prefix and request_headers.
func TestSiteFeatures(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := write("users.htpasswd", "# admins\nalice:"+string(hash)+"\n")
	write("www/app/index.html", "spa index")
	p404 := write("errors/404.html", "custom 404")
	p502 := write("errors/502.html", "custom 502")

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(502)
			return
		}
		w.Header().Set("Server", "upstream")
		fmt.Fprintf(w, "%s id=%s env=%s cookie=%q", r.URL.RequestURI(), r.Header.Get("X-Request-Id"), r.Header.Get("X-Env"), r.Header.Get("Cookie"))
	}))
	t.Cleanup(up.Close)
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{
		workers: 1,
		listen:  "  name = \"public\"\n",
		extra: fmt.Sprintf(`listen {
  address = %q
  name    = "admin"
}
log {
  access        = "-"
  access_format = "json"
}
`, adminAddr),
		sites: fmt.Sprintf(`site "public" {
  listen      = ["public"]
  request_id  = "X-Request-Id"
  error_pages = { "404" = %q, "502" = %q }
  deny        = ["192.0.2.0/24"]
  headers {
    set    = { "Strict-Transport-Security" = "max-age=60" }
    remove = ["Server"]
  }
  route "/app/" {
    headers {
      add = { "Cache-Control" = "no-cache" }
    }
    static {
      root     = %q
      fallback = "/app/index.html"
    }
  }
  route "/api/" {
    proxy {
      upstreams    = [%q]
      strip_prefix = true
      request_headers {
        set    = { "X-Env" = "test" }
        remove = ["Cookie"]
      }
    }
  }
  route "/lan/" {
    allow = ["10.0.0.0/8"]
    respond {
      body = "lan"
    }
  }
}
site "admin" {
  listen = ["admin"]
  basic_auth {
    realm    = "admin"
    htpasswd = %q
  }
  route "/" {
    respond {
      body = "admin area"
    }
  }
}
`, p404, p502, filepath.Join(dir, "www"), strings.TrimPrefix(up.URL, "http://"), htpasswd),
	})

	c := &http.Client{Timeout: clientTimeout}
	do := func(addr, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	idRe := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tt := range []struct {
		path   string
		status int
		body   string
	}{
		{"/app/", 200, "spa index"},
		{"/app/users/42", 200, "spa index"},
		{"/api/users?x=1", 200, ""}, // checked below
		{"/api/fail", 502, "custom 502"},
		{"/nothing", 404, "custom 404"},
		{"/lan/", 403, "403 Forbidden\n"},
	} {
		resp, body := do(s.addr, tt.path, "Cookie", "a=b", "X-Request-Id", "from-client")
		if resp.StatusCode != tt.status || tt.body != "" && body != tt.body {
			t.Errorf("%s: %d %q, want %d %q", tt.path, resp.StatusCode, body, tt.status, tt.body)
		}
		id := resp.Header.Get("X-Request-Id")
		if !idRe.MatchString(id) {
			t.Errorf("%s: X-Request-Id %q, want a generated ID (the client is not trusted)", tt.path, id)
		}
		if resp.Header.Get("Strict-Transport-Security") != "max-age=60" || resp.Header.Get("Server") != "" {
			t.Errorf("%s: headers %v", tt.path, resp.Header)
		}
		if strings.HasPrefix(tt.path, "/app/") && resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: no route header", tt.path)
		}
		if tt.path == "/api/users?x=1" {
			if want := fmt.Sprintf("/users?x=1 id=%s env=test cookie=\"\"", id); body != want {
				t.Errorf("upstream saw %q, want %q", body, want)
			}
		}
		s.waitLog(`"request_id":"`+id+`"`, 10*time.Second)
	}

	// The admin listener has its own site, behind basic_auth.
	if resp, _ := do(adminAddr, "/"); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="admin", charset="UTF-8"` {
		t.Errorf("admin without credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/", nil)
	req.SetBasicAuth("alice", "s3cret")
	for i := 0; i < 2; i++ { // verified, then remembered
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "admin area" {
			t.Errorf("admin with credentials: %d %q", resp.StatusCode, b)
		}
	}
	// The public site is not on the admin listener, nor the admin site on
	// the public one.
	if resp, body := do(s.addr, "/", "Authorization", "Basic YWxpY2U6czNjcmV0"); resp.StatusCode != 404 || body != "custom 404" {
		t.Errorf("public /: %d %q", resp.StatusCode, body)
	}
	if s.logs.has("s3cret") || s.logs.has("YWxpY2U6czNjcmV0") {
		t.Error("the password reached the logs")
	}
}
