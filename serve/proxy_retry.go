package serve

import (
	"errors"
	"net/http"

	"github.com/forkd/forkd/protocol/upstream"
)

// idempotent reports whether a method may be sent twice (RFC 9110 §9.2.2).
func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// attempt is what the retry decision needs to know of one failed try at an
// upstream.
type attempt struct {
	err error // from the pool (connecting) or from Conn.Do
	// connecting: err came from getting a connection, so nothing of the
	// request was sent.
	connecting bool
	reused     bool // the connection came from the pool
	// replayable: the whole body is at hand to be sent again (there is
	// none, or it was read whole); a streamed body is partly gone.
	replayable bool
	idempotent bool // the method may be sent twice
}

// The ways on after a failed attempt.
const (
	retryNone  = iota // answer the client with retryDecision.status
	retryNext         // another upstream (this one is marked tried)
	retryFresh        // the same pick again, on a new connection
)

// retryDecision is what follows a failed attempt.
type retryDecision struct {
	next int
	// status answers the client when next is retryNone; 0 when the
	// protocol answers (the client's body failed).
	status int
	// blame, when set, is the failure counted against the upstream
	// (max_fails) and logged; note is a debug line for one that is not.
	blame, note string
}

// shouldRetry decides what follows a failed attempt, as nginx's
// proxy_next_upstream "error timeout" with non_idempotent off and net/http's
// shouldRetryRequest do:
//
//   - a connect failure sent nothing: any request goes to the next upstream;
//   - a pooled connection the upstream had closed while idle never carried
//     the request: it goes again on a new connection, the upstream not to
//     blame, unless part of a streamed body is gone with it;
//   - a connection closed or reset before any response byte (nginx's
//     "error") sends an idempotent request with its whole body to the next
//     upstream; anything else may have had effects, and is a 502;
//   - a timeout is a 504, not retried: the upstream may still be working on
//     it; a malformed response is a 502, not retried;
//   - the client's body failing is the client's: no retry, no blame.
func shouldRetry(a attempt) retryDecision {
	switch {
	case a.connecting:
		return retryDecision{next: retryNext, blame: "upstream connect failed"}
	case errors.Is(a.err, upstream.ErrRequestBody):
		return retryDecision{next: retryNone, note: "request body read failed"}
	case errors.Is(a.err, upstream.ErrNoResponse) && a.reused:
		if a.replayable {
			return retryDecision{next: retryFresh}
		}
		return retryDecision{next: retryNone, status: http.StatusBadGateway,
			note: "stale pooled connection; a streamed body cannot be sent again"}
	case errors.Is(a.err, upstream.ErrTimeout):
		return retryDecision{next: retryNone, status: http.StatusGatewayTimeout, blame: "upstream timed out"}
	case errors.Is(a.err, upstream.ErrNoResponse) && a.replayable && a.idempotent:
		return retryDecision{next: retryNext, blame: "upstream request failed"}
	}
	return retryDecision{next: retryNone, status: http.StatusBadGateway, blame: "upstream request failed"}
}
