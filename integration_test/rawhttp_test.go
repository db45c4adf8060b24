package integration_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// rawClient is a minimal HTTP/1.1 keep-alive client for benchmarks: one
// connection per goroutine, requests written by hand, answers read by
// Content-Length. It measures the server rather than net/http's client
// (two goroutine handoffs per request), which a bot in another language
// would not pay either.
type rawClient struct {
	addr string
	mu   sync.Mutex
	idle []*rawConn
}

type rawConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

func newRawClient(addr string) *rawClient { return &rawClient{addr: addr} }

func (rc *rawClient) get() (*rawConn, error) {
	rc.mu.Lock()
	if n := len(rc.idle); n > 0 {
		c := rc.idle[n-1]
		rc.idle = rc.idle[:n-1]
		rc.mu.Unlock()
		return c, nil
	}
	rc.mu.Unlock()
	c, err := net.Dial("tcp", rc.addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

func (rc *rawClient) put(c *rawConn) {
	rc.mu.Lock()
	rc.idle = append(rc.idle, c)
	rc.mu.Unlock()
}

func (rc *rawClient) close() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, c := range rc.idle {
		c.c.Close()
	}
	rc.idle = nil
}

// do sends method path with no body and returns the status and body.
func (rc *rawClient) do(method, path string) (int, []byte, error) {
	return rc.doBody(method, path, nil)
}

// doBody sends method path with body (JSON) and returns the status and
// the answer's body.
func (rc *rawClient) doBody(method, path string, body []byte) (int, []byte, error) {
	c, err := rc.get()
	if err != nil {
		return 0, nil, err
	}
	c.buf = append(c.buf[:0], method...)
	c.buf = append(c.buf, ' ')
	c.buf = append(c.buf, path...)
	c.buf = append(c.buf, " HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.buf = strconv.AppendInt(c.buf, int64(len(body)), 10)
	c.buf = append(c.buf, "\r\n\r\n"...)
	c.buf = append(c.buf, body...)
	if _, err := c.c.Write(c.buf); err != nil {
		c.c.Close()
		return 0, nil, err
	}
	status, length := 0, -1
	for first := true; ; first = false {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			c.c.Close()
			return 0, nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if first {
			if len(line) < 12 {
				c.c.Close()
				return 0, nil, fmt.Errorf("bad status line %q", line)
			}
			status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length < 0 {
		c.c.Close()
		return 0, nil, fmt.Errorf("answer without Content-Length")
	}
	answer := make([]byte, length)
	if _, err := io.ReadFull(c.r, answer); err != nil {
		c.c.Close()
		return 0, nil, err
	}
	rc.put(c)
	return status, answer, nil
}
