package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// nginxBin is where Debian's nginx package puts the binary.
const nginxBin = "/usr/sbin/nginx"

// Bounds on waiting for nginx; a test must never hang on a stuck child.
const (
	nginxReadyTimeout = 10 * time.Second
	nginxStopTimeout  = 5 * time.Second
	// nginxStartAttempts bounds retries when another process takes the
	// port between FreePort and nginx's bind.
	nginxStartAttempts = 3
)

// NginxConfig says what StartNginx puts in front of what.
type NginxConfig struct {
	// AuthURL is the full URL of the forward-auth endpoint, with the scopes
	// that every request must hold, e.g.
	// http://127.0.0.1:1234/v1/auth?scope=data:read. proxy=nginx is added
	// to the query when absent (see NginxSnippet).
	AuthURL string
	// UpstreamURL is the protected application, e.g. http://127.0.0.1:5678.
	// It may carry a path, which replaces the leading "/" of each request
	// path as proxy_pass does; it may not carry a query.
	UpstreamURL string
	// ExtraLocations is raw nginx configuration inserted into the server
	// block after the generated locations, for tests that need more routes.
	ExtraLocations string
	// NoAccessLog turns the access log off (scripts/bench: a log line per
	// request is disk work on the measured core, and grows without bound).
	NoAccessLog bool
}

// Nginx is a running nginx started by StartNginx. It is stopped when the test
// that started it ends.
type Nginx struct {
	// URL is the base URL nginx serves on, http://127.0.0.1:PORT, with no
	// trailing slash.
	URL string
	// Dir holds nginx.conf, the pid file, error.log, access.log and the
	// temp paths.
	Dir string

	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has been waited for
	stderr *syncBuffer
}

// StartNginx runs nginx in the foreground from a fresh t.TempDir(), listening
// on 127.0.0.1 only, with the forward-auth configuration of NginxSnippet in
// front of cfg.UpstreamURL. It returns once nginx accepts connections, and
// stops nginx (SIGQUIT, then SIGKILL to its process group after a bound) when
// the test ends; if the test failed, it logs nginx's stderr and logs first.
// Without an nginx binary it calls Require.
func StartNginx(t testing.TB, cfg NginxConfig) *Nginx {
	t.Helper()
	bin := findNginx()
	if bin == "" {
		Require(t, "nginx at "+nginxBin+" (apt-get install -y nginx)")
		return nil
	}
	targets, err := parseNginxTargets(cfg.AuthURL, cfg.UpstreamURL)
	if err != nil {
		t.Fatalf("testenv: StartNginx: %v", err)
	}
	dir := t.TempDir()
	if strings.ContainsAny(dir, "\"\\") {
		// nginx.conf quotes every path; TempDir never produces these.
		t.Fatalf("testenv: StartNginx: temp dir %q cannot be quoted in nginx.conf", dir)
	}
	for attempt := 1; ; attempt++ {
		n, err := startNginxOnce(t, bin, dir, targets, cfg)
		if err == nil {
			return n
		}
		if errors.Is(err, errAddrInUse) && attempt < nginxStartAttempts {
			t.Logf("testenv: nginx lost its port to another process (attempt %d); retrying", attempt)
			continue
		}
		t.Fatalf("testenv: StartNginx: %v", err)
	}
}

// errAddrInUse marks a start that failed only because the port was taken.
var errAddrInUse = errors.New("address already in use")

