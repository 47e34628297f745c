package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// DefaultTimeout is the time Call allows for a whole exchange when given a
// timeout of zero.
const DefaultTimeout = 10 * time.Second

// ReloadTimeout is Call's default for CmdReload: the master answers a reload
// only once the new generation's workers are all ready, or it was refused.
const ReloadTimeout = 2 * time.Minute

// maxResponseBytes bounds a response; a status of a thousand workers is
// well under it.
const maxResponseBytes = 16 << 20

// ErrNoMaster is returned, wrapped with the socket's path, by Call when no
// master listens on the control socket.
var ErrNoMaster = errors.New("no forkd master is running")

// Call sends req to the master listening on the control socket at path and
// returns its response. The timeout bounds the whole exchange; zero means
// DefaultTimeout (ReloadTimeout for a reload). A non-nil error means the exchange failed; a master that
// refused the command answers with Response.OK unset, see Response.Err.
// When nothing listens on path the error wraps ErrNoMaster.
func Call(path string, req Request, timeout time.Duration) (Response, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
		if req.Cmd == CmdReload {
			timeout = ReloadTimeout
		}
	}
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return Response{}, fmt.Errorf("%w (control socket %s)", ErrNoMaster, path)
		}
		return Response{}, fmt.Errorf("control: %w", err) // err names the socket
	}
	defer c.Close()
	c.SetDeadline(deadline)

	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("control: encoding request: %w", err)
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("control: sending request: %w", err)
	}
	line, err := bufio.NewReader(io.LimitReader(c, maxResponseBytes)).ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		if errors.Is(err, io.EOF) {
			return Response{}, errors.New("control: master closed the connection without answering")
		}
		return Response{}, fmt.Errorf("control: reading response: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control: decoding response: %w", err)
	}
	return resp, nil
}
