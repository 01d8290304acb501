package bench

import (
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

// IsTerminal reports whether w is a terminal. Only an *os.File can be one;
// buffers, pipes and files are not.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// Progress is the load phase's progress bar. It draws on w only when w is a
// terminal: redrawn bars in a log file or a pipe are noise that a program
// reading the output would have to strip. A zero or nil Progress does
// nothing. It is safe for concurrent use.
type Progress struct {
	bar *progressbar.ProgressBar
}

// NewProgress returns a bar counting to total on w, labelled desc, or a
// silent Progress when w is not a terminal.
func NewProgress(w io.Writer, total int64, desc string) *Progress {
	if !IsTerminal(w) {
		return &Progress{}
	}
	return &Progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond), // redraw at 10 Hz, not per insert
		progressbar.OptionOnCompletion(func() { io.WriteString(w, "\n") }),
	)}
}

// Add advances the bar by n.
func (p *Progress) Add(n int) {
	if p == nil || p.bar == nil {
		return
	}
	_ = p.bar.Add(n) // only fails writing to the terminal; nothing to do then
}

// Finish completes the bar and ends its line.
func (p *Progress) Finish() {
	if p == nil || p.bar == nil {
		return
	}
	_ = p.bar.Finish()
}

// Visible reports whether the bar draws anything.
func (p *Progress) Visible() bool { return p != nil && p.bar != nil }
