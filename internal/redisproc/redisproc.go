// Package redisproc starts and stops throwaway redis-server processes on
// loopback: for integration tests, and for loadgen's embedded default.
package redisproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotInstalled means no redis-server binary is on PATH.
var ErrNotInstalled = errors.New("redisproc: redis-server not found on PATH")

// Options configure a server. The zero value starts a plain in-memory
// server on a free port.
type Options struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// Args are extra redis-server arguments ("--requirepass", "x": Start
	// then waits for readiness with that password).
	Args []string
	// Dir is the working directory; empty means a new temporary one,
	// removed by Stop.
	Dir string
}

// Server is one running redis-server.
type Server struct {
	Addr string
	Port int

	cmd     *exec.Cmd
	dir     string
	ownDir  bool
	out     *SyncBuffer
	done    chan struct{}
	stopped sync.Once
}

// FreePort asks the kernel for a loopback port nobody listens on.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redisproc: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start runs redis-server without persistence on 127.0.0.1 and waits until
// it answers PING (at most 10 s). With Port 0 it picks a free port, and
// picks again if another process took that port before the server bound
// it.
func Start(ctx context.Context, opt Options) (*Server, error) {
	return run(ctx, opt, func(s *Server) ([]string, error) {
		return append([]string{
			"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", s.dir,
			"--protected-mode", "no", "--loglevel", "warning",
		}, opt.Args...), nil
	})
}

// run starts redis-server as Start does, a data node or a sentinel, with
// the arguments args gives for the Server's port and directory.
func run(ctx context.Context, opt Options, args func(*Server) ([]string, error)) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	for attempt := 1; ; attempt++ {
		s, err := start(ctx, bin, opt, args)
		if err == nil || opt.Port != 0 || attempt == 5 || !strings.Contains(err.Error(), "Address already in use") {
			return s, err
		}
	}
}

func start(ctx context.Context, bin string, opt Options, args func(*Server) ([]string, error)) (*Server, error) {
	s := &Server{Port: opt.Port, dir: opt.Dir, out: &SyncBuffer{}, done: make(chan struct{})}
	var err error
	if s.Port == 0 {
		if s.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "floodgate-redis-"); err != nil {
			return nil, fmt.Errorf("redisproc: %w", err)
		}
		s.ownDir = true
	}
	argv, err := args(s)
	if err != nil {
		s.cleanDir()
		return nil, err
	}
	if err := s.launch(ctx, bin, argv); err != nil {
		return nil, err
	}
	return s, nil
}

// launch runs bin with args as s and waits until it answers PING (with
// the password args set). On an error the process is gone and so is a
// directory s owns.
func (s *Server) launch(ctx context.Context, bin string, args []string) error {
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	// Its own process group, so a Ctrl-C aimed at us does not race our Stop.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.cleanDir()
		return fmt.Errorf("redisproc: starting redis-server: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, requirepass(args)); err != nil {
		s.Kill()
		s.cleanDir()
		return err
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, password string) error {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: password, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("redisproc: redis-server exited at start: %s", bytes.TrimSpace([]byte(s.out.String())))
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("redisproc: redis-server on %s not ready: %w", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requirepass is the password args set with --requirepass, "" if none:
// what a client needs to reach the server.
func requirepass(args []string) string {
	pass := ""
	for i, a := range args {
		if a == "--requirepass" && i+1 < len(args) {
			pass = args[i+1]
		}
	}
	return pass
}

// Stop terminates the server (SIGTERM, then SIGKILL after 5 s) and removes
// its temporary directory. It is safe to call more than once.
func (s *Server) Stop() {
	s.stopped.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		s.cleanDir()
	})
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it
// to exit. The directory stays (Stop or a restart may reuse it).
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Signal sends sig to the server: SIGSTOP and SIGCONT freeze and thaw
// it, as a stalled host would.
func (s *Server) Signal(sig os.Signal) error { return s.cmd.Process.Signal(sig) }

// Output returns what the server printed so far (for test failures).
func (s *Server) Output() string { return s.out.String() }

// Dir is the server's working directory.
func (s *Server) Dir() string { return s.dir }

func (s *Server) cleanDir() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}

// SyncBuffer collects output written from one goroutine while others read
// it: a child process's, which exec copies from its own goroutine (the
// server's here, the demo replicas' in tests), or a logger's. The zero
// value is ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
