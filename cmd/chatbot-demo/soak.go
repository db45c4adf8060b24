package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/internal/soakreport"
	"github.com/floodgate/floodgate/limiter"
)

// The soak: the demo chat's user decisions through 2 `floodgate serve`
// sidecars and 2 library replicas (Limiters in this process, each with its
// own client) against one redis-server that is paused and killed on a
// schedule, then a report checked against an independent log of every
// admission (kept here, by the callers, never read back from Redis).
//
//	chatbot-demo soak -duration 10m

// soakFaultEvery is the fault schedule's period: in each, Redis is paused
// (CLIENT PAUSE or SIGSTOP, alternately) at +8s for 2s and killed with
// SIGKILL at +18s, restarted 2s later from its append-only file (fsync
// always, so a kill loses no acknowledged write).
const (
	soakFaultEvery = 30 * time.Second
	soakPauseAt    = 8 * time.Second
	soakKillAt     = 18 * time.Second
	soakFaultLen   = 2 * time.Second
	// soakGrace extends each outage window past the fault's end: the
	// clients' health checks skip Redis for up to 1s after a failure.
	soakGrace = 2 * time.Second
	// soakDeadline bounds every call (the caller's context, the HTTP
	// client's timeout); FLOODGATE_REDIS_TIMEOUT is well below it.
	soakDeadline = time.Second
	// soakRate is the chat's messages per second, the demo's default
	// (2000 in 20s).
	soakRate = 100
	// soakWarmup is when the start figures are taken, before the first
	// fault.
	soakWarmup = 5 * time.Second
)

// soakEnv is the limiter's settings for every replica and sidecar: the
// demo's compressed time scale, the default failure mode (local).
var soakEnv = map[string]string{
	"FLOODGATE_USER_COOLDOWN":    "200ms",
	"FLOODGATE_USER_WINDOW":      "1m",
	"FLOODGATE_MAX_IDLE_TIME":    "2m",
	"FLOODGATE_REDIS_TIMEOUT":    "250ms",
	"FLOODGATE_ON_REDIS_ERROR":   "local",
	"FLOODGATE_LOCAL_CACHE_SIZE": "0",
}

// admission is one entry of the independent log.
type admission struct {
	User     string
	Pre      time.Time // before the call
	Post     time.Time // after it returned
	Degraded bool
	Client   string
}