func startNginxOnce(t testing.TB, bin, dir string, targets nginxTargets, cfg NginxConfig) (*Nginx, error) {
	t.Helper()
	port := FreePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	conf := filepath.Join(dir, "nginx.conf")
	text := nginxMainConfig(dir, nginxHTTPConfig(targets, listen, cfg.ExtraLocations), !cfg.NoAccessLog)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	// Logs of an earlier attempt would only confuse the failure report.
	_ = os.Remove(filepath.Join(dir, "error.log"))

	args := []string{"-p", dir, "-c", conf}
	if nginxSupportsE(bin) {
		// -e sends the errors nginx meets before it has read error_log
		// from the config (a bad config, a taken port) to our stderr
		// buffer instead of a compiled-in path such as /var/log/nginx.
		args = append(args, "-e", "stderr")
	}
	// "daemon off;" is in nginx.conf; nginx rejects it given a second time
	// with -g, so the config file alone keeps nginx in the foreground.
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	stderr := &syncBuffer{}
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.SysProcAttr = nginxSysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	n := &Nginx{
		URL:    "http://" + listen,
		Dir:    dir,
		cmd:    cmd,
		done:   make(chan struct{}),
		stderr: stderr,
	}
	go func() {
		_ = cmd.Wait()
		close(n.done)
	}()

	if err := n.waitReady(listen); err != nil {
		n.stop(t)
		if strings.Contains(stderr.String(), "Address already in use") {
			return nil, errAddrInUse
		}
		return nil, fmt.Errorf("%v\nnginx stderr:\n%s\nerror.log:\n%s\nnginx.conf:\n%s",
			err, stderr.String(), readTail(filepath.Join(dir, "error.log"), 50), text)
	}
	t.Cleanup(func() {
		n.stop(t)
		if t.Failed() {
			t.Logf("nginx at %s (dir %s)\nstderr:\n%s\nerror.log:\n%s\naccess.log:\n%s",
				n.URL, dir, stderr.String(),
				readTail(filepath.Join(dir, "error.log"), 100),
				readTail(filepath.Join(dir, "access.log"), 50))
		}
	})
	return n, nil
}

