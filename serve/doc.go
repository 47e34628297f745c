// Package serve is what workers serve: sites chosen by Host, routes by the
// longest prefix, and per route static files, a reverse proxy, a fixed
// response or a redirect; plus the access log.
//
// # Routing
//
// A request first selects a site by its Host header, with any port removed
// and compared case-insensitively: an exact host name wins, then the longest
// matching wildcard ("*.example.com" matches "a.example.com" and
// "a.b.example.com" but not "example.com"), then a site listing "*". A site
// with no hosts is treated as listing "*".
//
// Within the site the longest matching route prefix wins. Prefixes match on
// segment boundaries: a prefix that ends in "/" ("/api/") matches every path
// that starts with it ("/api/", "/api/x") but not "/api"; any other prefix
// ("/healthz") matches the path equal to it and the paths below it
// ("/healthz/", "/healthz/x") but not "/healthzz". The prefix "/" matches
// every path.
//
// Routing uses the request path percent-decoded (an encoded slash %2F counts
// as a separator here) with "." and ".." segments and repeated slashes
// resolved (RFC 3986 section 5.2.4), so that what is routed is what an
// upstream or the file system will see. A path with a bad percent-escape or
// a NUL byte is answered 400. The tables are built once by New; routing a
// request allocates nothing.
//
// Requests no route matches go to Options.Fallback; without one they get the
// built-in welcome page and /healthz when the configuration has no sites,
// else 404 (through the site's middleware, below).
//
// Before the Host, the listener: when a site names the listeners it serves
// (site.listen), each listener gets a router of its own sites, chosen by
// the connection's local address (listeners.go); otherwise there is one
// router and no address is looked at.
//
// # Route middleware
//
// Headers, error pages, allow/deny, basic_auth and request IDs are small
// wrappers around a route's handler, one file each (headers.go,
// errorpages.go, access.go, basicauth.go, requestid.go), put together in
// one place, compose in compose.go, in the order a request meets them. A
// route that uses none of them is its handler, with nothing in front.
// Header changes are made in a protocol.HeadHook, just before the head is
// written, so they reach every response, errors included. None of them
// makes a route leave its event loop but a bcrypt comparison, which calls
// WillBlock first; verified credentials are remembered per worker.
//
// # Static files
//
// The cleaned request path is appended to the root as it is, the way
// nginx's "root" works: with route "/assets/" and root "/srv/www",
// "/assets/app.css" is "/srv/www/assets/app.css". Files are opened relative
// to a descriptor of the root with openat2(2) and
// RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS, so no "..", absolute symlink or
// symlink climbing out of the root is ever followed (symlinks that stay
// inside are); where the kernel lacks openat2 (before Linux 5.6) os.Root
// does the same walk in user space. Paths with an encoded slash (%2F) or a
// backslash are refused, and so are dotfiles (any segment starting with '.',
// ".well-known" included) unless dotfiles = true. Refused paths and missing
// files are both 404, so that a client cannot tell them apart; unreadable
// files are 403. Only GET and HEAD are served; other methods get 405 with
// Allow.
//
// There are no directory listings: a directory is served through its first
// existing index file, else 404; a directory named without its trailing
// slash is redirected (301) to the name with one.
//
// Validators are a strong ETag built from the file's modification time and
// size, and Last-Modified; conditional requests follow RFC 9110 section
// 13.2.2 (If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since).
// A single byte range (RFC 9110 section 14) is served as 206 with
// Content-Range, honouring If-Range; an unsatisfiable one is 416 with
// "Content-Range: bytes */size". A request for several ranges gets the whole
// file with 200, which RFC 9110 section 14.2 allows and which spares building
// multipart/byteranges bodies; malformed ranges are ignored the same way.
// Bodies go out with sendfile(2).
//
// With gzip = true, a client whose Accept-Encoding accepts gzip gets
// "name.gz" instead of "name" when that file exists, with
// Content-Encoding: gzip, the type of "name", and its own ETag; every
// response then carries Vary: Accept-Encoding.
//
// # Reverse proxy
//
// A proxy route talks HTTP/1.1 to its upstreams ("host:port" or
// "unix:/path") with forkd's own client, protocol/upstream, never
// net/http's Transport. Each worker keeps, per upstream, up to keepalive
// idle connections (nginx's upstream keepalive), reused by every request,
// for at most keepalive_timeout (then closed in the background, so that
// the upstream sees them end; one idle for a second or more is peeked at
// before use, so that one the upstream closed meanwhile is not used);
// a response with Connection: close, an HTTP/1.0 response without
// keep-alive, a body delimited by the connection's end, or one not read to
// its end closes its connection instead. Responses are parsed as strictly
// as requests: Content-Length with Transfer-Encoding, a repeated or
// malformed Content-Length, or any transfer coding but one "chunked" is a
// 502, and the connection is closed, never pooled; so is a head over
// limits.header_bytes or limits.header_count.
//
// Each request picks its upstream: smooth weighted round robin (nginx's
// order; weights default to 1) or least_conn (fewest requests in flight per
// weight, ties in turn). A request that failed before any byte of the
// response reached the client is sent again:
//
//   - a failed connect (refused, timed out): to the next upstream, any
//     method, since nothing was sent;
//   - a pooled connection that ends or is reset before any response byte
//     (the upstream closed it while idle): on a new connection, when the
//     request's body is empty or was read whole (up to
//     retry_body_buffer bytes; longer bodies stream and cannot be sent
//     twice, so a pooled connection is first checked with a peek at its
//     socket, and a closed one is replaced by a new connection);
//   - a fresh connection that ends before any response byte: to the next
//     upstream, when the method is idempotent and the body was read whole.
//
// A malformed response and a response timeout are not retried (502, 504),
// nor is anything once the response head went out. A body that fails
// before any of the response reached the client (a malformed first chunk
// that came with the head) is a 502 as well. Failures (connects,
// timeouts, resets, malformed responses; not stale pooled connections)
// count against the upstream as nginx's max_fails: max_fails of them
// within fail_timeout take it out of the rotation for fail_timeout. When
// every upstream is down or has failed this request, the answer is 502 at
// once. Warnings about one upstream are logged at most once a second, with
// the number left out (suppressed=N).
//
// response_timeout bounds each wait for the upstream without progress:
// sending the request, the response head, and every body read (nginx's
// proxy_send_timeout and proxy_read_timeout). Once the head has been
// forwarded, a failure can only cut the client's connection, so that the
// client sees a truncated response rather than a complete one. Response
// bytes reach the client as the upstream sends them: what has arrived is
// flushed before each wait for more, so server-sent events are not held
// back, and a response that arrives whole goes out in one write.
//
// On a route without error_pages or compress, a request without a body
// (or with a small one, there whole: up to 8 KiB and retry_body_buffer)
// that its worker's event loop serves inline, with an idle connection
// that loop watches, is served by the loop's events, without a goroutine,
// as an nginx worker serves it (proxy_loop.go): the request goes out with
// one nonblocking write, the request is suspended
// (protocol.ResponseWriter.Suspend) while the loop serves other
// connections, and a response whose body (Content-Length, fitting the
// connection's buffer) came whole with its head is sent on the loop.
// Anything else (a dial, a body that did not come with its head and
// streams, one chunked or larger, an upstream that fails, a Shutdown)
// goes on on a goroutine from where the loop left off, with the same
// retries, timeouts, streaming and answers; its client connection then
// goes back to its loop at once (protocol.ResponseWriter.ReturnToLoop).
//
// Hop-by-hop fields (RFC 9110 section 7.6.1) are removed in both
// directions: Connection and the fields it names, Keep-Alive, Proxy-*, TE,
// Trailer, Transfer-Encoding and Upgrade; HTTP2-Settings from requests too.
// A request that asks to upgrade (HTTP/1.1, Upgrade named in Connection)
// to protocols all listed in upgrades (default "websocket"; names compared
// without case, a "/version" ignored) is sent on with Upgrade and
// Connection: upgrade; when the upstream answers 101 naming such a
// protocol, the client's connection is hijacked and bytes are copied both
// ways until both sides have finished, or neither way has moved a byte for
// response_timeout (nginx's proxy_read_timeout on upgraded connections),
// or the handler is closed (the worker does so once its server has shut
// down, which does not wait for hijacked connections); a 101 nobody asked
// for, or to another protocol, is a 502. A request that asks for any other
// protocol goes on as a plain HTTP/1.1 request, its Upgrade removed with
// the hop-by-hop fields, as nginx sends an Upgrade it was not told to
// pass on; the client, which must be ready for a server that does not
// switch, gets the upstream's ordinary answer. "h2c" is never
// tunnelled, whatever upgrades says: an HTTP/2 connection to the upstream
// would carry requests for any of its paths past the routes (h2c
// smuggling). TRACE is answered 405 with Allow and never sent upstream
// (an upstream would echo the request back, cookies and credentials
// included). Both are logged at debug level, without the request's bytes.
//
// Host is the client's (host = "$host") or a fixed name. The forwarding
// fields (X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded,
// X-Real-IP) are believed only from a peer in the listener's trusted list
// (Request.TrustedPeer: the peer that connected, which on a PROXY protocol
// listener is the balancer; every peer of a unix socket): from one,
// X-Forwarded-For gets the client address (Request.RemoteAddr) appended to
// what it sent, in one field, and the others are kept, forkd's own
// X-Forwarded-Proto and X-Forwarded-Host sent only where it sent none.
// From anyone else they are all removed, and X-Forwarded-For is the client
// address alone, X-Forwarded-Proto "https" over a TLS listener (see
// internal/tlsconn) or "http", X-Forwarded-Host the request's Host
// (Caddy's trusted_proxies). via = true adds "Via: 1.1 forkd". The request target is passed on as received when
// its path was already in canonical form, else the cleaned path that was
// routed, re-encoded, so that the upstream sees the path the route
// matched. Request bodies over retry_body_buffer stream, chunked when
// their length is unknown. A body over 16 KiB is sent while the response
// head is awaited: an upstream that answers early (a 413 after the head,
// then a close; a 200 while it reads on; a response larger than the socket
// buffers before it reads the body) has its answer forwarded, the rest of
// the body is not sent, the upstream connection is not reused, and the
// client's connection is closed after the response when part of its body
// was left unread. The wait for the head does not time out while the body
// moves. Trailer fields of a chunked response go on to HTTP/1.1 clients
// (the response is then chunked), less hop-by-hop fields, those the
// response's Connection named and those a trailer may not carry (RFC 9110
// section 6.5.1); HTTP/1.0 clients get the body without them.
//
// # Redirects
//
// A redirect route answers every method with its status (301 by default)
// and an empty body; Location is the configured template with its
// placeholders expanded (template, the same expander that header values and
// rate-limit keys are to use):
//
//   - {host}: the Host header without its port (or, without a Host, the
//     address the request arrived on);
//   - {port}: the port the connection arrived on, from the socket, never
//     from Host (empty on a unix socket);
//   - {scheme}: "https" on a TLS listener, else "http";
//   - {path}: the request path, normalised: as received when it was
//     already canonical, else the path the router cleaned (percent-decoded,
//     "." and ".." resolved as RFC 3986 section 5.2.4 says, repeated and
//     encoded slashes collapsed) encoded again, a backslash as %5C; it
//     never starts with "//" or "/\", which browsers take for another host;
//   - {query}: the query as received, without "?";
//   - {uri}: {path}, then "?" and {query} when the target had a "?";
//   - {remote_addr}: the client's IP address (the PROXY header's source on
//     a PROXY protocol listener); {header.NAME}: the request's first NAME
//     field.
//
// Configuration validation refuses any other {name}.
//
// # Access log
//
// "text" is the combined log format with the pid and the duration in
// milliseconds appended:
//
//	127.0.0.1 - - [02/Jan/2006:15:04:05 -0700] "GET /path?q HTTP/1.1" 200 1234 "referer" "user-agent" pid=123 dur_ms=0.123
//
// "json" is one object per line:
//
//	{"time":"2006-01-02T15:04:05.000-07:00","remote":"127.0.0.1","host":"example.com","method":"GET","path":"/path?q","proto":"HTTP/1.1","status":200,"bytes":1234,"duration":0.000123,"pid":123,"referer":"","ua":"curl/8"}
//
// The time is when the request started; "path" is the request-target as
// received; "bytes" counts body bytes sent; "duration" is in seconds. Bytes
// from the request are never written raw: in text lines every byte outside
// printable ASCII, and '"' and '\', is written as \xHH; in JSON every byte
// outside printable ASCII is written as \u00HH (so non-ASCII text appears
// byte by byte). Each field from the request is cut at 4096 bytes.
package serve
