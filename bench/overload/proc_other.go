//go:build !linux

package overload

import "syscall"

// childAttr is the default elsewhere: a bench that dies without stopping its
// nodes leaves them running, to be stopped by PID.
func childAttr() *syscall.SysProcAttr { return nil }
