package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// openListener listens on addr: HOST:PORT over TCP, or unix:/path. A unix
// socket is made with mode 0660 (less if the umask takes more): the
// owner's user and group may connect. A socket file left by a server that
// died is replaced; one a live server answers on is not, and nor is any
// other kind of file. Closing the listener removes the socket file.
func openListener(addr string) (net.Listener, error) {
	path, unix := strings.CutPrefix(addr, "unix:")
	if !unix {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen on %s: the file exists and is not a socket; not replacing it", addr)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: a server is answering on it (another floodgate serve?)", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("listen on %s: checking the existing socket: %w", addr, err)
		}
		if err := os.Remove(path); err != nil { // nobody listens: left by a server that died
			return nil, fmt.Errorf("listen on %s: removing a stale socket: %w", addr, err)
		}
	}
	// The umask is the only way to create the socket file with its final
	// mode (a chmod after bind leaves a window); nothing else in serve
	// creates files while it starts.
	old := syscall.Umask(0o177)
	syscall.Umask(old | 0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
