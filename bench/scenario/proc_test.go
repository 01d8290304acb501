package scenario

import (
	"os"
	"syscall"
)

// processAlive returns nil when pid names a live process (not a zombie).
func processAlive(pid int) error {
	if err := syscall.Kill(pid, 0); err != nil {
		return err
	}
	if b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat"); err == nil {
		// The state follows the command name in parentheses.
		s := string(b)
		for i := len(s) - 1; i >= 0; i-- {
			if s[i] == ')' {
				if i+2 < len(s) && s[i+2] == 'Z' {
					return syscall.ESRCH
				}
				break
			}
		}
	}
	return nil
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
