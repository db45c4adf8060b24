package integration_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
)

// `floodgate serve` over TLS (issue 18 item 2): HTTPS with a certificate
// from a CA made here, rotation without a restart, mutual TLS, and the
// Python and Node clients verifying the server's certificate.

// testCA is a throwaway certificate authority writing PEM files into dir.
type testCA struct {
	*redisproc.CA
	t    *testing.T
	dir  string
	File string // the CA certificate
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca, err := redisproc.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	tca := &testCA{CA: ca, t: t, dir: t.TempDir()}
	tca.File = filepath.Join(tca.dir, name+".ca.crt")
	if err := ca.WriteCert(tca.File); err != nil {
		t.Fatal(err)
	}
	return tca
}

// issue writes a certificate for 127.0.0.1, ::1 and localhost (a client
// certificate when client is set) and its key.
func (ca *testCA) issue(name string, client bool) (certFile, keyFile string) {
	ca.t.Helper()
	use := x509.ExtKeyUsageServerAuth
	if client {
		use = x509.ExtKeyUsageClientAuth
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	if err := ca.Issue(certFile, keyFile, name, use); err != nil {
		ca.t.Fatal(err)
	}
	return certFile, keyFile
}

// httpsClient trusts only ca, presents cert (when given) and opens a new
// connection per request, so each request sees the server's current
// certificate.
func httpsClient(t *testing.T, ca *testCA, cert ...string) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool()}
	if len(cert) == 2 {
		pair, err := tls.LoadX509KeyPair(cert[0], cert[1])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// startServeVia runs `floodgate serve` with env over the shared Redis and
// waits until c gets 200 from base + /readyz.
func startServeVia(t *testing.T, c *http.Client, base string, env map[string]string, args ...string) *serveProc {
	t.Helper()
	needRedis(t)
	p, err := launchServeVia(t, commandBin(t, "floodgate"), c, base, serveEnv(map[string]string{"FLOODGATE_REDIS_URL": redisURL}, env), args...)
	if err != nil {
		t.Fatalf("floodgate serve: %v\n%s", err, p.Output())
	}
	return p
}

// tlsEnv is a server setting with a token and the given certificate.
func tlsEnv(t *testing.T, token, cert, key string) (env map[string]string, base string) {
	t.Helper()
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	rdb := client(t)
	return map[string]string{
		"FLOODGATE_KEY_PREFIX":    uniquePrefix(t, rdb),
		"FLOODGATE_HTTP_TOKEN":    token,
		"FLOODGATE_HTTP_ADDR":     fmt.Sprintf("0.0.0.0:%d", port),
		"FLOODGATE_HTTP_TLS_CERT": cert,
		"FLOODGATE_HTTP_TLS_KEY":  key,
		"FLOODGATE_USER_COOLDOWN": "0",
		"FLOODGATE_REDIS_TIMEOUT": clientRedisTimeout.String(),
	}, fmt.Sprintf("https://127.0.0.1:%d", port)
}

// TestServeTLS: HTTPS on every interface with a token: no plain-HTTP
// warning; a client trusting the CA gets decisions, one that does not is
// refused; the files rotated to a certificate from another CA serve from
// the next connection, without a restart; SIGHUP reads them again; plain
// HTTP to the port is told to use https.
func TestServeTLS(t *testing.T) {
	ca1, ca2 := newTestCA(t, "ca1"), newTestCA(t, "ca2")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	install := func(ca *testCA, name string) {
		t.Helper()
		c, k := ca.issue(name, false)
		for _, mv := range [][2]string{{c, cert}, {k, key}} {
			if err := os.Rename(mv[0], mv[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(ca1, "server1")
	token := randomHex(t, 16)
	env, base := tlsEnv(t, token, cert, key)
	srv := startServeVia(t, httpsClient(t, ca1), base, env)
	if out := srv.Output(); strings.Contains(out, "plain HTTP") || !strings.Contains(out, "serving on https://") {
		t.Fatalf("start-up log:\n%s", out)
	}

	allow := func(c *http.Client, user string) error {
		req, _ := http.NewRequest("POST", base+"/v1/users/"+user+"/allow", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var d struct{ Allowed bool }
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != 200 || !d.Allowed {
			return fmt.Errorf("allow %s: %d %+v %v", user, resp.StatusCode, d, err)
		}
		return nil
	}
	if err := allow(httpsClient(t, ca1), "tls-a"); err != nil {
		t.Fatal(err)
	}
	err := allow(httpsClient(t, ca2), "tls-b")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("a client trusting another CA: %v", err)
	}

	install(ca2, "server2")
	if err := allow(httpsClient(t, ca2), "tls-c"); err != nil {
		t.Fatalf("after rotating to ca2's certificate: %v\n%s", err, srv.Output())
	}
	if err := allow(httpsClient(t, ca1), "tls-d"); err == nil {
		t.Fatal("the replaced certificate still served")
	}
	n := strings.Count(srv.Output(), "TLS: serving the certificate")
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(srv.Output(), "TLS: serving the certificate") == n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP: no reload logged\n%s", srv.Output())
		}
	}
	if err := allow(httpsClient(t, ca2), "tls-e"); err != nil {
		t.Fatalf("after SIGHUP: %v", err)
	}

	code, body, err := callJSON(&http.Client{Timeout: 5 * time.Second}, "GET", strings.Replace(base, "https:", "http:", 1)+"/healthz", "")
	if err != nil || code != 400 || !strings.Contains(fmt.Sprint(body["error"]), "use an https:// URL") {
		t.Fatalf("plain HTTP to the TLS port: %d %v %v", code, body, err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Output())
	}
}

// TestServePlainHTTPWarning: every interface, a token, no TLS: serve
// starts, with a warning naming the settings that fix it.
func TestServePlainHTTPWarning(t *testing.T) {
	env, base := tlsEnv(t, randomHex(t, 16), "", "")
	srv := startServeVia(t, &http.Client{Timeout: time.Second}, strings.Replace(base, "https:", "http:", 1), env)
	out := srv.Output()
	if !strings.Contains(out, "WARNING: serving "+env["FLOODGATE_HTTP_ADDR"]+" over plain HTTP") ||
		!strings.Contains(out, "set FLOODGATE_HTTP_TLS_CERT and FLOODGATE_HTTP_TLS_KEY") {
		t.Fatalf("no warning:\n%s", out)
	}
}

// TestServeMutualTLS: with FLOODGATE_HTTP_CLIENT_CA, a client certificate
// from that CA gets in; none, or one from another CA, is refused in the
// handshake. Python's clients present one through ssl_context.
func TestServeMutualTLS(t *testing.T) {
	skipIfShort(t) // -short: the fast tier keeps a quicker test of this area
	ca, other := newTestCA(t, "server-ca"), newTestCA(t, "other-ca")
	cert, key := ca.issue("server", false)
	goodCert, goodKey := ca.issue("bot", true)
	badCert, badKey := other.issue("intruder", true)
	token := randomHex(t, 16)
	env, base := tlsEnv(t, token, cert, key)
	env["FLOODGATE_HTTP_CLIENT_CA"] = ca.File
	srv := startServeVia(t, httpsClient(t, ca, goodCert, goodKey), base, env)
	if !strings.Contains(srv.Output(), "client certificate required") {
		t.Fatalf("start-up log:\n%s", srv.Output())
	}
	for _, tc := range []struct {
		name string
		c    *http.Client
	}{{"no certificate", httpsClient(t, ca)}, {"another CA's certificate", httpsClient(t, ca, badCert, badKey)}} {
		if resp, err := tc.c.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			t.Errorf("%s: got %d, want the handshake refused", tc.name, resp.StatusCode)
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v (want a certificate error)", tc.name, err)
		}
	}
	res := runPyTransport(t, base, token, map[string]string{"FG_CA": ca.File, "FG_CERT": goodCert, "FG_KEY": goodKey}, "cert", "ca")
	for _, side := range []string{"sync", "async"} {
		if r := res["cert"][side]; !r.Allowed {
			t.Errorf("python %s with a client certificate: %+v", side, r)
		}
		if r := res["ca"][side]; r.Allowed || !strings.Contains(strings.ToLower(r.Error), "certificate") {
			t.Errorf("python %s without a client certificate: %+v (want a certificate error)", side, r)
		}
	}
}

// TestServeTLSClients: both Python clients (ca_file=) and the Node client
// (ca) verify the server's certificate: with the CA they get decisions,
// without it (the system's CAs) they fail with a certificate error, and
// plain http:// to the TLS port is told to use https.
func TestServeTLSClients(t *testing.T) {
	ca := newTestCA(t, "ca")
	cert, key := ca.issue("server", false)
	token := randomHex(t, 16)
	env, base := tlsEnv(t, token, cert, key)
	startServeVia(t, httpsClient(t, ca), base, env)

	res := runPyTransport(t, base, token, map[string]string{"FG_CA": ca.File}, "ca", "none", "http")
	for _, side := range []string{"sync", "async"} {
		if r := res["ca"][side]; !r.Allowed || r.Error != "" {
			t.Errorf("python %s with ca_file: %+v", side, r)
		}
		if r := res["none"][side]; r.Allowed || !strings.HasPrefix(r.Error, "TransportError") || !strings.Contains(r.Error, "CERTIFICATE_VERIFY_FAILED") {
			t.Errorf("python %s without the CA: %+v (want TransportError ... CERTIFICATE_VERIFY_FAILED)", side, r)
		}
		if r := res["http"][side]; r.Allowed || !strings.Contains(r.Error, "400: this server speaks TLS: use an https:// URL") {
			t.Errorf("python %s, http:// to the TLS port: %+v", side, r)
		}
	}
	nres := runNodeTransport(t, base, token, map[string]string{"FG_CA": ca.File}, "ca", "none")
	if r := nres["ca"]; !r.Allowed || r.Error != "" {
		t.Errorf("node with ca: %+v", r)
	}
	if r := nres["none"]; r.Allowed || !strings.HasPrefix(r.Error, "TransportError") || !strings.Contains(r.Error, "certificate") {
		t.Errorf("node without the CA: %+v (want a TransportError naming the certificate)", r)
	}
	t.Logf("python without the CA: %s; node: %s", res["none"]["sync"].Error, nres["none"].Error)
}

type transportResult struct {
	Allowed bool   `json:"allowed"`
	Error   string `json:"error"`
}

// pyTransport makes one allow call per mode and client (Client and
// AsyncClient) against FG_URL and prints {mode: {"sync": r, "async": r}}.
// Modes: none (defaults), ca (ca_file=FG_CA), cert (an ssl_context
// trusting FG_CA with the client certificate FG_CERT/FG_KEY), http (the
// URL with http:// instead of https://).
const pyTransport = `
import asyncio, json, os, ssl, sys
import floodgate

url, token = os.environ["FG_URL"], os.environ.get("FG_TOKEN") or None

def setup(mode):
    if mode == "ca":
        return url, {"ca_file": os.environ["FG_CA"]}
    if mode == "cert":
        ctx = ssl.create_default_context(cafile=os.environ["FG_CA"])
        ctx.load_cert_chain(os.environ["FG_CERT"], os.environ["FG_KEY"])
        return url, {"ssl_context": ctx}
    if mode == "http":
        return url.replace("https://", "http://"), {}
    return url, {}

def result(f):
    try:
        return {"allowed": f().allowed}
    except floodgate.FloodgateError as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}

async def aresult(mode):
    u, kw = setup(mode)
    try:
        async with floodgate.AsyncClient(u, token=token, timeout=5, **kw) as fg:
            return {"allowed": (await fg.allow("py-async-" + mode)).allowed}
    except floodgate.FloodgateError as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}

out = {}
for mode in sys.argv[1:]:
    u, kw = setup(mode)
    with floodgate.Client(u, token=token, timeout=5, **kw) as fg:
        out[mode] = {"sync": result(lambda: fg.allow("py-sync-" + mode))}
    out[mode]["async"] = asyncio.run(aresult(mode))
print(json.dumps(out))
`

func runPyTransport(t *testing.T, url, token string, env map[string]string, modes ...string) map[string]map[string]transportResult {
	t.Helper()
	py := needPython(t)
	abs, err := filepath.Abs(pyClientDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"-c", pyTransport}, modes...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+abs, "PYTHONDONTWRITEBYTECODE=1", "FG_URL="+url, "FG_TOKEN="+token)
	return outputJSON[map[string]map[string]transportResult](t, cmd, env, "python transport script")
}

// nodeTransport: as pyTransport for the Node client, modes none and ca
// (ca: the PEM of FG_CA), printing {mode: r}.
const nodeTransport = `
import fs from 'node:fs';
const { Client } = await import(process.env.FG_INDEX);
const out = {};
for (const mode of process.env.FG_MODES.split(' ')) {
  const opts = { baseUrl: process.env.FG_URL, token: process.env.FG_TOKEN || undefined, timeoutMs: 5000 };
  if (mode === 'ca') opts.ca = fs.readFileSync(process.env.FG_CA);
  const fg = new Client(opts);
  try { out[mode] = { allowed: (await fg.allow('node-' + mode)).allowed }; }
  catch (e) { out[mode] = { error: e.name + ': ' + e.message }; }
  fg.close();
}
console.log(JSON.stringify(out));
`

func runNodeTransport(t *testing.T, url, token string, env map[string]string, modes ...string) map[string]transportResult {
	t.Helper()
	node := needNode(t)
	index, err := filepath.Abs(filepath.Join(nodeClientDir, "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--input-type=module", "-e", nodeTransport)
	cmd.Env = nodeEnv("FG_INDEX=file://"+index, "FG_URL="+url, "FG_TOKEN="+token, "FG_MODES="+strings.Join(modes, " "))
	return outputJSON[map[string]transportResult](t, cmd, env, "node transport script")
}
