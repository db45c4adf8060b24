// Package listen opens the listeners of floodgate serve: TCP or a unix
// socket, at most a given number of connections open at once, optionally
// TLS with a certificate read again when its files change and client
// certificates required. Its connections answer in JSON what net/http
// answers in plain text before any handler runs.
package listen

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CheckAddr checks addr: HOST:PORT, or unix:/PATH.
func CheckAddr(addr string) error {
	if path, unix := strings.CutPrefix(addr, "unix:"); unix {
		if path == "" {
			return fmt.Errorf("listen: address %q: want unix:/path/to/floodgate.sock", addr)
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen: address %q: want host:port, e.g. 127.0.0.1:8080, or unix:/path/to/floodgate.sock", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("listen: address %q: bad port %q", addr, port)
	}
	return nil
}

// Local reports whether only this host can reach addr: a unix socket, or
// a host naming only the loopback interface. An empty host, 0.0.0.0 and
// :: mean every interface; host names other than "localhost" are not
// trusted to resolve to loopback.
func Local(addr string) bool {
	if strings.HasPrefix(addr, "unix:") {
		return true
	}
	host, _, _ := net.SplitHostPort(addr)
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Open listens on addr: HOST:PORT over TCP, or unix:/PATH. A unix socket
// is made with mode 0660 (less if the umask takes more): the owner's user
// and group may connect. A socket file left by a server that died is
// replaced; one a live server answers on is not, and nor is any other
// kind of file. Closing the listener removes the socket file.
func Open(addr string) (net.Listener, error) {
	path, unix := strings.CutPrefix(addr, "unix:")
	if !unix {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen: %s: the file exists and is not a socket; not replacing it", addr)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("listen: %s: a server is answering on it (another floodgate serve?)", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("listen: %s: checking the existing socket: %w", addr, err)
		}
		if err := os.Remove(path); err != nil { // nobody listens: left by a server that died
			return nil, fmt.Errorf("listen: %s: removing a stale socket: %w", addr, err)
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
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}
