// Credentials: the user and group workers run as, and the log files they may write.

package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/forkd/forkd/config"
)

// credential returns the user and group workers run as: set only when the
// master runs as root and the configuration names a user. Supplementary
// groups are cleared.
func credential(cfg *config.Config) (*syscall.Credential, error) {
	if os.Geteuid() != 0 || cfg.User == "" {
		return nil, nil
	}
	uid, gid, err := lookupIDs(cfg.User, cfg.Group)
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
// drop privileges, makes them the workers' too, so a worker can open them at
// boot and after USR1 even in a directory it cannot write. Each file stays
// the master's (it opens them again on reload and USR1) and becomes its
// workers' group's, mode 0660: neither side then needs CAP_DAC_OVERRIDE,
// which the packaged unit does not grant; CAP_CHOWN is enough.
func (m *Master) prepareLogFiles() {
	cred, err := credential(m.cfg)
	if err != nil || cred == nil {
		return
	}
	for _, p := range []string{m.cfg.Log.File, m.cfg.Log.Access} {
		if p == "" || p == "-" {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o640)
		if err == nil {
			f.Close()
		} else if !errors.Is(err, fs.ErrExist) {
			m.log.Warn("cannot create log file for workers", "path", p, "error", err)
			continue
		}
		// By path, not by descriptor: a file a previous version handed to
		// the workers' user is not one root may open without
		// CAP_DAC_OVERRIDE. Chown first, so that the master owns it when
		// it changes the mode.
		if err := os.Chown(p, os.Geteuid(), int(cred.Gid)); err != nil {
			m.log.Warn("cannot hand log file to the worker group", "path", p, "error", err)
			continue
		}
		if err := os.Chmod(p, 0o660); err != nil {
			m.log.Warn("cannot make log file writable by the worker group", "path", p, "error", err)
		}
	}
}
