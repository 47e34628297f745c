// Package sdnotify implements the two halves of forkd's systemd integration
// without cgo or libsystemd: the service notification protocol of
// sd_notify(3), used by a Type=notify unit, and the socket activation protocol
// of sd_listen_fds(3).
//
// A master calls New once at start-up, before it starts any child, and keeps
// the returned Notifier for its lifetime. It then calls ListenFDs to take the
// sockets systemd passed, and UnsetEnvironment (or builds the children's
// environment with FilterEnv) so that workers neither notify systemd nor
// mistake the master's sockets for their own.
//
// Every Notifier method is a no-op returning nil when the process was not
// started by systemd, so callers need no special case for running in a
// terminal.
package sdnotify
