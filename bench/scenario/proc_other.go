//go:build !linux

package scenario

import "syscall"

// childAttr is the default elsewhere: without Pdeathsig, a bench that dies
// without stopping its nodes leaves them running, to be stopped by PID
// (see the log files under Config.Out/nodes).
func childAttr() *syscall.SysProcAttr { return nil }
