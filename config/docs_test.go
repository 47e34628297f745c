package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/forkd/forkd/internal/testcert"
)

// docs are the documents whose hcl blocks are configuration examples.
var docs = []string{"../README.md", "../docs/DESIGN.md"}

// hclBlock is one ```hcl fenced block of a document.
type hclBlock struct {
	line int // of the opening fence
	src  string
}

var fence = regexp.MustCompile("^```(\\S*)\\s*$")

// hclBlocks returns the ```hcl blocks of the Markdown file path.
func hclBlocks(t *testing.T, path string) []hclBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []hclBlock
	var cur *hclBlock
	for i, line := range strings.Split(string(b), "\n") {
		m := fence.FindStringSubmatch(line)
		switch {
		case cur != nil && m != nil && m[1] == "":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.src += line + "\n"
		case m != nil && m[1] == "hcl":
			cur = &hclBlock{line: i + 1}
		case m != nil:
			// Another language: skip to its closing fence by treating it
			// as a block that is dropped.
			cur = &hclBlock{line: -1}
		}
	}
	if cur != nil {
		t.Fatalf("%s: unclosed code block at line %d", path, cur.line)
	}
	blocks := out[:0]
	for _, bl := range out {
		if bl.line > 0 {
			blocks = append(blocks, bl)
		}
	}
	return blocks
}

// relPaths finds the relative static roots and log files a block names,
// so the test can create them: whether a configuration that names a
// missing directory is valid is not what a documentation example is about.
var relPaths = regexp.MustCompile(`(?m)^\s*(root|file|access)\s*=\s*"([^"/-][^"]*|\./[^"]*)"`)

// certPaths finds the relative certificate and key files a block names.
var certPaths = regexp.MustCompile(`(?m)^\s*(certificate|key)\s*=\s*"([^"/][^"]*)"`)

// writeCert writes a certificate for "example.com" and its key.
func writeCert(t *testing.T, cert, key string) {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue([]string{"example.com"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.Write(cert, key); err != nil {
		t.Fatal(err)
	}
}

// TestDocsConfigBlocks loads every hcl block of README.md and DESIGN.md,
// and the sample configuration files, as `forkd -t` does (Check):
// documentation that the code would refuse fails here, not in a user's
// hands. Directories such as /run/forkd, which systemd makes when the
// service starts, may be missing.
func TestDocsConfigBlocks(t *testing.T) {
	for _, sample := range []string{"../config.hcl", "../contrib/config.hcl"} {
		if _, err := Check(sample); err != nil {
			t.Errorf("the sample %s: %v", sample, err)
		}
	}
	for _, doc := range docs {
		blocks := hclBlocks(t, doc)
		if len(blocks) == 0 {
			t.Errorf("%s has no hcl blocks", doc)
		}
		for _, bl := range blocks {
			dir := t.TempDir()
			for _, m := range relPaths.FindAllStringSubmatch(bl.src, -1) {
				p := filepath.Join(dir, m[2])
				if m[1] != "root" {
					p = filepath.Dir(p)
				}
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// Each certificate a block names gets a fresh certificate and
			// the key that follows it.
			certs := certPaths.FindAllStringSubmatch(bl.src, -1)
			for i := 0; i+1 < len(certs); i += 2 {
				cert, key := filepath.Join(dir, certs[i][2]), filepath.Join(dir, certs[i+1][2])
				if err := os.MkdirAll(filepath.Dir(cert), 0o755); err != nil {
					t.Fatal(err)
				}
				writeCert(t, cert, key)
			}
			path := filepath.Join(dir, "config.hcl")
			if err := os.WriteFile(path, []byte(bl.src), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Check(path); err != nil {
				t.Errorf("%s: the hcl block at line %d is not a valid configuration:\n%v", doc, bl.line, err)
			}
		}
	}
}

// TestDocsListEveryKey checks that the hcl blocks of README.md and
// DESIGN.md each write out every key and block the loader accepts.
func TestDocsListEveryKey(t *testing.T) {
	schemas := map[string]*hcl.BodySchema{
		"":         rootSchema,
		"listen":   listenSchema,
		"log":      logSchema,
		"limits":   limitsSchema,
		"metrics":  metricsSchema,
		"site":     siteSchema,
		"route":    routeSchema,
		"static":   staticSchema,
		"proxy":    proxySchema,
		"respond":  respondSchema,
		"health":   healthSchema,
		"tls":      tlsSchema,
		"redirect": redirectSchema,
	}
	for _, doc := range docs {
		var all strings.Builder
		for _, bl := range hclBlocks(t, doc) {
			all.WriteString(bl.src)
		}
		src := all.String()
		for block, s := range schemas {
			for _, a := range s.Attributes {
				if !regexp.MustCompile(`(?m)^\s*` + a.Name + `\s*=`).MatchString(src) {
					t.Errorf("%s: no hcl block writes out %s%s", doc, prefix(block), a.Name)
				}
			}
			for _, b := range s.Blocks {
				if !regexp.MustCompile(`(?m)^\s*` + b.Type + `\s*["{]`).MatchString(src) {
					t.Errorf("%s: no hcl block has a %s%s block", doc, prefix(block), b.Type)
				}
			}
		}
	}
}

func prefix(block string) string {
	if block == "" {
		return ""
	}
	return block + "."
}
