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
	line, err := exchange(path, req, timeout)
	if err != nil {
		return Response{}, err
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control: decoding response: %w", err)
	}
	return resp, nil
}

// CallStatus sends CmdStatus like Call and also returns the status object's
// raw JSON, so that a client can show fields its own Status type does not
// have (those of a newer master).
func CallStatus(path string, timeout time.Duration) (Response, json.RawMessage, error) {
	line, err := exchange(path, Request{Cmd: CmdStatus}, timeout)
	if err != nil {
		return Response{}, nil, err
	}
	var raw struct {
		Response
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return Response{}, nil, fmt.Errorf("control: decoding response: %w", err)
	}
	resp := raw.Response
	if len(raw.Status) > 0 && string(raw.Status) != "null" {
		resp.Status = new(Status)
		if err := json.Unmarshal(raw.Status, resp.Status); err != nil {
			return Response{}, nil, fmt.Errorf("control: decoding status: %w", err)
		}
	}
	return resp, raw.Status, nil
}

// exchange sends req and returns the master's one-line answer.
func exchange(path string, req Request, timeout time.Duration) ([]byte, error) {
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
			return nil, fmt.Errorf("%w (control socket %s)", ErrNoMaster, path)
		}
		return nil, fmt.Errorf("control: %w", err) // err names the socket
	}
	defer c.Close()
	c.SetDeadline(deadline)

	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("control: encoding request: %w", err)
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("control: sending request: %w", err)
	}
	line, err := bufio.NewReader(io.LimitReader(c, maxResponseBytes)).ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("control: master closed the connection without answering")
		}
		return nil, fmt.Errorf("control: reading response: %w", err)
	}
	return line, nil
}