func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chatbot-demo soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", time.Minute, "how long the traffic runs")
	fgBin := fs.String("floodgate", "", "the floodgate binary (default: next to this one, then PATH)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	logPath := fs.String("admissions", "", "also write every admission here, one JSON line each")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if *duration < 10*time.Second {
		return fmt.Errorf("soak: -duration must be at least 10s, got %v", *duration)
	}
	// go-redis logs every failed dial; the faults cause many on purpose.
	redis.SetLogger(cli.QuietLogger{})
	bin, err := findFloodgate(*fgBin)
	if err != nil {
		return err
	}
	cfg := limiter.DefaultConfig()
	for k, v := range soakEnv {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	if cfg, err = limiter.EnvOverrides(cfg); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "floodgate-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	redisOpt := redisproc.Options{Dir: dir, Args: []string{"--appendonly", "yes", "--appendfsync", "always"}}
	srv, err := redisproc.Start(ctx, redisOpt)
	if err != nil {
		return fmt.Errorf("soak: starting redis-server: %w", err)
	}
	redisOpt.Port = srv.Port
	var srvMu sync.Mutex
	defer func() { srvMu.Lock(); srv.Stop(); srvMu.Unlock() }()
	redisURL := "redis://" + srv.Addr
	cfg.RedisURL = redisURL
	cfg.KeyPrefix = fmt.Sprintf("soak%d:", time.Now().UnixNano())

	// The clients: 2 library replicas, 2 sidecars.
	type decider struct {
		name   string
		decide func(ctx context.Context, user string) (allowed, degraded bool, kind string)
	}
	var deciders []decider
	for i := 1; i <= 2; i++ {
		rdb, err := limiter.NewClient(cfg)
		if err != nil {
			return err
		}
		defer rdb.Close()
		l, err := limiter.New(rdb, cfg)
		if err != nil {
			return err
		}
		deciders = append(deciders, decider{fmt.Sprintf("library%d", i), func(ctx context.Context, user string) (bool, bool, string) {
			d, err := l.Allow(ctx, user)
			switch {
			case err == nil:
				return d.Allowed, d.Degraded, ""
			case errors.Is(err, context.DeadlineExceeded):
				return false, false, "library: deadline"
			case limiter.IsUnavailable(err):
				return false, false, "library: unavailable"
			}
			return false, false, "library: " + firstWords(err.Error())
		}})
	}
	var sidecars []*soakSidecar
	for i := 1; i <= 2; i++ {
		sc, err := startSoakSidecar(ctx, bin, fmt.Sprintf("sidecar%d", i), redisURL, cfg.KeyPrefix, stderr)
		if err != nil {
			return err
		}
		defer sc.stop()
		sidecars = append(sidecars, sc)
		deciders = append(deciders, decider{sc.name, sc.decide})
	}

	var logW *bufio.Writer
	if *logPath != "" {
		f, err := os.Create(*logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		logW = bufio.NewWriter(f)
		defer logW.Flush()
	}

	rep := soakreport.Report{Duration: duration.String(), Errors: map[string]int{}, DeadlineMs: ms(soakDeadline)}
	var (
		mu         sync.Mutex
		admissions []admission
		maxCall    time.Duration
	)
	begin := time.Now()
	procs := func() []soakreport.Proc {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		out := []soakreport.Proc{{Name: "soak (library replicas)", Goroutines: runtime.NumGoroutine(), HeapMB: float64(m.HeapAlloc) / 1e6}}
		for _, sc := range sidecars {
			out = append(out, sc.procStats())
		}
		return out
	}
	// "Start" is taken after a warm-up, with pools and caches filled, so
	// start and end compare like with like.
	startTaken := make(chan struct{})
	go func() {
		defer close(startTaken)
		select {
		case <-ctx.Done():
		case <-time.After(soakWarmup):
			s := procs()
			mu.Lock()
			rep.Start = s
			mu.Unlock()
		}
	}()

	// The fault schedule, in its own goroutine.
	faultCtx, stopFaults := context.WithCancel(ctx)
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		for cycle := 0; ; cycle++ {
			base := begin.Add(time.Duration(cycle) * soakFaultEvery)
			for _, step := range []time.Duration{soakPauseAt, soakKillAt} {
				at := base.Add(step)
				if at.Add(soakFaultLen).After(begin.Add(*duration)) {
					return
				}
				select {
				case <-faultCtx.Done():
					return
				case <-time.After(time.Until(at)):
				}
				from := time.Now()
				kind := ""
				srvMu.Lock()
				cur := srv
				srvMu.Unlock()
				switch {
				case step == soakKillAt:
					kind = "kill -9, restart"
					cur.Kill()
					time.Sleep(soakFaultLen)
					ns, err := redisproc.Start(faultCtx, redisOpt)
					if err != nil {
						fmt.Fprintf(stderr, "soak: restarting redis-server: %v\n", err)
						return
					}
					srvMu.Lock()
					srv = ns
					srvMu.Unlock()
				case cycle%2 == 0:
					kind = "CLIENT PAUSE"
					c := redis.NewClient(&redis.Options{Addr: cur.Addr})
					err := c.Do(faultCtx, "client", "pause", soakFaultLen.Milliseconds(), "all").Err()
					c.Close()
					if err != nil {
						fmt.Fprintf(stderr, "soak: CLIENT PAUSE: %v\n", err)
					}
					time.Sleep(soakFaultLen)
				default:
					kind = "SIGSTOP"
					if err := cur.Signal(syscall.SIGSTOP); err != nil {
						fmt.Fprintf(stderr, "soak: SIGSTOP: %v\n", err)
						return
					}
					time.Sleep(soakFaultLen)
					_ = cur.Signal(syscall.SIGCONT)
				}
				until := time.Now().Add(soakGrace)
				mu.Lock()
				rep.Faults = append(rep.Faults, soakreport.Fault{Kind: kind, From: from.Sub(begin).Seconds(), Until: until.Sub(begin).Seconds()})
				mu.Unlock()
			}
		}
	}()

	// The traffic: the demo chat, a new seed each minute, spread over the
	// four clients round-robin as a load balancer would.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	cycleLen := min(*duration, time.Minute)
	end := begin.Add(*duration)
traffic:
	for cycle := 0; ; cycle++ {
		cstart := begin.Add(time.Duration(cycle) * cycleLen)
		if !cstart.Before(end) {
			break
		}
		msgs := newChat(uint64(cycle+1), planChat(int(cycleLen.Seconds()*soakRate), cycleLen))
		for _, m := range msgs {
			at := cstart.Add(m.At)
			if !at.Before(end) {
				break
			}
			select {
			case <-ctx.Done():
				break traffic
			case <-time.After(time.Until(at)):
			}
			dec := deciders[m.Seq%len(deciders)]
			sem <- struct{}{}
			wg.Add(1)
			go func(user string) {
				defer wg.Done()
				defer func() { <-sem }()
				cctx, cancel := context.WithTimeout(ctx, soakDeadline)
				pre := time.Now()
				allowed, degraded, kind := dec.decide(cctx, user)
				post := time.Now()
				cancel()
				mu.Lock()
				defer mu.Unlock()
				rep.Decisions++
				maxCall = max(maxCall, post.Sub(pre))
				if post.Sub(pre) > soakDeadline {
					rep.OverDeadline++
				}
				if kind != "" {
					rep.Errors[kind]++
					return
				}
				if degraded {
					rep.Degraded++
				}
				if allowed {
					rep.Admitted++
					a := admission{User: user, Pre: pre, Post: post, Degraded: degraded, Client: dec.name}
					admissions = append(admissions, a)
					if logW != nil {
						_ = json.NewEncoder(logW).Encode(a)
					}
				}
			}(m.User)
		}
	}
	wg.Wait()
	<-startTaken
	stopFaults()
	<-faultsDone
	if err := ctx.Err(); err != nil {
		return err
	}
	rep.MaxCallMs = ms(maxCall)
	rep.OverLimitInOutage, rep.OverLimitOutside, rep.OutsideExamples = overLimit(admissions, rep.Faults, begin, cfg.UserCooldown, cfg.UserWindow, cfg.MaxRequestsPerUserHour)
	// The end figures leave out what the run itself holds: the log of
	// admissions, and the keep-alive connections (two goroutines each
	// here, one in the sidecar) that the outages' bursts opened.
	admissions = nil
	for _, sc := range sidecars {
		sc.client.CloseIdleConnections()
	}
	time.Sleep(time.Second)
	rep.End = procs()

	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		printSoak(stdout, rep)
	}
	if rep.OverLimitOutside > 0 {
		return fmt.Errorf("soak: %d users admitted above their limit outside the outage windows", rep.OverLimitOutside)
	}
	return nil
}

