package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	// origHome is $HOME when the test binary started: tests may change HOME
	// for the clients they run, but the build must keep using the
	// developer's Go caches.
	origHome  = os.Getenv("HOME")
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("harness: go.mod not found above " + file)
		}
		dir = parent
	}
}

// Binary builds cmd/mosaic once per test binary (or uses $MOSAIC_BIN) and
// returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MOSAIC_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mosaic-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mosaic")
		start := time.Now()
		defer func() { fmt.Fprintf(os.Stderr, "harness: built %s in %v\n", binPath, time.Since(start)) }()
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/mosaic")
		cmd.Dir = RepoRoot(t)
		cmd.Env = append(os.Environ(), "HOME="+origHome)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/mosaic: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// RequireTool fails the test (never skips) if a command is not installed.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (apt-get install %s; .ci/run installs it): this test cannot run without it", name, pkg)
	}
	return p
}

// FreePort returns a free TCP port on host.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("free port on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a mosaic process under test.
type Process struct {
	t       testing.TB
	Args    []string
	Env     []string
	APIAddr string
	LogPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// NodeOptions describe a `mosaic serve` node.
type NodeOptions struct {
	DataDir  string // default: a new temp dir
	MountDir string // empty: no mount
	Host     string // default 127.0.0.1
	Extra    []string
}

// StartNode starts `mosaic serve` and waits until its API answers.
func StartNode(t testing.TB, o NodeOptions) *Process {
	t.Helper()
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	api := net.JoinHostPort(o.Host, fmt.Sprint(FreePort(t, o.Host)))
	raftAddr := net.JoinHostPort(o.Host, fmt.Sprint(FreePort(t, o.Host)))
	args := []string{"serve", "--data-dir", o.DataDir, "--api-addr", api, "--raft-addr", raftAddr, "--log-level", "debug"}
	if o.MountDir != "" {
		args = append(args, "--mount", o.MountDir)
	}
	args = append(args, o.Extra...)
	p := &Process{t: t, Args: args, APIAddr: api, LogPath: filepath.Join(t.TempDir(), "node.log")}
	p.Start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("log of mosaic at %s:\n%s", p.APIAddr, tail(p.Log(), 200))
		}
	})
	return p
}

// NewProcess describes a mosaic process with explicit arguments without
// starting it (call Start). apiAddr is where its API answers. The process
// is stopped at cleanup and its log shown if the test failed.
func NewProcess(t testing.TB, apiAddr string, args, env []string) *Process {
	t.Helper()
	p := &Process{t: t, Args: args, Env: env, APIAddr: apiAddr, LogPath: filepath.Join(t.TempDir(), "node.log")}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("log of mosaic at %s:\n%s", p.APIAddr, tail(p.Log(), 200))
		}
	})
	return p
}

// URL returns the node's API base URL.
func (p *Process) URL() string { return "http://" + p.APIAddr }

// Start (re)starts the process with the same arguments and waits for its API.
func (p *Process) Start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.Args, " "))
	cmd := exec.Command(Binary(p.t), p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start mosaic: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	p.WaitReady(60 * time.Second)
}

// WaitReady polls GET /versions until it answers or the process exits.
func (p *Process) WaitReady(timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.t.Fatalf("mosaic exited before serving; log:\n%s", p.Log())
		default:
		}
		resp, err := client.Get(p.URL() + "/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	p.t.Fatalf("mosaic did not serve within %v; log:\n%s", timeout, p.Log())
}

// Kill sends SIGKILL (a crash) and waits for the process to exit.
func (p *Process) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits (up to 30 s, then SIGKILL).
func (p *Process) Stop() { p.signal(syscall.SIGTERM) }

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		p.t.Errorf("mosaic did not exit within 30 s of %v", sig)
	}
}

// Log returns the process's output so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Run runs a command with extra environment and returns stdout; it fails
// the test with stderr if the command fails.
func Run(t testing.TB, ctx context.Context, env []string, name string, args ...string) string {
	t.Helper()
	out, errOut, err := RunErr(ctx, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// RunErr runs a command and returns stdout, stderr and the error.
func RunErr(ctx context.Context, env []string, name string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
