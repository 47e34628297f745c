package config

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/hashicorp/hcl/v2"

	"github.com/forkd/forkd/internal/testcert"
)

// docs returns the Markdown files whose hcl blocks are configuration
// examples: README.md and every .md file under docs/.
func docs(t *testing.T) []string {
	t.Helper()
	out := []string{"../README.md"}
	err := filepath.WalkDir("../docs", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".md") {
			out = append(out, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The reference and the contract must each hold hcl blocks.
const (
	referenceDoc = "../docs/configuration.md"
	designDoc    = "../docs/DESIGN.md"
)

// aheadOfCode is the heading of docs/DESIGN.md under which the contract
// describes keys the code does not have yet (listen.name, protocols, http2,
// compress, rate_limit, ...): the contract runs ahead of the code there, so
// its hcl blocks are not loaded (they would fail until the keys exist).
// Everywhere else, docs/configuration.md included, which holds only
// implemented keys, every hcl block must load.
const aheadOfCode = "## Third wave: additions to the contract"

// hclBlock is one ```hcl fenced block of a document.
type hclBlock struct {
	line    int    // of the opening fence
	section string // the level-2 heading above it ("" before the first)
	heading string // the nearest heading above it, of any level
	src     string
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
	var section, heading string
	for i, line := range strings.Split(string(b), "\n") {
		m := fence.FindStringSubmatch(line)
		switch {
		case cur != nil && m != nil && m[1] == "":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.src += line + "\n"
		case m != nil && m[1] == "hcl":
			cur = &hclBlock{line: i + 1, section: section, heading: heading}
		case m != nil:
			// Another language: skip to its closing fence by treating it
			// as a block that is dropped.
			cur = &hclBlock{line: -1}
		case strings.HasPrefix(line, "#"):
			heading = line
			if strings.HasPrefix(line, "## ") {
				section = line
			}
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

// namedFiles finds the relative htpasswd files and error pages a block
// names.
var namedFiles = regexp.MustCompile(`(?m)(?:htpasswd\s*=\s*|"\d{3}"\s*=\s*)"([^"/][^"]*)"`)

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

// TestDocsConfigBlocks loads every hcl block of README.md and of the
// Markdown files under docs/, and the sample configuration files, as
// `forkd -t` does (Check): documentation that the code would refuse fails
// here, not in a user's hands. Directories such as /run/forkd, which
// systemd makes when the service starts, may be missing. Only the blocks of
// DESIGN.md's aheadOfCode section are left out.
func TestDocsConfigBlocks(t *testing.T) {
	if _, err := Check("../config.hcl"); err != nil {
		t.Errorf("the sample ../config.hcl: %v", err)
	}
	// The installed configuration needs what contrib/install.sh makes on
	// the machine it installs on (user forkd, /var/log/forkd), which
	// test/install_test.go checks there; here, all but this machine.
	if _, err := LoadControl("../contrib/config.hcl"); err != nil {
		t.Errorf("the sample ../contrib/config.hcl: %v", err)
	}
	for _, doc := range docs(t) {
		blocks := hclBlocks(t, doc)
		if len(blocks) == 0 && (doc == referenceDoc || doc == designDoc) {
			t.Errorf("%s has no hcl blocks", doc)
		}
		for _, bl := range blocks {
			if doc == designDoc && bl.section == aheadOfCode {
				continue
			}
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
			// Files a block names (htpasswd files, error pages) exist,
			// empty.
			for _, m := range namedFiles.FindAllStringSubmatch(bl.src, -1) {
				p := filepath.Join(dir, m[1])
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o644); err != nil {
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

// schemas are the loader's body schemas, by the block they decode ("" for
// the file's top level) and by the name of their variable in this package.
// TestDocsSchemasComplete checks that no schema is missing here, so that a
// new key or block fails TestDocsListEveryKey until it is documented.
var schemas = []struct {
	block, name string
	schema      *hcl.BodySchema
}{
	{"", "rootSchema", rootSchema},
	{"listen", "listenSchema", listenSchema},
	{"tls", "tlsSchema", tlsSchema},
	{"log", "logSchema", logSchema},
	{"limits", "limitsSchema", limitsSchema},
	{"metrics", "metricsSchema", metricsSchema},
	{"http2", "http2Schema", http2Schema},
	{"site", "siteSchema", siteSchema},
	{"route", "routeSchema", routeSchema},
	{"static", "staticSchema", staticSchema},
	{"proxy", "proxySchema", proxySchema},
	{"respond", "respondSchema", respondSchema},
	{"health", "healthSchema", healthSchema},
	{"redirect", "redirectSchema", redirectSchema},
	{"headers", "headersSchema", headersSchema},
	{"basic_auth", "basicAuthSchema", basicAuthSchema},
	{"request_headers", "requestHeadersSchema", requestHeadersSchema},
	{"compress", "compressSchema", compressSchema},
	{"rate_limit", "rateLimitSchema", rateLimitSchema},
	{"shared", "sharedSchema", sharedSchema},
}

// TestDocsSchemasComplete checks that schemas holds every hcl.BodySchema
// variable of the package's source and every block type a schema names.
func TestDocsSchemasComplete(t *testing.T) {
	known := make(map[string]bool)
	blocks := make(map[string]bool)
	for _, s := range schemas {
		known[s.name] = true
		blocks[s.block] = true
	}
	for _, s := range schemas {
		for _, b := range s.schema.Blocks {
			if !blocks[b.Type] {
				t.Errorf("the %s block (in %s) has no entry in schemas", b.Type, s.name)
			}
		}
	}
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range vs.Values {
				if isBodySchema(v) {
					found++
					if !known[vs.Names[i].Name] {
						t.Errorf("%s: the schema %s has no entry in schemas", fset.Position(vs.Pos()), vs.Names[i].Name)
					}
				}
			}
			return true
		})
	}
	if found < len(schemas) {
		t.Errorf("found %d hcl.BodySchema variables in the source, want at least %d", found, len(schemas))
	}
}

// isBodySchema reports whether e is &hcl.BodySchema{...}.
func isBodySchema(e ast.Expr) bool {
	u, ok := e.(*ast.UnaryExpr)
	if !ok || u.Op != token.AND {
		return false
	}
	cl, ok := u.X.(*ast.CompositeLit)
	if !ok {
		return false
	}
	sel, ok := cl.Type.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "BodySchema"
}

// TestDocsListEveryKey checks that the configuration reference,
// docs/configuration.md, documents every key and block the loader accepts:
// each is written out in one of its hcl blocks and has a row in the table
// of its block's section (the section whose heading starts with the block's
// name in backquotes; "Top-level keys" for the top level). The contract,
// docs/DESIGN.md, must write each out in an hcl block too.
func TestDocsListEveryKey(t *testing.T) {
	ref, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	sections := headingSections(string(ref))
	for _, doc := range []string{referenceDoc, designDoc} {
		var all strings.Builder
		for _, bl := range hclBlocks(t, doc) {
			all.WriteString(bl.src)
		}
		src := all.String()
		for _, s := range schemas {
			for _, a := range s.schema.Attributes {
				if !regexp.MustCompile(`(?m)^\s*` + a.Name + `\s*=`).MatchString(src) {
					t.Errorf("%s: no hcl block writes out %s%s", doc, prefix(s.block), a.Name)
				}
			}
			for _, b := range s.schema.Blocks {
				if !regexp.MustCompile(`(?m)^\s*` + b.Type + `\s*["{]`).MatchString(src) {
					t.Errorf("%s: no hcl block has a %s%s block", doc, prefix(s.block), b.Type)
				}
			}
		}
	}
	for _, s := range schemas {
		want := "`" + s.block + "`"
		if s.block == "" {
			want = "Top-level keys"
		}
		text, ok := sections[want]
		if !ok {
			t.Errorf("%s: no heading starts with %s", referenceDoc, want)
			continue
		}
		for _, a := range s.schema.Attributes {
			if !strings.Contains(text, "\n| `"+a.Name+"` |") {
				t.Errorf("%s: the section %s has no table row for %s%s", referenceDoc, want, prefix(s.block), a.Name)
			}
		}
	}
}

// headingSections maps the start of each heading's text (its first word,
// or a backquoted name, or "Top-level keys") to the text that follows it up
// to the next heading.
func headingSections(doc string) map[string]string {
	out := make(map[string]string)
	var key string
	var text strings.Builder
	flush := func() {
		if key != "" {
			if _, dup := out[key]; !dup {
				out[key] = text.String()
			}
		}
		text.Reset()
	}
	for _, line := range strings.Split(doc, "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			flush()
			h = strings.TrimLeft(h, "# ")
			switch {
			case strings.HasPrefix(h, "Top-level keys"):
				key = "Top-level keys"
			case strings.HasPrefix(h, "`"):
				end := strings.IndexByte(h[1:], '`')
				key = h[:end+2]
			default:
				key = h
			}
			continue
		}
		text.WriteString("\n" + line)
	}
	flush()
	return out
}

func prefix(block string) string {
	if block == "" {
		return ""
	}
	return block + "."
}

// mdLink matches an inline Markdown link or image: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsLinks checks that every relative link of README.md and of the
// Markdown files under docs/ names a file or directory of the repository,
// and that a #fragment names a heading of the Markdown file it points at
// (GitHub's anchors: lower case, punctuation dropped, spaces as dashes).
func TestDocsLinks(t *testing.T) {
	for _, doc := range docs(t) {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		inCode := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "```") {
				inCode = !inCode
			}
			if inCode {
				continue
			}
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, frag, _ := strings.Cut(target, "#")
				path := doc
				if file != "" {
					path = filepath.Join(filepath.Dir(doc), file)
				}
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s:%d: the link %s names no file: %v", doc, i+1, target, err)
					continue
				}
				if frag != "" && strings.HasSuffix(path, ".md") && !anchors(t, path)[frag] {
					t.Errorf("%s:%d: the link %s names no heading of %s", doc, i+1, target, path)
				}
			}
		}
	}
}

// anchors returns the GitHub anchors of the headings of a Markdown file.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]bool)
	seen := make(map[string]int)
	inCode := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		var a strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#"))) {
			switch {
			case r == ' ':
				a.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				a.WriteRune(r)
			}
		}
		anchor := a.String()
		if n := seen[anchor]; n > 0 {
			out[fmt.Sprintf("%s-%d", anchor, n)] = true
		} else {
			out[anchor] = true
		}
		seen[anchor]++
	}
	return out
}