// overLimit counts, per user, the admissions that broke the limit for
// certain: a second one whose call ended less than cooldown after the
// previous one's began, or limit+1 whose calls all lay within window. One
// excused (degraded, or within an outage window) makes the breach
// in-outage. A user counts once per breach kind.
func overLimit(adm []admission, faults []soakreport.Fault, begin time.Time, cooldown, window time.Duration, limit int) (inOutage, outside int, examples []string) {
	byUser := map[string][]admission{}
	for _, a := range adm {
		byUser[a.User] = append(byUser[a.User], a)
	}
	excused := func(a admission) bool {
		if a.Degraded {
			return true
		}
		for _, f := range faults {
			from := begin.Add(time.Duration(f.From * float64(time.Second)))
			until := begin.Add(time.Duration(f.Until * float64(time.Second)))
			if a.Post.After(from) && a.Pre.Before(until) {
				return true
			}
		}
		return false
	}
	users := make([]string, 0, len(byUser))
	for u := range byUser {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		as := byUser[u]
		sort.Slice(as, func(i, j int) bool { return as[i].Pre.Before(as[j].Pre) })
		breach := func(what string, group []admission) {
			for _, a := range group {
				if excused(a) {
					inOutage++
					return
				}
			}
			outside++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s: %s at %.3fs (%s)", u, what, group[len(group)-1].Pre.Sub(begin).Seconds(), group[len(group)-1].Client))
			}
		}
		for i := 1; i < len(as); i++ {
			if cooldown > 0 && as[i].Post.Sub(as[i-1].Pre) < cooldown {
				breach("two admissions within the cooldown", as[i-1:i+1])
				break
			}
		}
		for i := 0; i+limit < len(as); i++ {
			if as[i+limit].Post.Sub(as[i].Pre) < window {
				breach(fmt.Sprintf("%d admissions within the window", limit+1), as[i:i+limit+1])
				break
			}
		}
	}
	return inOutage, outside, examples
}

