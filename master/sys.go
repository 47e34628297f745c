package master

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

func clockGettime(ts *syscall.Timespec) error {
	var t unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &t); err != nil {
		return err
	}
	ts.Sec, ts.Nsec = t.Sec, t.Nsec
	return nil
}

// credential returns the user and group workers run as: set only when the
// master runs as root and the configuration names a user. Supplementary
// groups are cleared.
func (m *Master) credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 || m.cfg.User == "" {
		return nil, nil
	}
	uid, gid, err := lookupIDs(m.cfg.User, m.cfg.Group)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}, nil
}

// lookupIDs resolves a user (name or number) and an optional group; without
// a group the user's primary group is used.
func lookupIDs(userName, groupName string) (uint32, uint32, error) {
	u, err := user.Lookup(userName)
	if err != nil {
		if _, nerr := strconv.Atoi(userName); nerr == nil {
			u, err = user.LookupId(userName)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("user %q: %w", userName, err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			if _, nerr := strconv.Atoi(groupName); nerr == nil {
				g, err = user.LookupGroupId(groupName)
			}
			if err != nil {
				return 0, 0, fmt.Errorf("group %q: %w", groupName, err)
			}
		}
		gid, _ = strconv.ParseUint(g.Gid, 10, 32)
	}
	return uint32(uid), uint32(gid), nil
}

// prepareLogFiles creates the log files workers append to and, when workers
// drop privileges, hands them to the worker user, so a worker can open them
// at boot and after USR1 even in a directory it cannot write.
func (m *Master) prepareLogFiles() {
	cred, err := m.credential()
	if err != nil || cred == nil {
		return
	}
	for _, p := range []string{m.cfg.Log.File, m.cfg.Log.Access} {
		if p == "" || p == "-" {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			m.log.Warn("cannot create log file for workers", "path", p, "error", err)
			continue
		}
		if err := f.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			m.log.Warn("cannot hand log file to the worker user", "path", p, "error", err)
		}
		f.Close()
	}
}
