package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// The checks in this file look at the machine, not only at the text: they
// find what would otherwise stop every worker from booting (a static root
// that is missing, a log directory that does not exist) or the master from
// starting them (a user or group unknown to this system), so that forkd -t,
// the master's start and a reload refuse the configuration with its
// file:line instead of starting workers that crash in a loop.

// checkStaticRoot checks that root, an absolute path, is a directory, as
// the worker opens it at boot.
func checkStaticRoot(root string) error {
	fi, err := os.Stat(root)
	switch {
	case notExist(err):
		return fmt.Errorf("the directory %q does not exist", root)
	case err != nil:
		return fmt.Errorf("cannot check the directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("%q is not a directory", root)
	}
	return nil
}

// checkLogPath checks that the log file at p ("" or "-": stderr) can be
// created: forkd creates the file, not the directory that holds it.
func checkLogPath(p string) error {
	if p == "" || p == "-" {
		return nil
	}
	dir := filepath.Dir(p)
	fi, err := os.Stat(dir)
	switch {
	case notExist(err):
		return fmt.Errorf("the directory %q does not exist; forkd creates the log file but not its directory", dir)
	case err != nil:
		return fmt.Errorf("cannot check the log directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("%q, which should hold the log file, is not a directory", dir)
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("%q is a directory, not a file", p)
	}
	return nil
}

// noDirError is checkFileDir's error for a directory that does not exist
// (as opposed to a path that is not a directory).
type noDirError struct{ dir, file string }

func (e *noDirError) Error() string {
	return fmt.Sprintf("the directory %q does not exist; forkd creates %q but not its directory", e.dir, e.file)
}

// checkFileDir checks that the directory that is to hold p, a file the
// master creates (pidfile, control socket, unix socket), exists; "" is no
// file.
func checkFileDir(p string) error {
	if p == "" {
		return nil
	}
	dir := filepath.Dir(p)
	fi, err := os.Stat(dir)
	switch {
	case notExist(err):
		return &noDirError{dir: dir, file: filepath.Base(p)}
	case err != nil:
		return fmt.Errorf("cannot check the directory %q: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%q, which should hold %q, is not a directory", dir, filepath.Base(p))
	}
	return nil
}

// notExist reports whether err says that a path, or one of the directories
// on the way to it, does not exist.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// checkUser checks that name ("" = none) is a user of this system. A
// numeric id is taken as it is written.
func checkUser(name string) error {
	if name == "" || isID(name) {
		return nil
	}
	_, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		return fmt.Errorf("no user named %q exists on this system", name)
	}
	if err != nil {
		return fmt.Errorf("cannot look up the user %q: %w", name, err)
	}
	return nil
}

// checkGroup checks that name ("" = none) is a group of this system. A
// numeric id is taken as it is written.
func checkGroup(name string) error {
	if name == "" || isID(name) {
		return nil
	}
	_, err := user.LookupGroup(name)
	if errors.As(err, new(user.UnknownGroupError)) {
		return fmt.Errorf("no group named %q exists on this system", name)
	}
	if err != nil {
		return fmt.Errorf("cannot look up the group %q: %w", name, err)
	}
	return nil
}

// isID reports whether s is a numeric user or group id.
func isID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