func printSoak(w io.Writer, r soakreport.Report) {
	fmt.Fprintf(w, "soak: %s of the demo chat (%d msg/s) through 2 library replicas and 2 floodgate serve sidecars\n", r.Duration, soakRate)
	fmt.Fprintf(w, "decisions            %d (admitted %d, degraded %d)\n", r.Decisions, r.Admitted, r.Degraded)
	kinds := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	if len(kinds) == 0 {
		fmt.Fprintf(w, "errors               none\n")
	}
	for _, k := range kinds {
		fmt.Fprintf(w, "errors               %-30s %d\n", k, r.Errors[k])
	}
	fmt.Fprintf(w, "max call             %.1f ms (deadline %.0f ms, %d over)\n", r.MaxCallMs, r.DeadlineMs, r.OverDeadline)
	fmt.Fprintf(w, "outage windows       %d:", len(r.Faults))
	for _, f := range r.Faults {
		fmt.Fprintf(w, " %s %.1f-%.1fs;", f.Kind, f.From, f.Until)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "users over limit     %d outside outage windows, %d involving an outage\n", r.OverLimitOutside, r.OverLimitInOutage)
	for _, e := range r.OutsideExamples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	for i := range r.Start {
		s, e := r.Start[i], r.End[i]
		fmt.Fprintf(w, "%-24s goroutines %d -> %d, heap %.1f -> %.1f MB", s.Name, s.Goroutines, e.Goroutines, s.HeapMB, e.HeapMB)
		if s.RSSMB > 0 {
			fmt.Fprintf(w, " (live after GC %.0f -> %.0f MB), RSS %.1f -> %.1f MB", s.LiveMB, e.LiveMB, s.RSSMB, e.RSSMB)
		}
		fmt.Fprintln(w)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// firstWords keeps an error's kind, not the user ids it may quote.
func firstWords(s string) string {
	if i := strings.IndexAny(s, "\"'"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func findFloodgate(flagVal string) (string, error) {
	if flagVal != "" {
		return flagVal, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "floodgate")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("floodgate"); err == nil {
		return p, nil
	}
	return "", errors.New("soak: no floodgate binary next to this one or on PATH; build it (go build -o /tmp/fg ./cmd/floodgate) and pass -floodgate /tmp/fg")
}

// soakSidecar is one `floodgate serve` process.
type soakSidecar struct {
	name   string
	url    string
	cmd    *exec.Cmd
	out    *redisproc.SyncBuffer
	client *http.Client
	done   chan struct{}
}

func startSoakSidecar(ctx context.Context, bin, name, redisURL, prefix string, stderr io.Writer) (*soakSidecar, error) {
	for attempt := 1; ; attempt++ {
		port, err := redisproc.FreePort()
		if err != nil {
			return nil, err
		}
		sc := &soakSidecar{name: name, url: fmt.Sprintf("http://127.0.0.1:%d", port), out: &redisproc.SyncBuffer{}, done: make(chan struct{}),
			client: &http.Client{Timeout: soakDeadline, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
		sc.cmd = exec.Command(bin, "serve")
		sc.cmd.Env = os.Environ()
		for k, v := range soakEnv {
			sc.cmd.Env = append(sc.cmd.Env, k+"="+v)
		}
		// gctrace: the live heap after each GC, which /metrics lacks.
		sc.cmd.Env = append(sc.cmd.Env, "GODEBUG=gctrace=1", "FLOODGATE_REDIS_URL="+redisURL, "FLOODGATE_KEY_PREFIX="+prefix, fmt.Sprintf("FLOODGATE_HTTP_ADDR=127.0.0.1:%d", port))
		sc.cmd.Stdout, sc.cmd.Stderr = sc.out, sc.out
		sc.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := sc.cmd.Start(); err != nil {
			return nil, fmt.Errorf("soak: starting %s: %w", bin, err)
		}
		go func() { _ = sc.cmd.Wait(); close(sc.done) }()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-sc.done:
				deadline = time.Time{}
				continue
			case <-ctx.Done():
				sc.stop()
				return nil, ctx.Err()
			default:
			}
			if resp, err := sc.client.Get(sc.url + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return sc, nil
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		sc.stop()
		if attempt < 3 && strings.Contains(sc.out.String(), "address already in use") {
			continue
		}
		return nil, fmt.Errorf("soak: %s did not get ready: %s", name, sc.out.String())
	}
}

func (sc *soakSidecar) decide(ctx context.Context, user string) (allowed, degraded bool, kind string) {
	req, err := http.NewRequestWithContext(ctx, "POST", sc.url+"/v1/users/"+url.PathEscape(user)+"/allow", nil)
	if err != nil {
		return false, false, "sidecar: " + err.Error()
	}
	resp, err := sc.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return false, false, "sidecar: deadline"
		}
		return false, false, "sidecar: transport"
	}
	defer resp.Body.Close()
	var body struct {
		Allowed  bool   `json:"allowed"`
		Degraded bool   `json:"degraded"`
		Error    string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, false, fmt.Sprintf("sidecar: http %d, unreadable body", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return false, false, fmt.Sprintf("sidecar: http %d %s", resp.StatusCode, firstWords(body.Error))
	}
	return body.Allowed, body.Degraded, ""
}

// gcLive finds a gctrace line's live heap: "gc 7 @1.2s 0%: ..., 4->4->1 MB, ...".
var gcLive = regexp.MustCompile(`(?m)^gc \d+ @.*?\d+->\d+->(\d+) MB`)

// procStats reads go_goroutines and go_memstats_heap_alloc_bytes from the
// sidecar's /metrics.
func (sc *soakSidecar) procStats() soakreport.Proc {
	p := soakreport.Proc{Name: sc.name, Goroutines: -1, HeapMB: -1}
	if m := gcLive.FindAllStringSubmatch(sc.out.String(), -1); len(m) > 0 {
		p.LiveMB, _ = strconv.ParseFloat(m[len(m)-1][1], 64)
	}
	resp, err := sc.client.Get(sc.url + "/metrics")
	if err != nil {
		return p
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64*1024), 1<<20)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_goroutines":
			p.Goroutines = int(v)
		case "go_memstats_heap_alloc_bytes":
			p.HeapMB = v / 1e6
		case "process_resident_memory_bytes":
			p.RSSMB = v / 1e6
		}
	}
	return p
}

func (sc *soakSidecar) stop() {
	_ = sc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sc.done:
	case <-time.After(15 * time.Second):
		_ = sc.cmd.Process.Kill()
		<-sc.done
	}
	sc.client.CloseIdleConnections()
}
