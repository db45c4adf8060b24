package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
)

// listener bounds the connections open at once (FLOODGATE_HTTP_MAX_CONNS):
// past the cap, Accept waits for one to close and new clients wait in the
// kernel's accept queue, holding no file descriptor of this process. Its
// connections answer as JSON what net/http answers in plain text before
// any handler runs (see conn.Write). With tls set, its connections speak
// TLS, net/http seeing the plain text (so conn.Write still can).
type listener struct {
	net.Listener
	tls       *tls.Config
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newListener(ln net.Listener, maxConns int) *listener {
	return &listener{Listener: ln, slots: make(chan struct{}, maxConns), done: make(chan struct{})}
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
	if err := writeRawError(c.Conn, status, msg); err != nil {
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
		_ = writeRawError(plain.Conn, "400 Bad Request", "this server speaks TLS: use an https:// URL")
	}
	return n, err
}

// writeRawError writes, on a bare connection, a whole answer that ends the connection.
func writeRawError(w io.Writer, status, msg string) error {
	body, _ := json.Marshal(errorBody{msg})
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
