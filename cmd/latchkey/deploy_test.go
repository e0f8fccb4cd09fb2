package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey/internal/testenv"
)

// The systemd unit in deploy/ is one systemd accepts without a warning,
// and runs the server with flags it has.
func TestDeploySystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../deploy/latchkey.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	m := regexp.MustCompile(`(?m)^ExecStart=(\S+) (.*)$`).FindStringSubmatch(unit)
	if m == nil || m[1] != "/usr/local/bin/latchkey" {
		t.Fatalf("ExecStart = %q; want /usr/local/bin/latchkey server …", m)
	}
	args := strings.Fields(m[2])
	if len(args) == 0 || args[0] != "server" {
		t.Fatalf("ExecStart runs %q, want the server", args)
	}
	parseServerArgs(t, args[1:])
	for _, d := range []string{"User=latchkey", "StateDirectory=latchkey", "NoNewPrivileges=yes", "ProtectSystem=strict", "KillSignal=SIGTERM", "Restart=on-failure"} {
		if !strings.Contains(unit, "\n"+d+"\n") {
			t.Errorf("the unit lacks %s", d)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Require(t, "systemd-analyze (apt-get install -y systemd)")
		return
	}
	// verify checks that ExecStart's program exists: point it at one that does.
	tmp := filepath.Join(t.TempDir(), "latchkey.service")
	if err := os.WriteFile(tmp, []byte(strings.Replace(unit, m[1], "/bin/true", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", tmp).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The Dockerfile builds a static binary, runs it as a non-root user, and
// its CMD and HEALTHCHECK are commands the binary has.
func TestDeployDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := strings.ReplaceAll(string(b), "\\\n", " ")
	if !regexp.MustCompile(`(?m)^RUN CGO_ENABLED=0 go build .*-o /out/latchkey \./cmd/latchkey$`).MatchString(df) {
		t.Error("the build stage does not build ./cmd/latchkey with CGO_ENABLED=0 (a static binary for the distroless image)")
	}
	if m := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(df); m == nil || strings.HasPrefix(m[1], "0") || strings.HasPrefix(m[1], "root") {
		t.Errorf("USER = %q; the image must run as a non-root user", m)
	}
	jsonArgs := func(directive string) []string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + directive + `\s+(\[.*\])\s*$`).FindStringSubmatch(df)
		if m == nil {
			t.Fatalf("no %s [...] line", directive)
		}
		var args []string
		if err := json.Unmarshal([]byte(m[1]), &args); err != nil {
			t.Fatalf("%s: %v", directive, err)
		}
		return args
	}
	if ep := jsonArgs("ENTRYPOINT"); len(ep) != 1 || ep[0] != "/usr/local/bin/latchkey" {
		t.Fatalf("ENTRYPOINT = %q", ep)
	}
	cmd := jsonArgs("CMD")
	if len(cmd) == 0 || cmd[0] != "server" {
		t.Fatalf("CMD = %q, want the server", cmd)
	}
	parseServerArgs(t, cmd[1:])
	hc := jsonArgs(`HEALTHCHECK .*\sCMD`)
	if len(hc) < 2 || hc[0] != "/usr/local/bin/latchkey" || hc[1] != "health" {
		t.Fatalf("HEALTHCHECK runs %q, want latchkey health", hc)
	}
	// The health check's flags are the command's own (a wrong one would
	// exit 2 and mark every container unhealthy).
	e := &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	if err := runHealth(t.Context(), e, append(hc[2:], "--timeout", "1ms")); exitCode(err) == 2 {
		t.Fatalf("HEALTHCHECK's arguments %q are not latchkey health's: %v", hc[2:], err)
	}
}

// parseServerArgs fails t unless the server's flag set takes args.
func parseServerArgs(t *testing.T, args []string) {
	t.Helper()
	_, fs := serverFlags(&env{getenv: func(string) string { return "" }, stderr: io.Discard})
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		t.Fatalf("the server does not take %q: %v", args, err)
	}
}
