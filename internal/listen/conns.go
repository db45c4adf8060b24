package listen

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
)

// DefaultMaxConns is the connection cap when none is set: 1024, or the
// open-file limit less 64 (Redis connections, the listener, logs) when
// lower, and at least 16.
func DefaultMaxConns() int {
	n := 1024
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < uint64(n+64) {
		n = max(16, int(rl.Cur)-64)
	}
	return n
}

// Limit returns ln with at most maxConns connections open at once: past
// the cap, Accept waits for one to close and new clients wait in the
// kernel's accept queue, holding no file descriptor of this process. With
// cfg set, its connections speak TLS, net/http seeing the plain text.
// Either way, what net/http writes itself (see conn.Write) is JSON.
func Limit(ln net.Listener, maxConns int, cfg *tls.Config) net.Listener {
	return &listener{Listener: ln, tls: cfg, slots: make(chan struct{}, maxConns), done: make(chan struct{})}
}

type listener struct {
	net.Listener
	tls       *tls.Config
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	return &conn{Conn: c, release: sync.OnceFunc(func() { <-l.slots })}, nil
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type conn struct {
	net.Conn
	release func()
}

func (c *conn) Close() error {
	c.release()
	return c.Conn.Close()
}

// netHTTPError is what follows the status line of every error net/http
// writes itself (a header block over the limit: 431; a malformed request
// line, header or %-escape: 400; a transfer coding it does not know: 501).
const netHTTPError = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Write passes the server's answers on, except net/http's own plain-text
// errors, which become {"error": ...} with the same status: net/http
// offers no hook for them, and writes each with one Write on the
// connection.
func (c *conn) Write(b []byte) (int, error) {
	status, msg, ok := plainError(b)
	if !ok {
		return c.Conn.Write(b)
	}
	if err := writeError(c.Conn, status, msg); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Read answers plain HTTP sent to a TLS port, in plain text and outside
// TLS, with what to fix: net/http would close the connection without a
// word.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	var plain tls.RecordHeaderError
	if err != nil && errors.As(err, &plain) && plain.Conn != nil {
		_ = writeError(plain.Conn, "400 Bad Request", "this server speaks TLS: use an https:// URL")
	}
	return n, err
}

// writeError writes, on a bare connection, a whole answer that ends the
// connection: {"error": msg}, the server's one error shape.
func writeError(w io.Writer, status, msg string) error {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	body = append(body, '\n')
	head := "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	_, err := w.Write(append([]byte(head), body...))
	return err
}

// plainError recognizes a net/http error answer: "HTTP/1.1 431 Request
// Header Fields Too Large" + netHTTPError + text. It returns the status
// ("431 Request Header Fields Too Large") and the message for JSON.
func plainError(b []byte) (status, msg string, ok bool) {
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 ")) || len(b) < 12 || b[9] < '4' {
		return "", "", false
	}
	line, rest, _ := bytes.Cut(b[9:], []byte("\r\n"))
	text, found := bytes.CutPrefix(rest, []byte(netHTTPError[2:]))
	if !found {
		return "", "", false
	}
	// "400 Bad Request: missing required Host header": the status ends at ':'.
	st, _, _ := bytes.Cut(line, []byte(":"))
	if bytes.HasPrefix(st, []byte("431")) {
		return string(st), "request headers: larger than 16 KiB", true
	}
	return string(st), "bad request line or headers: " + string(text), true
}
