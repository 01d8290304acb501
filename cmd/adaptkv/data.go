package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/client"
)

// maxStdinValue bounds a value read from stdin, so that a mistaken pipe
// cannot exhaust memory. It is far above any node's value limit (1 MiB by
// default), which then rejects the value with a message naming the limit.
const maxStdinValue = 64 << 20

// levelFlags are the consistency flags of the data commands.
type levelFlags struct {
	keyspace string
	level    string
	r, w     int
}

func (f *levelFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.keyspace, "keyspace", client.DefaultKeyspace, "keyspace to use")
	fs.StringVar(&f.level, "consistency", "", "consistency level: one, quorum, all or linearizable (default: the keyspace's default)")
	fs.IntVar(&f.r, "r", 0, "read quorum R for a custom level (with --w; only R is used by reads)")
	fs.IntVar(&f.w, "w", 0, "write quorum W for a custom level (with --r; only W is used by writes)")
}

// parseLevel maps a --consistency value to a client level.
func parseLevel(s string) (client.Level, error) {
	if l, ok := api.ParseLevel(s); ok && l != client.Custom {
		return l, nil
	}
	return 0, usagef("--consistency %q: want one, quorum, all or linearizable (or --r and --w for custom quorums)", s)
}

// condFlags are the conditions of put and del: at most one of them makes
// the write conditional (client.PutIf, client.DeleteIf).
type condFlags struct {
	ifVersion string
	ifAbsent  bool
	ifValue   string
}

func (f *condFlags) register(fs *pflag.FlagSet, absent bool) {
	fs.StringVar(&f.ifVersion, "if-version", "", "write only if the key's current version is V (TIMESTAMP.NODE, as get prints it); exit status 4 if not")
	if absent {
		fs.BoolVar(&f.ifAbsent, "if-absent", false, "write only if the key does not exist; exit status 4 if it does")
	}
	fs.StringVar(&f.ifValue, "if-value", "", "write only if the key's current value is X; exit status 4 if not")
}

// condition returns the condition the flags ask for; ok is false when
// none. It refuses two conditions at once, a malformed version, and a
// condition with a level other than linearizable (conditional writes
// always run at linearizable), before anything is sent.
func (f *condFlags) condition(cmd *cobra.Command, lf *levelFlags, sf *sessionFlag) (cond client.Condition, ok bool, err error) {
	var given []string
	for _, name := range []string{"if-version", "if-absent", "if-value"} {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			given = append(given, "--"+name)
		}
	}
	switch len(given) {
	case 0:
		return client.Condition{}, false, nil
	case 1:
	default:
		return client.Condition{}, false, usagef("%s cannot be combined: give one condition", strings.Join(given, " and "))
	}
	if cmd.Flags().Changed("r") || cmd.Flags().Changed("w") {
		return client.Condition{}, false, usagef("%s runs at the linearizable level; --r/--w cannot be combined with it", given[0])
	}
	if l, _ := api.ParseLevel(lf.level); lf.level != "" && l != client.Linearizable {
		return client.Condition{}, false, usagef("%s runs at the linearizable level; --consistency %s cannot be combined with it (leave it out or say linearizable)", given[0], lf.level)
	}
	if cmd.Flags().Changed("session") {
		return client.Condition{}, false, usagef("%s cannot be combined with --session", given[0])
	}
	switch given[0] {
	case "--if-absent":
		return client.IfAbsent(), true, nil
	case "--if-value":
		return client.IfValue([]byte(f.ifValue)), true, nil
	}
	v, err := parseVersion(f.ifVersion)
	if err != nil {
		return client.Condition{}, false, usagef("--if-version: %v", err)
	}
	return client.IfVersion(v), true, nil
}

