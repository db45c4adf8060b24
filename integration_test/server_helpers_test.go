package integration_test

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
)

// commandBin builds cmd/<name> once per test process into a directory
// kept between runs, one per checkout: go build relinks only when the
// code changed (a link takes seconds on a loaded machine), and a
// t.TempDir would vanish with the first test that asked for it.
func commandBin(t testing.TB, name string) string {
	t.Helper()
	binsMu.Lock()
	b, ok := bins[name]
	if !ok {
		b = &builtBin{}
		bins[name] = b
	}
	binsMu.Unlock()
	b.once.Do(func() { b.path, b.err = buildCommand(name) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

type builtBin struct {
	once sync.Once
	path string
	err  error
}

var (
	binsMu sync.Mutex
	bins   = map[string]*builtBin{}
)

func buildCommand(name string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil && os.Getenv("GOROOT") != "" {
		goBin, err = filepath.Join(os.Getenv("GOROOT"), "bin", "go"), nil
	}
	if err != nil {
		return "", fmt.Errorf("building cmd/%s needs the go command on PATH: %v", name, err)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("floodgate-itest-bin-%08x", crc32.ChecksumIEEE([]byte(wd))))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	// go build moves a new binary into place rather than rewriting the
	// old one, so a process already running it is not disturbed.
	bin := filepath.Join(dir, name)
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/floodgate/floodgate/cmd/"+name).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin, nil
}

// serveProc is one running `floodgate serve`.
type serveProc struct {
	URL    string
	cmd    *exec.Cmd
	out    *redisproc.SyncBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
	once   sync.Once
}

// Output is what the server printed so far.
func (p *serveProc) Output() string { return p.out.String() }

// Stop sends SIGTERM and waits (at most 20 s, then SIGKILL); it returns
// the exit error (nil for status 0). Safe to call more than once.
func (p *serveProc) Stop() error {
	p.once.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGTERM) })
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("floodgate serve ignored SIGTERM for 20s")
	}
	return p.err
}

// startServe runs `floodgate serve` on a free loopback port against the
// shared Redis (FLOODGATE_REDIS_URL; env may override it and add any
// FLOODGATE_* setting) and waits until /readyz answers 200. It returns the
// base URL ("http://127.0.0.1:PORT") and a stop function (SIGTERM, wait);
// the test's cleanup stops it too. Other tests (the Python client's) use
// it to get a real server.
func startServe(t testing.TB, env map[string]string) (baseURL string, stop func()) {
	t.Helper()
	p := startServeProc(t, env)
	return p.URL, func() {
		if err := p.Stop(); err != nil {
			t.Errorf("floodgate serve: %v\n%s", err, p.Output())
		}
	}
}

func startServeProc(t testing.TB, env map[string]string, args ...string) *serveProc {
	t.Helper()
	needRedis(t)
	return startServeBin(t, commandBin(t, "floodgate"), env, args...)
}

// startServeBin is startServeProc with the floodgate binary at bin (an
// older build, for a before-and-after benchmark).
func startServeBin(t testing.TB, bin string, env map[string]string, args ...string) *serveProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port, err := redisproc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		p, err := launchServe(t, bin, fmt.Sprintf("127.0.0.1:%d", port), env, args...)
		if err == nil {
			return p
		}
		if attempt < 3 && strings.Contains(p.Output(), "address already in use") {
			continue
		}
		t.Fatalf("floodgate serve: %v\n%s", err, p.Output())
	}
}

// startServeOn runs `floodgate serve` on addr, for a restart that must
// take the same address back (startServeProc picks a free port).
func startServeOn(t testing.TB, addr string, env map[string]string) *serveProc {
	t.Helper()
	needRedis(t)
	p, err := launchServe(t, commandBin(t, "floodgate"), addr, env)
	if err != nil {
		t.Fatalf("floodgate serve on %s: %v\n%s", addr, err, p.Output())
	}
	return p
}

// launchServe starts bin serve on addr and waits until /readyz answers
// 200 (launchServeVia).
func launchServe(t testing.TB, bin, addr string, env map[string]string, args ...string) (*serveProc, error) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	return launchServeVia(t, bin, c, "http://"+addr, serveEnv(map[string]string{
		"FLOODGATE_REDIS_URL": redisURL,
		"FLOODGATE_HTTP_ADDR": addr,
	}, env), args...)
}

// launchServeVia starts bin serve with args in the environment env and
// waits until c gets 200 from base + /readyz; the test's cleanup stops it.
// On an error the process is gone and p.Output says why.
func launchServeVia(t testing.TB, bin string, c *http.Client, base string, env []string, args ...string) (*serveProc, error) {
	t.Helper()
	p := &serveProc{URL: base, out: &redisproc.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return p, err
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	if err := awaitReady(p, c, 20*time.Second); err != nil {
		_ = p.cmd.Process.Kill()
		<-p.exited
		return p, err
	}
	t.Cleanup(func() { _ = p.Stop() })
	return p, nil
}

// serveEnv is the process environment without FLOODGATE_* and REDIS_URL
// (the test decides every setting), then base, then env.
func serveEnv(base, env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FLOODGATE_") || strings.HasPrefix(kv, "REDIS_URL=") {
			continue
		}
		out = append(out, kv)
	}
	for _, m := range []map[string]string{base, env} {
		for k, v := range m {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// awaitReady polls /readyz through c until 200, the process exits, or d
// passes.
func awaitReady(p *serveProc, c *http.Client, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before ready: %v", p.err)
		default:
		}
		if resp, err := c.Get(p.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready at %s after %v", p.URL, d)
}

// callJSON sends one request and decodes the JSON answer (nil when empty).
func callJSON(c *http.Client, method, url, body string) (int, map[string]any, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var m map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &m); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("%s %s: %d with a body that is not JSON: %q", method, url, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, m, nil
}
