package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/mattn/go-isatty"
	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/client"
)

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// format returns the output format: -o if given, else table on a terminal
// and JSON otherwise, so that scripts get JSON without asking.
func (a *app) format() (string, error) {
	switch a.output {
	case formatTable, formatJSON:
		return a.output, nil
	case "":
		if isTerminal(a.stdout) {
			return formatTable, nil
		}
		return formatJSON, nil
	}
	return "", usagef("--output %q: want table or json", a.output)
}

// json reports whether output is JSON. format was validated before any
// command ran, so its error cannot occur here.
func (a *app) json() bool {
	f, _ := a.format()
	return f == formatJSON
}

// isTerminal reports whether w is a terminal (which decides the default
// output format and whether progress is drawn).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table returns a tab-aligned writer on stdout; the caller flushes it.
func (a *app) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
}

// bytesText renders b for output: itself when it is valid UTF-8, else its
// standard base64 encoding with encoding "base64", since arbitrary bytes
// would corrupt a terminal or a JSON string.
func bytesText(b []byte) (text, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// versionJSON is a version in JSON output.
type versionJSON struct {
	Timestamp uint64 `json:"timestamp"`
	Node      uint32 `json:"node"`
}

func toVersionJSON(v client.Version) *versionJSON {
	if v.IsZero() {
		return nil
	}
	return &versionJSON{Timestamp: v.Timestamp, Node: v.Node}
}

// receiptJSON is a receipt in JSON output.
type receiptJSON struct {
	Level       string `json:"level"`
	N           int    `json:"n"`
	Required    int    `json:"required"`
	Acked       int    `json:"acked"`
	Coordinator string `json:"coordinator"`
	Epoch       uint64 `json:"epoch"`
	Repaired    int    `json:"repaired"`
}

func toReceiptJSON(r client.Receipt) receiptJSON {
	return receiptJSON{
		Level: r.Level.String(), N: r.N, Required: r.Required, Acked: r.Acked,
		Coordinator: r.Coordinator, Epoch: r.Epoch, Repaired: r.Repaired,
	}
}

// receiptLine renders a receipt on one line for people:
// "level=quorum acked=2/2 of N=3 epoch=5 coordinator=n1".
func receiptLine(r client.Receipt) string {
	s := fmt.Sprintf("level=%s acked=%d/%d of N=%d epoch=%d coordinator=%s", r.Level, r.Acked, r.Required, r.N, r.Epoch, r.Coordinator)
	if r.Repaired > 0 {
		s += fmt.Sprintf(" repaired=%d", r.Repaired)
	}
	return s
}

// isUnknownOutcome reports a write that may or may not have been applied.
func isUnknownOutcome(err error) bool { return errors.Is(err, client.ErrUnknownOutcome) }

// describe turns err into the message after "adaptkv: ". Client errors are
// rewritten from the SDK's "client: op: message (code, reason, node)" into
// words that say what happened and, where it helps, what to do.
func describe(err error) string {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	op := strings.ReplaceAll(ce.Op, "_", " ")
	msg := ce.Message
	if msg == "" {
		msg = ce.Code.String()
	}
	switch {
	case ce.Unknown:
		return fmt.Sprintf("%s: outcome unknown, the write may or may not have been applied: %s (read the key at quorum to find out, or repeat the write)", op, msg)
	case errors.Is(err, client.ErrNodeNotFound), errors.Is(err, client.ErrKeyspaceNotFound),
		errors.Is(err, client.ErrKeyspaceExists), ce.Code == codes.InvalidArgument:
		return fmt.Sprintf("%s: %s", op, msg)
	case ce.Code == codes.Unavailable && ce.Reason == "":
		return fmt.Sprintf("%s: cannot reach the cluster: %s (is it running? try `adaptkv cluster status`)", op, msg)
	case errors.Is(err, client.ErrTimeout):
		return fmt.Sprintf("%s: timed out: %s (raise --timeout?)", op, msg)
	}
	s := fmt.Sprintf("%s: %s", op, msg)
	if ce.Reason != "" {
		s += fmt.Sprintf(" (%s)", ce.Reason)
	}
	return s
}