// parseVersion reads a version as get prints it: TIMESTAMP.NODE.
func parseVersion(s string) (client.Version, error) {
	ts, node, ok := strings.Cut(s, ".")
	t, err1 := strconv.ParseUint(ts, 10, 64)
	n, err2 := strconv.ParseUint(node, 10, 32)
	if !ok || err1 != nil || err2 != nil || t == 0 {
		return client.Version{}, fmt.Errorf("%q is not a version: want TIMESTAMP.NODE as get prints it (for example 117730940004532225.2)", s)
	}
	return client.Version{Timestamp: t, Node: uint32(n)}, nil
}

// versionText prints a version as --if-version reads it.
func versionText(v client.Version) string { return fmt.Sprintf("%d.%d", v.Timestamp, v.Node) }

// condJSON is the JSON output of a conditional put or del.
type condJSON struct {
	Key         string       `json:"key"`
	KeyEncoding string       `json:"key_encoding,omitempty"`
	Keyspace    string       `json:"keyspace"`
	Deleted     bool         `json:"deleted,omitempty"`
	Applied     bool         `json:"applied"`
	Version     *versionJSON `json:"version"`
	Current     *currentJSON `json:"current,omitempty"`
	Receipt     receiptJSON  `json:"receipt"`
}

// currentJSON is the key's record when a condition did not hold.
type currentJSON struct {
	Found         bool         `json:"found"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Version       *versionJSON `json:"version"`
}

// printCond prints a conditional write's result. A condition that did not
// hold is exit status 4 (exitCondFailed), with the current record printed
// (JSON) or named in the message (text).
func (a *app) printCond(keyspace string, key []byte, deleted bool, res *client.CondResult) error {
	if a.json() {
		out := condJSON{Keyspace: keyspace, Deleted: deleted, Applied: res.Applied, Version: toVersionJSON(res.Version), Receipt: toReceiptJSON(res.Receipt)}
		out.Key, out.KeyEncoding = bytesText(key)
		if !res.Applied {
			out.Current = &currentJSON{Found: res.Found, Version: toVersionJSON(res.Current)}
			if res.Found {
				v, enc := bytesText(res.Value)
				out.Current.Value, out.Current.ValueEncoding = &v, enc
			}
		}
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else if res.Applied {
		what := "OK"
		if deleted {
			what = "deleted"
		}
		fmt.Fprintf(a.stdout, "%s  version=%s %s\n", what, versionText(res.Version), receiptLine(res.Receipt))
	}
	if res.Applied {
		return nil
	}
	cur := "the key does not exist"
	if res.Found {
		v, enc := bytesText(res.Value)
		if enc != "" {
			v = "base64:" + v
		}
		cur = fmt.Sprintf("current value %q, version %s", v, versionText(res.Current))
	}
	return &exitError{code: exitCondFailed, msg: "condition not met: nothing written; " + cur}
}

// options converts the flags into call options. When only one of --r and
// --w is given the other takes the same value: a call uses only one of them,
// but the server checks both against N, and copying keeps a valid R (or W)
// from being refused because of the unused one.
func (f *levelFlags) options(cmd *cobra.Command) ([]client.CallOption, error) {
	opts := []client.CallOption{client.WithKeyspace(f.keyspace)}
	custom := cmd.Flags().Changed("r") || cmd.Flags().Changed("w")
	if custom {
		if f.level != "" {
			return nil, usagef("--consistency and --r/--w cannot be combined: --r/--w ask for a custom level")
		}
		r, w := f.r, f.w
		if !cmd.Flags().Changed("r") {
			r = w
		}
		if !cmd.Flags().Changed("w") {
			w = r
		}
		if r < 1 || w < 1 {
			return nil, usagef("--r %d --w %d: both must be at least 1", r, w)
		}
		return append(opts, client.WithRW(r, w)), nil
	}
	l, err := parseLevel(f.level)
	if err != nil {
		return nil, err
	}
	return append(opts, client.WithConsistency(l)), nil
}

// sessionFlag is --session of get, put and del: the call runs in an SDK
// session (client.Session), and the session's token after it is printed.
type sessionFlag struct{ token string }

func (f *sessionFlag) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.token, "session", "", `run in a session: "new" starts one, a token printed by an earlier call resumes it; `+
		`the token after the call is printed on stderr ("session TOKEN"), or as "session" with -o json`)
}

// check refuses a malformed token before anything is sent.
func (f *sessionFlag) check(cmd *cobra.Command) error {
	if !cmd.Flags().Changed("session") || f.token == "new" {
		return nil
	}
	if _, err := client.ParseSessionToken(f.token); err != nil {
		return usagef("--session: %v (pass a token printed by get, put or del --session, or \"new\")", err)
	}
	return nil
}

// open returns the session to run in, nil without --session.
func (f *sessionFlag) open(cmd *cobra.Command, c *client.Client) (*client.Session, error) {
	switch {
	case !cmd.Flags().Changed("session"):
		return nil, nil
	case f.token == "new":
		return c.Session(), nil
	}
	s, err := c.SessionFrom(f.token)
	if err != nil {
		return nil, usagef("--session: %v", err)
	}
	return s, nil
}

// tokenOf is the session's token, empty without a session.
func tokenOf(s *client.Session) string {
	if s == nil {
		return ""
	}
	return s.Token()
}

// printSession prints a session's token on stderr (text output; JSON output
// carries it as "session").
func (a *app) printSession(token string) {
	if token != "" && !a.json() {
		fmt.Fprintf(a.stderr, "session %s\n", token)
	}
}

// writeJSON is the JSON output of put and del.
type writeJSON struct {
	Key         string       `json:"key"`
	KeyEncoding string       `json:"key_encoding,omitempty"`
	Keyspace    string       `json:"keyspace"`
	Deleted     bool         `json:"deleted,omitempty"`
	Version     *versionJSON `json:"version"`
	Receipt     receiptJSON  `json:"receipt"`
	Session     string       `json:"session,omitempty"`
}

func (a *app) printWrite(keyspace string, key []byte, deleted bool, res *client.WriteResult, session string) error {
	if a.json() {
		k, kenc := bytesText(key)
		return a.printJSON(writeJSON{Key: k, KeyEncoding: kenc, Keyspace: keyspace, Deleted: deleted, Version: toVersionJSON(res.Version), Receipt: toReceiptJSON(res.Receipt), Session: session})
	}
	a.printSession(session)
	what := "OK"
	if deleted {
		what = "deleted"
	}
	_, err := fmt.Fprintf(a.stdout, "%s  %s\n", what, receiptLine(res.Receipt))
	return err
}

func (a *app) putCommand() *cobra.Command {
	var (
		lf levelFlags
		sf sessionFlag
		cf condFlags
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write VALUE under KEY (VALUE '-' reads it from stdin)",
		Long: `Write VALUE under KEY (VALUE '-' reads it from stdin).

With --if-version, --if-absent or --if-value the write is conditional: it
applies only if the key's current record meets the condition, atomically
(single-decree Paxos on the key's replicas, at the linearizable level). When
the condition does not hold nothing is written, the current value and version
are reported, and the exit status is 4.`,
		Example: `  adaptkv put hello world
  adaptkv put config.json - < config.json
  adaptkv put k v --keyspace users --consistency all
  adaptkv put lock me --if-absent
  adaptkv put counter 8 --if-version 117730940004532225.2`,
		Args: cobraArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := lf.options(cmd)
			if err != nil {
				return err
			}
			if err := sf.check(cmd); err != nil {
				return err
			}
			cond, conditional, err := cf.condition(cmd, &lf, &sf)
			if err != nil {
				return err
			}
			value := []byte(args[1])
			if args[1] == "-" {
				if value, err = io.ReadAll(io.LimitReader(a.stdin, maxStdinValue+1)); err != nil {
					return fmt.Errorf("reading the value from stdin: %w", err)
				}
				if len(value) > maxStdinValue {
					return fmt.Errorf("value on stdin is over %d MiB; values that large belong in blob storage", maxStdinValue>>20)
				}
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			if conditional {
				res, err := c.PutIf(ctx, []byte(args[0]), value, cond, opts...)
				if err != nil {
					return err
				}
				return a.printCond(lf.keyspace, []byte(args[0]), false, res)
			}
			s, err := sf.open(cmd, c)
			if err != nil {
				return err
			}
			put := c.Put
			if s != nil {
				put = s.Put
			}
			res, err := put(ctx, []byte(args[0]), value, opts...)
			if err != nil {
				return err
			}
			return a.printWrite(lf.keyspace, []byte(args[0]), false, res, tokenOf(s))
		},
	}
	lf.register(cmd.Flags())
	sf.register(cmd.Flags())
	cf.register(cmd.Flags(), true)
	return cmd
}

func (a *app) delCommand() *cobra.Command {
	var (
		lf levelFlags
		sf sessionFlag
		cf condFlags
	)
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete"},
		Short:   "Delete KEY (deleting a missing key succeeds)",
		Long: `Delete KEY (deleting a missing key succeeds).

With --if-version or --if-value the delete is conditional (see put --help);
when the condition does not hold nothing is deleted and the exit status is 4.`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := lf.options(cmd)
			if err != nil {
				return err
			}
			if err := sf.check(cmd); err != nil {
				return err
			}
			cond, conditional, err := cf.condition(cmd, &lf, &sf)
			if err != nil {
				return err
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			if conditional {
				res, err := c.DeleteIf(ctx, []byte(args[0]), cond, opts...)
				if err != nil {
					return err
				}
				return a.printCond(lf.keyspace, []byte(args[0]), true, res)
			}
			s, err := sf.open(cmd, c)
			if err != nil {
				return err
			}
			del := c.Delete
			if s != nil {
				del = s.Delete
			}
			res, err := del(ctx, []byte(args[0]), opts...)
			if err != nil {
				return err
			}
			return a.printWrite(lf.keyspace, []byte(args[0]), true, res, tokenOf(s))
		},
	}
	lf.register(cmd.Flags())
	sf.register(cmd.Flags())
	cf.register(cmd.Flags(), false)
	return cmd
}

// getJSON is the JSON output of get.
type getJSON struct {
	Key           string       `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Keyspace      string       `json:"keyspace"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Found         bool         `json:"found"`
	Version       *versionJSON `json:"version"`
	Receipt       receiptJSON  `json:"receipt"`
	Session       string       `json:"session,omitempty"`
}

// localGetJSON is the JSON output of get --local: one replica's record.
type localGetJSON struct {
	Key           string       `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Keyspace      string       `json:"keyspace"`
	Node          string       `json:"node"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Found         bool         `json:"found"`
	Tombstone     bool         `json:"tombstone"`
	Version       *versionJSON `json:"version"`
}

func (a *app) getCommand() *cobra.Command {
	var (
		lf     levelFlags
		sf     sessionFlag
		nodeID string
		local  bool
	)
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read KEY; exits 1 when the key does not exist",
		Long: `Read KEY at the requested consistency and print its value and receipt.

A key that does not exist (or was deleted) prints a "not found" message on
stderr and exits with status 1, so that scripts can tell it from an empty
value. With -o json the result, found=false included, is still printed.

--node ID --local reads node ID's own storage instead, without quorum or
repair: what that one replica holds, tombstones included.`,
		Example: `  adaptkv get hello
  adaptkv get hello --consistency one -o json
  adaptkv get hello --node n3 --local`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if local != (nodeID != "") {
				return usagef("--local and --node go together: --node ID --local reads node ID's own storage")
			}
			opts, err := lf.options(cmd)
			if err != nil {
				return err
			}
			if err := sf.check(cmd); err != nil {
				return err
			}
			if local && (lf.level != "" || cmd.Flags().Changed("r") || cmd.Flags().Changed("w") || cmd.Flags().Changed("session")) {
				return usagef("--local reads one replica; --consistency, --r, --w and --session do not apply")
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			key := []byte(args[0])
			if local {
				return a.localGet(ctx, c, nodeID, lf.keyspace, key)
			}
			s, err := sf.open(cmd, c)
			if err != nil {
				return err
			}
			get := c.Get
			if s != nil {
				get = s.Get
			}
			res, err := get(ctx, key, opts...)
			if err != nil {
				return err
			}
			return a.printGet(lf.keyspace, key, res, tokenOf(s))
		},
	}
	lf.register(cmd.Flags())
	sf.register(cmd.Flags())
	cmd.Flags().StringVar(&nodeID, "node", "", "with --local: the node whose storage to read (e.g. n2)")
	cmd.Flags().BoolVar(&local, "local", false, "read one node's own storage (needs --node), bypassing quorum and repair")
	return cmd
}

// notFound is get's result for a missing key: status 1 with a message, after
// the JSON result (if any) was printed.
func notFound(keyspace string, key []byte, detail string) error {
	k, enc := bytesText(key)
	if enc != "" {
		k = "base64:" + k
	}
	return &exitError{code: exitFailure, msg: fmt.Sprintf("key %q not found in keyspace %q (%s)", k, keyspace, detail)}
}

func (a *app) printGet(keyspace string, key []byte, res *client.GetResult, session string) error {
	a.printSession(session)
	if a.json() {
		out := getJSON{Keyspace: keyspace, Found: res.Found, Version: toVersionJSON(res.Version), Receipt: toReceiptJSON(res.Receipt), Session: session}
		out.Key, out.KeyEncoding = bytesText(key)
		if res.Found {
			v, enc := bytesText(res.Value)
			out.Value, out.ValueEncoding = &v, enc
		}
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else if res.Found {
		a.printValue(res.Value)
		fmt.Fprintf(a.stdout, "version=%s %s\n", versionText(res.Version), receiptLine(res.Receipt))
	}
	if !res.Found {
		return notFound(keyspace, key, receiptLine(res.Receipt))
	}
	return nil
}

// printValue prints a value for people: as is when it is text, else as
// base64 with a note, since raw bytes could garble the terminal.
func (a *app) printValue(v []byte) {
	text, enc := bytesText(v)
	if enc != "" {
		fmt.Fprintf(a.stdout, "%s\n(value is %d bytes, not valid UTF-8: shown as base64)\n", text, len(v))
		return
	}
	fmt.Fprintln(a.stdout, text)
}

func (a *app) localGet(ctx context.Context, c *client.Client, nodeID, keyspace string, key []byte) error {
	rec, err := c.LocalGet(ctx, nodeID, keyspace, key)
	if err != nil {
		return err
	}
	found := rec.Found && !rec.Tombstone
	if a.json() {
		out := localGetJSON{Keyspace: keyspace, Node: nodeID, Found: rec.Found, Tombstone: rec.Tombstone, Version: toVersionJSON(rec.Version)}
		out.Key, out.KeyEncoding = bytesText(key)
		if found {
			v, enc := bytesText(rec.Value)
			out.Value, out.ValueEncoding = &v, enc
		}
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else if found {
		a.printValue(rec.Value)
		fmt.Fprintf(a.stdout, "local read of node %s, version %d.%d\n", nodeID, rec.Version.Timestamp, rec.Version.Node)
	}
	switch {
	case rec.Tombstone:
		return notFound(keyspace, key, fmt.Sprintf("node %s holds a tombstone, version %d.%d", nodeID, rec.Version.Timestamp, rec.Version.Node))
	case !rec.Found:
		return notFound(keyspace, key, fmt.Sprintf("node %s has no record of it", nodeID))
	}
	return nil
}

// scanJSON is the JSON output of scan.
type scanJSON struct {
	Keyspace  string         `json:"keyspace"`
	Items     []scanItemJSON `json:"items"`
	More      bool           `json:"more"`
	NextStart *string        `json:"next_start,omitempty"`
	Receipt   receiptJSON    `json:"receipt"`
}

type scanItemJSON struct {
	Key           string       `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Value         string       `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Version       *versionJSON `json:"version"`
}

func (a *app) scanCommand() *cobra.Command {
	var (
		lf                 levelFlags
		prefix, start, end string
		limit              int
	)
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "List keys in order: all, by --prefix, or in [--start, --end)",
		Example: `  adaptkv scan --prefix user/
  adaptkv scan --start a --end m --limit 10`,
		Args: cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := lf.options(cmd)
			if err != nil {
				return err
			}
			fs := cmd.Flags()
			if fs.Changed("prefix") && (fs.Changed("start") || fs.Changed("end")) {
				return usagef("--prefix cannot be combined with --start/--end")
			}
			if limit < 0 {
				return usagef("--limit %d: must not be negative", limit)
			}
			switch {
			case prefix != "":
				opts = append(opts, client.WithPrefix([]byte(prefix)))
			case start != "" || end != "":
				opts = append(opts, client.WithRange([]byte(start), []byte(end)))
			}
			if limit > 0 {
				opts = append(opts, client.WithLimit(limit))
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			res, err := c.Scan(ctx, opts...)
			if err != nil {
				return err
			}
			// A continuation needs the same upper bound as this scan.
			bound := []byte(end)
			if prefix != "" {
				bound = client.PrefixEnd([]byte(prefix))
			}
			return a.printScan(lf.keyspace, res, bound)
		},
	}
	lf.register(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&prefix, "prefix", "", "only keys that start with this prefix")
	fs.StringVar(&start, "start", "", "first key of the range (inclusive)")
	fs.StringVar(&end, "end", "", "end of the range (exclusive); empty means no bound")
	fs.IntVar(&limit, "limit", 0, "at most this many keys (0: the server's default)")
	return cmd
}

// printScan prints a scan's result; end is the range's upper bound, for the
// hint on how to continue when the limit cut the result short.
func (a *app) printScan(keyspace string, res *client.ScanResult, end []byte) error {
	if a.json() {
		out := scanJSON{Keyspace: keyspace, Items: []scanItemJSON{}, More: res.More, Receipt: toReceiptJSON(res.Receipt)}
		for _, kv := range res.Items {
			var it scanItemJSON
			it.Key, it.KeyEncoding = bytesText(kv.Key)
			it.Value, it.ValueEncoding = bytesText(kv.Value)
			it.Version = toVersionJSON(kv.Version)
			out.Items = append(out.Items, it)
		}
		if res.More {
			ns, _ := bytesText(res.NextStart)
			out.NextStart = &ns
		}
		return a.printJSON(out)
	}
	tw := a.table()
	fmt.Fprintln(tw, "KEY\tVALUE")
	binary := false
	for _, kv := range res.Items {
		k, kenc := bytesText(kv.Key)
		v, venc := bytesText(kv.Value)
		binary = binary || kenc != "" || venc != ""
		fmt.Fprintf(tw, "%s\t%s\n", k, v)
	}
	tw.Flush()
	fmt.Fprintf(a.stdout, "%d keys  %s\n", len(res.Items), receiptLine(res.Receipt))
	if binary {
		fmt.Fprintln(a.stdout, "(keys or values that are not valid UTF-8 are shown as base64; use -o json to tell which)")
	}
	if res.More {
		ns, _ := bytesText(res.NextStart)
		hint := fmt.Sprintf("--start %q", ns)
		if len(end) > 0 {
			e, _ := bytesText(end)
			hint += fmt.Sprintf(" --end %q", e)
		}
		fmt.Fprintf(a.stdout, "more keys follow: continue with %s\n", hint)
	}
	return nil
}
