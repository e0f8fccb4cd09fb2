//go:build !linux

package testenv

import (
	"os"
	"syscall"
)

// nginxSysProcAttr returns nil: process groups and parent-death signals are
// set up on Linux only, where CI runs.
func nginxSysProcAttr() *syscall.SysProcAttr { return nil }

// nginxQuit asks nginx to stop.
func nginxQuit(p *os.Process) error { return p.Signal(os.Interrupt) }

// nginxKill kills the nginx master; without a process group its worker may
// outlive it until it notices.
func nginxKill(p *os.Process) error { return p.Kill() }