// waitReady polls until nginx accepts TCP connections on addr, the process
// exits, or nginxReadyTimeout passes.
func (n *Nginx) waitReady(addr string) error {
	deadline := time.Now().Add(nginxReadyTimeout)
	for {
		select {
		case <-n.done:
			return fmt.Errorf("nginx exited before accepting connections (%v)", n.cmd.ProcessState)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx did not accept connections on %s within %v: %v", addr, nginxReadyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop asks nginx to finish gracefully and kills its whole process group if
// it has not exited within nginxStopTimeout: killing only the master would
// leave its worker holding the port.
func (n *Nginx) stop(t testing.TB) {
	select {
	case <-n.done:
		return
	default:
	}
	if err := nginxQuit(n.cmd.Process); err != nil {
		t.Logf("testenv: signal nginx (pid %d) to quit: %v", n.cmd.Process.Pid, err)
	}
	select {
	case <-n.done:
		return
	case <-time.After(nginxStopTimeout):
	}
	t.Logf("testenv: nginx (pid %d) did not quit within %v; killing it", n.cmd.Process.Pid, nginxStopTimeout)
	if err := nginxKill(n.cmd.Process); err != nil {
		t.Logf("testenv: kill nginx (pid %d): %v", n.cmd.Process.Pid, err)
	}
	select {
	case <-n.done:
	case <-time.After(nginxStopTimeout):
		t.Errorf("testenv: nginx (pid %d) still running after SIGKILL", n.cmd.Process.Pid)
	}
}

// findNginx returns the nginx binary to run, or "" if there is none.
func findNginx() string {
	if fi, err := os.Stat(nginxBin); err == nil && !fi.IsDir() {
		return nginxBin
	}
	// Outside Debian (a developer's laptop) nginx may live elsewhere.
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	return ""
}

var (
	nginxEOnce sync.Once
	nginxE     bool
	nginxVerRe = regexp.MustCompile(`nginx/(\d+)\.(\d+)\.(\d+)`)
)

// nginxSupportsE reports whether nginx knows the -e flag (added in 1.19.5).
func nginxSupportsE(bin string) bool {
	nginxEOnce.Do(func() {
		out, _ := exec.Command(bin, "-v").CombinedOutput()
		m := nginxVerRe.FindSubmatch(out)
		if m == nil {
			return
		}
		var v [3]int
		for i := range v {
			v[i], _ = strconv.Atoi(string(m[i+1]))
		}
		nginxE = v[0] > 1 || (v[0] == 1 && (v[1] > 19 || (v[1] == 19 && v[2] >= 5)))
	})
	return nginxE
}

// nginxTargets is what the generated configuration needs from the two URLs.
type nginxTargets struct {
	authScheme string // http or https
	authServer string // host:port for the upstream block
	authHost   string // Host header (the URL's authority as written)
	authSNI    string // host name for TLS, when https
	authURI    string // path and query, with proxy=nginx
	appScheme  string
	appServer  string
	appSNI     string
	appPath    string // "" or a path such as /base/
}

// unsafeInConfig are characters that would end a directive, open a block,
// start a comment or interpolate a variable inside nginx.conf.
const unsafeInConfig = " \t\r\n;{}$#'\"\\"

func parseNginxTargets(authURL, upstreamURL string) (nginxTargets, error) {
	var tg nginxTargets
	au, err := parseHTTPURL("AuthURL", authURL)
	if err != nil {
		return tg, err
	}
	q := au.Query()
	switch {
	case !q.Has("proxy"):
		// nginx turns an auth answer of 429 into a 500; proxy=nginx makes
		// Latchkey answer limits with 403 + X-Latchkey-Code instead, which
		// the snippet maps back to 429.
		if au.RawQuery != "" {
			au.RawQuery += "&"
		}
		au.RawQuery += "proxy=nginx"
	case q.Get("proxy") != "nginx":
		return tg, fmt.Errorf("AuthURL %q: proxy=%s; nginx needs proxy=nginx", authURL, q.Get("proxy"))
	}
	tg.authScheme = au.Scheme
	tg.authServer = hostPort(au)
	tg.authHost = au.Host
	tg.authSNI = au.Hostname()
	tg.authURI = au.EscapedPath()
	if tg.authURI == "" {
		tg.authURI = "/"
	}
	tg.authURI += "?" + au.RawQuery

	uu, err := parseHTTPURL("UpstreamURL", upstreamURL)
	if err != nil {
		return tg, err
	}
	if uu.RawQuery != "" || uu.ForceQuery {
		return tg, fmt.Errorf("UpstreamURL %q: a query cannot be proxied to; drop it", upstreamURL)
	}
	tg.appScheme = uu.Scheme
	tg.appServer = hostPort(uu)
	tg.appSNI = uu.Hostname()
	tg.appPath = uu.EscapedPath()

	for _, s := range []string{tg.authServer, tg.authHost, tg.authURI, tg.appServer, tg.appPath} {
		if strings.ContainsAny(s, unsafeInConfig) {
			return tg, fmt.Errorf("%q contains a character that nginx.conf cannot hold unquoted (one of %q)", s, unsafeInConfig)
		}
	}
	return tg, nil
}

func parseHTTPURL(field, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s %q: want an absolute http:// or https:// URL", field, raw)
	}
	if u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%s %q: user info and fragments have no place in a proxy target", field, raw)
	}
	return u, nil
}

// hostPort returns host:port with the scheme's default port filled in, as an
// nginx upstream server needs it (nginx would otherwise assume 80 for https).
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// NginxSnippet returns the nginx configuration that puts Latchkey's
// forward-auth in front of an application: a map, two upstream blocks and a
// server block, for the http {} context. It is the text the documentation
// ships and the text StartNginx runs (there with listen 127.0.0.1:PORT
// instead of listen 80), so the docs are tested.
//
// authURL is the full URL of GET /v1/auth with the scopes every request must
// hold, e.g. http://127.0.0.1:8080/v1/auth?scope=data:read; proxy=nginx is
// added to its query when absent, because nginx answers 500 whenever the
// auth endpoint answers anything but 2xx, 401 or 403. With proxy=nginx
// Latchkey answers limits with 403 plus X-Latchkey-Code, and the snippet turns
// RATE_LIMITED, QUOTA_EXCEEDED and CONCURRENCY_EXCEEDED back into a 429 with
// Retry-After for the client. upstreamURL is the protected application.
//
// NginxSnippet panics if either URL is not an absolute http(s) URL that
// nginx.conf can hold; the URLs are the caller's constants, not input.
func NginxSnippet(authURL, upstreamURL string) string {
	tg, err := parseNginxTargets(authURL, upstreamURL)
	if err != nil {
		panic("testenv.NginxSnippet: " + err.Error())
	}
	return nginxHTTPConfig(tg, "80", "")
}

// NginxConf returns the whole nginx.conf that StartNginx would run for cfg,
// listening on listen (127.0.0.1:PORT) and keeping every file nginx writes
// inside dir, for programs that run nginx outside a test (scripts/bench,
// through internal/benchnginx). Run it with nginx -p DIR -c DIR/nginx.conf;
// it stays in the foreground.
func NginxConf(dir, listen string, cfg NginxConfig) (string, error) {
	tg, err := parseNginxTargets(cfg.AuthURL, cfg.UpstreamURL)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(dir, "\"\\") || strings.ContainsAny(listen, unsafeInConfig) {
		return "", fmt.Errorf("dir %q or listen %q cannot be written into nginx.conf", dir, listen)
	}
	return nginxMainConfig(dir, nginxHTTPConfig(tg, listen, cfg.ExtraLocations), !cfg.NoAccessLog), nil
}

// nginxHTTPConfig renders the forward-auth configuration for the http {}
// context. Every header and variable name here is part of API.md's
// GET /v1/auth contract.
func nginxHTTPConfig(tg nginxTargets, listen, extra string) string {
	authTLS, appTLS := "", ""
	if tg.authScheme == "https" {
		authTLS = "\n        proxy_ssl_server_name on;\n        proxy_ssl_name " + tg.authSNI + ";"
	}
	if tg.appScheme == "https" {
		appTLS = "\n        proxy_ssl_server_name on;\n        proxy_ssl_name " + tg.appSNI + ";"
	}
	if extra != "" {
		extra = "\n    # Extra locations (NginxConfig.ExtraLocations).\n" + extra + "\n"
	}
	return strings.NewReplacer(
		"{{LISTEN}}", listen,
		"{{AUTH_SCHEME}}", tg.authScheme,
		"{{AUTH_SERVER}}", tg.authServer,
		"{{AUTH_HOST}}", tg.authHost,
		"{{AUTH_URI}}", tg.authURI,
		"{{AUTH_TLS}}", authTLS,
		"{{APP_SCHEME}}", tg.appScheme,
		"{{APP_SERVER}}", tg.appServer,
		"{{APP_PATH}}", tg.appPath,
		"{{APP_TLS}}", appTLS,
		"{{EXTRA}}", extra,
	).Replace(nginxHTTPTemplate)
}

const nginxHTTPTemplate = `# Latchkey forward-auth for nginx (http {} context).
#
# With ?proxy=nginx the auth endpoint answers rate, quota and concurrency
# limits with 403 plus X-Latchkey-Code, because nginx turns any auth_request
# status but 2xx, 401 and 403 into a 500. This map and @latchkey_denied give
# the client its 429 back; every other 403 stays a 403.
map $lk_code $lk_status {
    default              403;
    RATE_LIMITED         429;
    QUOTA_EXCEEDED       429;
    CONCURRENCY_EXCEEDED 429;
}

# Upstream blocks so that nginx keeps connections to Latchkey and to the
# application open; a new TCP connection per auth subrequest would cost more
# than the check itself.
upstream latchkey_auth {
    server {{AUTH_SERVER}};
    keepalive 32;
}

upstream latchkey_app {
    server {{APP_SERVER}};
    keepalive 32;
}

server {
    listen {{LISTEN}};

    location / {
        auth_request /_latchkey_auth;

        # Identity and limit headers of the auth answer. Variables set here
        # survive the internal redirect to @latchkey_denied.
        auth_request_set $lk_key_id       $upstream_http_x_latchkey_key_id;
        auth_request_set $lk_tenant       $upstream_http_x_latchkey_tenant;
        auth_request_set $lk_owner        $upstream_http_x_latchkey_owner;
        auth_request_set $lk_scopes       $upstream_http_x_latchkey_scopes;
        auth_request_set $lk_code         $upstream_http_x_latchkey_code;
        auth_request_set $lk_retry        $upstream_http_retry_after;
        auth_request_set $lk_rl_limit     $upstream_http_ratelimit_limit;
        auth_request_set $lk_rl_remaining $upstream_http_ratelimit_remaining;
        auth_request_set $lk_rl_reset     $upstream_http_ratelimit_reset;

        # A 403 from auth_request goes to @latchkey_denied, which picks 403
        # or 429. A 403 from the application is not touched
        # (proxy_intercept_errors is off).
        error_page 403 = @latchkey_denied;

        # Empty values (e.g. no code on success) add no header.
        add_header X-Latchkey-Code     $lk_code         always;
        add_header Retry-After         $lk_retry        always;
        add_header RateLimit-Limit     $lk_rl_limit     always;
        add_header RateLimit-Remaining $lk_rl_remaining always;
        add_header RateLimit-Reset     $lk_rl_reset     always;

        proxy_pass {{APP_SCHEME}}://latchkey_app{{APP_PATH}};{{APP_TLS}}
        proxy_http_version 1.1;
        proxy_set_header Connection        "";
        proxy_set_header Host              $host;
        proxy_set_header X-Real-IP         $remote_addr;
        proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # Who the key belongs to, for the application. Setting them here
        # also replaces any X-Latchkey-* header the client sent itself.
        proxy_set_header X-Latchkey-Key-Id $lk_key_id;
        proxy_set_header X-Latchkey-Tenant $lk_tenant;
        proxy_set_header X-Latchkey-Owner  $lk_owner;
        proxy_set_header X-Latchkey-Scopes $lk_scopes;
    }

    location = /_latchkey_auth {
        internal;
        # The subrequest carries the client's headers, so Authorization and
        # X-API-Key reach Latchkey as sent; the body stays behind. nginx
        # sends it as a GET whatever the client's method, which travels in
        # X-Original-Method.
        proxy_pass {{AUTH_SCHEME}}://latchkey_auth{{AUTH_URI}};{{AUTH_TLS}}
        proxy_pass_request_body off;
        proxy_set_header Content-Length    "";
        proxy_http_version 1.1;
        proxy_set_header Connection        "";
        proxy_set_header Host              {{AUTH_HOST}};
        proxy_set_header X-Original-URI    $request_uri;
        proxy_set_header X-Original-Method $request_method;
        # nginx is the edge here: the peer address is the client. Behind
        # another proxy, set it with the realip module first.
        proxy_set_header X-Real-IP         $remote_addr;
        proxy_set_header X-Forwarded-For   $remote_addr;
        # The required scopes and resource come from the URL above, never
        # from the client.
        proxy_set_header X-Latchkey-Scope    "";
        proxy_set_header X-Latchkey-Resource "";
    }

    location @latchkey_denied {
        add_header X-Latchkey-Code     $lk_code         always;
        add_header Retry-After         $lk_retry        always;
        add_header RateLimit-Limit     $lk_rl_limit     always;
        add_header RateLimit-Remaining $lk_rl_remaining always;
        add_header RateLimit-Reset     $lk_rl_reset     always;
        # return takes a literal status, hence the test on the map's value.
        if ($lk_status = 429) {
            return 429;
        }
        return 403;
    }
{{EXTRA}}}
`

// nginxMainConfig wraps the http-context configuration in a whole nginx.conf
// that keeps every file nginx writes inside dir.
func nginxMainConfig(dir, httpConfig string, accessLog bool) string {
	p := func(name string) string { return `"` + filepath.Join(dir, name) + `"` }
	var b strings.Builder
	b.WriteString("# Generated by internal/testenv.StartNginx.\n")
	access := p("access.log")
	if !accessLog {
		access = "off"
	}
	if os.Geteuid() == 0 {
		// As root, nginx would run its worker as nobody, which cannot
		// enter the 0700 temp dir; the worker writes temp files there.
		b.WriteString("user root;\n")
	}
	fmt.Fprintf(&b, `daemon off;
master_process on;
worker_processes 1;
pid %s;
lock_file %s;
error_log %s notice;

events {
    worker_connections 1024;
}

http {
    access_log %s;
    default_type application/octet-stream;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;

%s}
`, p("nginx.pid"), p("nginx.lock"), p("error.log"), access,
		p("client_body_temp"), p("proxy_temp"), p("fastcgi_temp"), p("uwsgi_temp"), p("scgi_temp"),
		indent(httpConfig, "    "))
	return b.String()
}

// indent prefixes every non-empty line of s with pad.
func indent(s, pad string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			b.WriteString(pad)
		}
		b.WriteString(l)
	}
	return b.String()
}

// readTail returns the last n lines of the file at path, or a note saying
// why it cannot.
func readTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("(… %d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// syncBuffer is a bytes.Buffer safe for a child's output copier and a reader
// in another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
