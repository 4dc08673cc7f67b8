package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vmrestore/vmrestore/internal/client"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

func termIsTerminal(fd int) bool { return term.IsTerminal(fd) }

// sessionFile is ~/.config/restorectl/session.json: the session of each api URL.
type sessionFile struct {
	Sessions map[string]savedSession `json:"sessions"`
}

type savedSession struct {
	UUID       string    `json:"uuid"`
	Account    string    `json:"account"`
	LoggedInAt time.Time `json:"loggedInAt"`
	Expires    time.Time `json:"expires,omitzero"`
}

// sessionsPath is RESTORECTL_CONFIG, else $XDG_CONFIG_HOME/restorectl/session.json, else
// ~/.config/restorectl/session.json.
func (a *cli) sessionsPath() (string, error) {
	if p := a.getenv("RESTORECTL_CONFIG"); p != "" {
		return p, nil
	}
	if d := a.getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "restorectl", "session.json"), nil
	}
	home := a.getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("cannot tell where to keep the session (no HOME): set RESTORECTL_CONFIG to a file path, or give --session")
		}
	}
	return filepath.Join(home, ".config", "restorectl", "session.json"), nil
}

func loadSessions(path string) (*sessionFile, error) {
	f := &sessionFile{Sessions: map[string]savedSession{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the saved sessions: %w", err)
	}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("the saved sessions in %s do not parse (%v): remove the file and log in again", path, err)
	}
	if f.Sessions == nil {
		f.Sessions = map[string]savedSession{}
	}
	return f, nil
}

// save writes the file readable by its owner only, atomically.
func (f *sessionFile) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save the session: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".session-*.json")
	if err != nil {
		return fmt.Errorf("save the session: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save the session: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save the session: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save the session: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save the session: %w", err)
	}
	return nil
}

func (a *cli) loginCommand() *cobra.Command {
	var account string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Open a session on the api and save it for this URL",
		Long: `Open a session on the api and save it for --url in ~/.config/restorectl/session.json
(mode 0600; RESTORECTL_CONFIG names another file). The password is read from stdin with
--password-stdin, else from RESTORECTL_PASSWORD, else asked for without echo when stdin is a
terminal. As ZStack clients do, only its SHA-512 is sent.`,
		Args: args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := a.baseURL()
			if err != nil {
				return err
			}
			password, err := a.password(account, base, fromStdin)
			if err != nil {
				return err
			}
			c, err := a.newClient(base, "")
			if err != nil {
				return err
			}
			inv, err := c.Login(a.ctx, account, password)
			if err != nil {
				return err
			}
			path, err := a.sessionsPath()
			if err != nil {
				return err
			}
			f, err := loadSessions(path)
			if err != nil {
				return err
			}
			f.Sessions[base] = savedSession{UUID: inv.UUID, Account: account, LoggedInAt: time.Now().UTC().Truncate(time.Second),
				Expires: inv.ExpiredDate.Time.UTC()}
			if err := f.save(path); err != nil {
				return err
			}
			switch a.output {
			case "table":
				exp := ""
				if !inv.ExpiredDate.IsZero() {
					exp = fmt.Sprintf(" until %s", inv.ExpiredDate.Local().Format(time.DateTime))
				}
				fmt.Fprintf(a.stdout, "Logged in to %s as %s%s; session saved in %s\n", base, account, exp, path)
				return nil
			default:
				return a.print(struct {
					URL     string                   `json:"url"`
					Account string                   `json:"account"`
					Session *zstack.SessionInventory `json:"session"`
					File    string                   `json:"file"`
				}{base, account, inv, path}, nil)
			}
		},
	}
	cmd.Flags().StringVar(&account, "account", a.env("RESTORECTL_ACCOUNT", "admin"), "account name (env RESTORECTL_ACCOUNT)")
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of stdin")
	return cmd
}

// password reads the password from stdin, RESTORECTL_PASSWORD, or a no-echo prompt.
func (a *cli) password(account, base string, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(a.stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", fmt.Errorf("read the password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("--password-stdin: stdin gave an empty password")
		}
		return pw, nil
	}
	if pw := a.getenv("RESTORECTL_PASSWORD"); pw != "" {
		return pw, nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", &usageError{err: errors.New("no password: give --password-stdin (and pipe it in), set RESTORECTL_PASSWORD, or run in a terminal to be asked")}
	}
	fmt.Fprintf(a.stderr, "Password for %s at %s: ", account, base)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	if len(b) == 0 {
		return "", errors.New("empty password")
	}
	return string(b), nil
}

func (a *cli) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "End the session of this URL and forget it",
		Args:  args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := a.baseURL()
			if err != nil {
				return err
			}
			path, err := a.sessionsPath()
			if err != nil {
				return err
			}
			f, err := loadSessions(path)
			if err != nil {
				return err
			}
			session := a.session
			saved, hasSaved := f.Sessions[base]
			if session == "" {
				session = saved.UUID
			}
			if session == "" {
				fmt.Fprintf(a.stdout, "Not logged in to %s\n", base)
				return nil
			}
			c, err := a.newClient(base, session)
			if err != nil {
				return err
			}
			remoteErr := c.Logout(a.ctx, session)
			if client.HasCode(remoteErr, zstack.CodeInvalidSession) {
				remoteErr = nil // already expired or logged out: forgetting it is all there is to do
			}
			if hasSaved && saved.UUID == session {
				delete(f.Sessions, base)
				if err := f.save(path); err != nil {
					return err
				}
			}
			if remoteErr != nil {
				return remoteErr
			}
			fmt.Fprintf(a.stdout, "Logged out of %s\n", base)
			return nil
		},
	}
}
