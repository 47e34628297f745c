package serve

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
	"github.com/forkd/forkd/protocol/upstream"
)

// TestShouldRetry lists each failure of an attempt with what follows it,
// and why.
func TestShouldRetry(t *testing.T) {
	refused := fmt.Errorf("%w: %w", upstream.ErrDial, syscall.ECONNREFUSED)
	dialTimeout := fmt.Errorf("%w: i/o timeout", upstream.ErrDial)
	reset := fmt.Errorf("%w: %w", upstream.ErrNoResponse, syscall.ECONNRESET)
	timeout := fmt.Errorf("%w: waiting for the head", upstream.ErrTimeout)
	malformed := fmt.Errorf("%w: bad status line", upstream.ErrBadResponse)
	clientBody := fmt.Errorf("%w: %w", upstream.ErrRequestBody, syscall.ECONNRESET)
	const blameReq = "upstream request failed"
	for _, tc := range []struct {
		why  string
		a    attempt
		want retryDecision
	}{
		{"connect refused: nothing was sent, so even a streamed POST goes to the next upstream",
			attempt{err: refused, connecting: true},
			retryDecision{next: retryNext, blame: "upstream connect failed"}},
		{"connect timed out: the same",
			attempt{err: dialTimeout, connecting: true, replayable: true, idempotent: true},
			retryDecision{next: retryNext, blame: "upstream connect failed"}},
		{"a stale pooled connection never carried the request: again, fresh, no blame",
			attempt{err: reset, reused: true, replayable: true},
			retryDecision{next: retryFresh}},
		{"stale, and a non-idempotent POST read whole: again too (it never arrived)",
			attempt{err: reset, reused: true, replayable: true, idempotent: false},
			retryDecision{next: retryFresh}},
		{"stale, but part of a streamed body is gone with it: 502",
			attempt{err: reset, reused: true, idempotent: true},
			retryDecision{next: retryNone, status: http.StatusBadGateway,
				note: "stale pooled connection; a streamed body cannot be sent again"}},
		{"reset before any response on a new connection, idempotent, body at hand: next upstream",
			attempt{err: reset, replayable: true, idempotent: true},
			retryDecision{next: retryNext, blame: blameReq}},
		{"reset before any response, POST: it may have had effects, 502",
			attempt{err: reset, replayable: true},
			retryDecision{next: retryNone, status: http.StatusBadGateway, blame: blameReq}},
		{"reset before any response, idempotent but streamed: cannot be sent again, 502",
			attempt{err: reset, idempotent: true},
			retryDecision{next: retryNone, status: http.StatusBadGateway, blame: blameReq}},
		{"timeout: the upstream may still be at it, 504, not retried",
			attempt{err: timeout, replayable: true, idempotent: true},
			retryDecision{next: retryNone, status: http.StatusGatewayTimeout, blame: "upstream timed out"}},
		{"timeout on a pooled connection: still 504",
			attempt{err: timeout, reused: true, replayable: true, idempotent: true},
			retryDecision{next: retryNone, status: http.StatusGatewayTimeout, blame: "upstream timed out"}},
		{"a malformed response is not retried: 502",
			attempt{err: malformed, replayable: true, idempotent: true},
			retryDecision{next: retryNone, status: http.StatusBadGateway, blame: blameReq}},
		{"a malformed response on a pooled connection: 502 too",
			attempt{err: malformed, reused: true, replayable: true, idempotent: true},
			retryDecision{next: retryNone, status: http.StatusBadGateway, blame: blameReq}},
		{"the client's body failed: the protocol answers, the upstream is not to blame",
			attempt{err: clientBody, reused: true, idempotent: true},
			retryDecision{next: retryNone, note: "request body read failed"}},
	} {
		if got := shouldRetry(tc.a); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.why, got, tc.want)
		}
	}
}

// TestDownUpstreams: an upstream that refused max_fails connections is
// listed down (once, though two routes use it) until fail_timeout; one
// that answers is not; the list is bounded by max.
func TestDownUpstreams(t *testing.T) {
	refused := refusedAddr(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	up := upstreamAddr(srv)
	px := config.Proxy{Upstreams: []string{refused, up}, MaxFails: 1, FailTimeout: time.Hour,
		Keepalive: config.DefaultKeepalive, RetryBodyBuffer: config.DefaultRetryBodyBuffer}
	px2 := px
	h := newHandler(t, []config.Site{{Name: "p", Hosts: []string{"*"}, Routes: []config.Route{
		{Prefix: "/", Proxy: &px}, {Prefix: "/b/", Proxy: &px2},
	}}}, Options{})
	addr := startServer(t, h, nil)
	if got := DownUpstreams(h, time.Now(), 8); len(got) != 0 {
		t.Fatalf("before any request: %v", got)
	}
	for _, p := range []string{"/", "/", "/b/", "/b/"} { // round robin reaches the refused one on each route
		get(t, addr, "GET", p)
	}
	if got := DownUpstreams(h, time.Now(), 8); !slices.Equal(got, []string{refused}) {
		t.Fatalf("DownUpstreams = %v, want [%s]", got, refused)
	}
	if got := DownUpstreams(h, time.Now().Add(2*time.Hour), 8); len(got) != 0 {
		t.Fatalf("after fail_timeout: %v", got)
	}
	if got := DownUpstreams(h, time.Now(), 0); len(got) != 0 {
		t.Fatalf("max 0: %v", got)
	}
	if got := DownUpstreams(protocol.HandlerFunc(func(*protocol.ResponseWriter, *protocol.Request) {}), time.Now(), 8); got != nil {
		t.Fatalf("a handler New did not make: %v", got)
	}
}
