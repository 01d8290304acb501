package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/client"
)

// readPassword reads a password from the first line of stdin.
func (a *app) readPassword() (string, error) {
	line, err := bufio.NewReader(io.LimitReader(a.stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read the password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usagef("no password on stdin")
	}
	return pw, nil
}

type userJSON struct {
	Name         string         `json:"name"`
	ClusterAdmin bool           `json:"cluster_admin"`
	Grants       []client.Grant `json:"grants"`
	HasPassword  bool           `json:"has_password"`
	Created      string         `json:"created,omitempty"`
}

func toUserJSON(u *client.User) userJSON {
	out := userJSON{Name: u.Name, ClusterAdmin: u.ClusterAdmin, Grants: u.Grants, HasPassword: u.HasPassword}
	if !u.Created.IsZero() {
		out.Created = u.Created.UTC().Format(time.RFC3339Nano)
	}
	return out
}

func grantsText(u *client.User) string {
	if u.ClusterAdmin {
		return "cluster admin"
	}
	if len(u.Grants) == 0 {
		return "-"
	}
	var parts []string
	for _, g := range u.Grants {
		parts = append(parts, g.Keyspace+":"+g.Role.String())
	}
	return strings.Join(parts, " ")
}

func (a *app) printUsers(list []*client.User, one bool) error {
	if a.json() {
		if one {
			return a.printJSON(toUserJSON(list[0]))
		}
		out := make([]userJSON, 0, len(list))
		for _, u := range list {
			out = append(out, toUserJSON(u))
		}
		return a.printJSON(out)
	}
	tw := a.table()
	fmt.Fprintln(tw, "NAME\tPASSWORD\tPERMISSIONS")
	for _, u := range list {
		pw := "no"
		if u.HasPassword {
			pw = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, pw, grantsText(u))
	}
	return tw.Flush()
}

// userCommand is `adaptkv user`: users and their permissions, kept in the
// cluster's metadata log. On an --insecure cluster they are stored but not
// enforced.
func (a *app) userCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "user",
		Aliases: []string{"users"},
		Short:   "Create users and grant them permissions on keyspaces",
		Long: `Users are the names of client certificates (adaptkv cert create-client) or
users with a password, who log in for a short-lived token. Roles read, write and
admin apply per keyspace ("*" for every keyspace); cluster admins may do
everything. The user root always exists with every permission.`,
	}
	run := func(f func(cmd *cobra.Command, args []string, c *client.Client) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			cmd.SetContext(ctx)
			return f(cmd, args, c)
		}
	}

	var pwStdin bool
	create := &cobra.Command{
		Use:   "create NAME [--password-stdin]",
		Short: "Create a user with no permissions",
		Example: `  adaptkv user create alice
  echo "$PASSWORD" | adaptkv user create reporting --password-stdin`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pw string
			if pwStdin {
				var err error
				if pw, err = a.readPassword(); err != nil {
					return err
				}
			}
			return run(func(cmd *cobra.Command, args []string, c *client.Client) error {
				u, err := c.CreateUser(cmd.Context(), args[0], pw)
				if err != nil {
					return err
				}
				return a.printUsers([]*client.User{u}, true)
			})(cmd, args)
		},
	}
	create.Flags().BoolVar(&pwStdin, "password-stdin", false, "read a password from the first line of stdin (without it the user needs a client certificate)")

	drop := &cobra.Command{
		Use:   "drop NAME",
		Short: "Remove a user and its permissions (not root)",
		Args:  cobraArgs(cobra.ExactArgs(1)),
		RunE: run(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if err := c.DropUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "user %s dropped\n", args[0])
			return err
		}),
	}

	passwd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Set a user's password from the first line of stdin (tokens under the old one stop working)",
		Args:  cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := a.readPassword()
			if err != nil {
				return err
			}
			return run(func(cmd *cobra.Command, args []string, c *client.Client) error {
				if err := c.SetPassword(cmd.Context(), args[0], pw); err != nil {
					return err
				}
				_, err := fmt.Fprintf(a.stdout, "password of %s set\n", args[0])
				return err
			})(cmd, args)
		},
	}

	grantCmd := func(use, short string, revoke bool) *cobra.Command {
		var keyspace, role string
		var clusterAdmin bool
		cmd := &cobra.Command{
			Use:   use + " NAME (--keyspace KS --role read|write|admin | --cluster-admin)",
			Short: short,
			Args:  cobraArgs(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, args []string) error {
				var r client.Role
				switch {
				case clusterAdmin && (keyspace != "" || role != ""):
					return usagef("--cluster-admin cannot be combined with --keyspace or --role")
				case !clusterAdmin && (keyspace == "" || role == ""):
					return usagef("give --keyspace and --role, or --cluster-admin")
				case !clusterAdmin:
					var err error
					if r, err = client.ParseRole(role); err != nil {
						return usageErr(err)
					}
				}
				return run(func(cmd *cobra.Command, args []string, c *client.Client) error {
					var u *client.User
					var err error
					switch {
					case clusterAdmin:
						u, err = c.SetClusterAdmin(cmd.Context(), args[0], !revoke)
					case revoke:
						u, err = c.RevokeRole(cmd.Context(), args[0], keyspace, r)
					default:
						u, err = c.GrantRole(cmd.Context(), args[0], keyspace, r)
					}
					if err != nil {
						return err
					}
					return a.printUsers([]*client.User{u}, true)
				})(cmd, args)
			},
		}
		cmd.Flags().StringVar(&keyspace, "keyspace", "", `keyspace, or "*" for every keyspace`)
		cmd.Flags().StringVar(&role, "role", "", "read (get, scan), write (put, del) or admin (alter, tuner; includes read and write)")
		cmd.Flags().BoolVar(&clusterAdmin, "cluster-admin", false, "cluster administration: every keyspace, users, node operations")
		return cmd
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List users and their permissions",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: run(func(cmd *cobra.Command, args []string, c *client.Client) error {
			users, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			return a.printUsers(users, false)
		}),
	}
	cmd.AddCommand(create, drop, passwd,
		grantCmd("grant", "Grant a role on a keyspace, or cluster administration", false),
		grantCmd("revoke", "Take a role on a keyspace, or cluster administration, back", true),
		list)
	return cmd
}
