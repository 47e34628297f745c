package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// listenFDsStart is SD_LISTEN_FDS_START: the first passed descriptor.
const listenFDsStart = 3

// systemdEnv lists every variable this package reads. None of them is meant
// for the master's children.
var systemdEnv = [...]string{
	EnvNotifySocket, EnvWatchdogUsec, EnvWatchdogPID,
	EnvListenPID, EnvListenFDs, EnvListenNames,
}

// ListenFDs returns the sockets passed by systemd socket activation, in the
// order systemd passed them (the order of the ListenStream= lines), as files
// whose Name is the descriptor's name from LISTEN_FDNAMES (FileDescriptorName=
// in the .socket unit; systemd's default is the socket unit's name). When
// LISTEN_PID is unset or names another process it returns no files and a nil
// error.
//
// ListenFDs marks every returned descriptor close-on-exec, so a socket is
// passed to a child only when the caller lists it in exec.Cmd.ExtraFiles,
// and unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES in all cases, so the
// sockets are taken exactly once. Call it once, early, before anything else
// opens a file.
func ListenFDs() ([]*os.File, error) {
	pidStr := os.Getenv(EnvListenPID)
	fdsStr := os.Getenv(EnvListenFDs)
	names := os.Getenv(EnvListenNames)
	for _, k := range []string{EnvListenPID, EnvListenFDs, EnvListenNames} {
		os.Unsetenv(k)
	}
	if pidStr == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return nil, fmt.Errorf("sdnotify: invalid %s=%q: %w", EnvListenPID, pidStr, err)
	}
	if pid != os.Getpid() || fdsStr == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("sdnotify: invalid %s=%q", EnvListenFDs, fdsStr)
	}
	var nameList []string
	if names != "" {
		nameList = strings.Split(names, ":")
	}

	files := make([]*os.File, 0, n)
	for i := range n {
		fd := listenFDsStart + i
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return nil, fmt.Errorf("sdnotify: passed descriptor %d: %w", fd, err)
		}
		unix.CloseOnExec(fd)
		// systemd names descriptors "unknown" unless told otherwise; a
		// short LISTEN_FDNAMES leaves the rest with that default.
		name := "unknown"
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		files = append(files, os.NewFile(uintptr(fd), name))
	}
	return files, nil
}

// SocketAddr returns the local address of the socket f in the form forkd's
// listen blocks use: "127.0.0.1:8080", "[::1]:8080" or "unix:/path/to.sock"
// ("unix:@name" for an abstract socket). The master uses it to match sockets
// from ListenFDs to listen blocks. A wildcard address is reported as
// "0.0.0.0:80" or "[::]:80", so callers should resolve configured addresses
// to the same form before comparing.
func SocketAddr(f *os.File) (string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", fmt.Errorf("sdnotify: %s: %w", f.Name(), err)
	}
	var (
		sa    unix.Sockaddr
		saErr error
	)
	if err := rc.Control(func(fd uintptr) {
		sa, saErr = unix.Getsockname(int(fd))
	}); err != nil {
		return "", fmt.Errorf("sdnotify: %s: %w", f.Name(), err)
	}
	if saErr != nil {
		return "", fmt.Errorf("sdnotify: getsockname %s: %w", f.Name(), saErr)
	}
	return FormatSockaddr(sa)
}

// FormatSockaddr formats a socket address the way SocketAddr does.
func FormatSockaddr(sa unix.Sockaddr) (string, error) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port)), nil
	case *unix.SockaddrInet6:
		host := net.IP(a.Addr[:]).String()
		if a.ZoneId != 0 {
			zone := strconv.FormatUint(uint64(a.ZoneId), 10)
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				zone = ifi.Name
			}
			host += "%" + zone
		}
		return net.JoinHostPort(host, strconv.Itoa(a.Port)), nil
	case *unix.SockaddrUnix:
		// x/sys/unix reports an abstract name with a leading '@'.
		return "unix:" + a.Name, nil
	default:
		return "", fmt.Errorf("sdnotify: unsupported socket address type %T", sa)
	}
}

// UnsetEnvironment removes every systemd variable this package reads from
// the process environment (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID,
// LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), so that children started with the
// inherited environment neither notify the service manager nor claim the
// master's sockets. Call it after New and ListenFDs.
func UnsetEnvironment() {
	for _, k := range systemdEnv {
		os.Unsetenv(k)
	}
}

// FilterEnv returns a copy of env, a list of "KEY=VALUE" strings such as
// os.Environ returns, without the variables UnsetEnvironment removes. It
// leaves the process environment alone, for callers that build a child's
// exec.Cmd.Env explicitly.
func FilterEnv(env []string) []string {
	out := make([]string, 0, len(env))
outer:
	for _, kv := range env {
		for _, k := range systemdEnv {
			if strings.HasPrefix(kv, k+"=") || kv == k {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}
