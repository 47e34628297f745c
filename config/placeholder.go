package config

import (
	"errors"
	"fmt"
	"strings"
)

// Placeholder is what a {name} in a template stands for: the redirect
// location now, and header values and rate-limit keys as they come. The
// names are listed here once; config checks them and serve expands them.
type Placeholder uint8

// The placeholders of a template (Literal is the text between them).
const (
	Literal               Placeholder = iota // TemplatePart.Text as written
	PlaceholderHost                          // {host}: the Host header without its port
	PlaceholderPort                          // {port}: the port the client connected to
	PlaceholderScheme                        // {scheme}: "http" or "https"
	PlaceholderURI                           // {uri}: {path}, then "?" and {query} when there is one
	PlaceholderPath                          // {path}: the normalised request path
	PlaceholderQuery                         // {query}: the query as received, without "?"
	PlaceholderRemoteAddr                    // {remote_addr}: the client's IP address (after PROXY protocol)
	PlaceholderHeader                        // {header.NAME}: the first NAME field; TemplatePart.Text is NAME
)

// placeholderNames maps each {name} to its Placeholder.
var placeholderNames = [...]struct {
	name string
	p    Placeholder
}{
	{"{host}", PlaceholderHost},
	{"{port}", PlaceholderPort},
	{"{scheme}", PlaceholderScheme},
	{"{uri}", PlaceholderURI},
	{"{path}", PlaceholderPath},
	{"{query}", PlaceholderQuery},
	{"{remote_addr}", PlaceholderRemoteAddr},
}

// headerPrefix begins the {header.NAME} placeholder.
const headerPrefix = "{header."

// TemplatePart is a literal or a placeholder of a parsed template.
type TemplatePart struct {
	Kind Placeholder
	Text string // the literal, or the header name of PlaceholderHeader
}

// ErrPlaceholder is the error ParseTemplate wraps for a {name} it does not
// know.
var ErrPlaceholder = errors.New("unknown placeholder")

// ParseTemplate splits s into literals and placeholders. Every "{...}"
// without a brace inside must be a known placeholder; a brace that opens
// nothing stays literal. The error wraps ErrPlaceholder.
func ParseTemplate(s string) ([]TemplatePart, error) {
	var parts []TemplatePart
	lit := 0 // start of the literal being gathered
	for i := 0; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		end := strings.IndexAny(s[i+1:], "{}")
		if end < 0 || s[i+1+end] != '}' {
			continue // a brace that opens nothing
		}
		ph := s[i : i+1+end+1]
		part, ok := placeholderPart(ph)
		if !ok {
			return nil, fmt.Errorf("%w %s; a template may use {host}, {port}, {scheme}, {uri}, {path}, {query}, {remote_addr} and {header.NAME}", ErrPlaceholder, ph)
		}
		if lit < i {
			parts = append(parts, TemplatePart{Kind: Literal, Text: s[lit:i]})
		}
		parts = append(parts, part)
		i += len(ph) - 1
		lit = i + 1
	}
	if lit < len(s) {
		parts = append(parts, TemplatePart{Kind: Literal, Text: s[lit:]})
	}
	return parts, nil
}

// placeholderPart recognises one "{name}".
func placeholderPart(ph string) (TemplatePart, bool) {
	for _, n := range placeholderNames {
		if ph == n.name {
			return TemplatePart{Kind: n.p}, true
		}
	}
	if name, ok := strings.CutPrefix(ph, headerPrefix); ok {
		name = strings.TrimSuffix(name, "}")
		if isToken(name) {
			return TemplatePart{Kind: PlaceholderHeader, Text: name}, true
		}
	}
	return TemplatePart{}, false
}
