package testenv

import (
	"os"
	"syscall"
)

// nginxSysProcAttr puts nginx in its own process group, so that a kill
// reaches its worker too, and asks the kernel to stop it (SIGTERM, nginx's
// fast shutdown, which takes the worker along) if the test binary dies
// without running its cleanups, e.g. on a go test -timeout panic.
func nginxSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// nginxQuit asks the nginx master for a graceful shutdown.
func nginxQuit(p *os.Process) error { return p.Signal(syscall.SIGQUIT) }

// nginxKill kills nginx's whole process group: the master and its worker.
func nginxKill(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }
