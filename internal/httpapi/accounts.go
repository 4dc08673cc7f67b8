package httpapi

import (
	"net/http"
	"sort"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

func requireAdmin(c echo.Context) error {
	if !auth.IsAdmin(session(c)) {
		return zstack.Errorf(zstack.CodePermission, "only a SystemAdmin account may manage accounts")
	}
	return nil
}

// listAccounts is GET /api/v1/accounts (admin).
func (s *Server) listAccounts() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := requireAdmin(c); err != nil {
			return err
		}
		accts, err := s.Store.ListAccounts(c.Request().Context())
		if err != nil {
			return err
		}
		out := make([]apiv1.Account, 0, len(accts))
		for _, a := range accts {
			out = append(out, apiv1.Account{UUID: a.UUID, Name: a.Name, Type: a.Type})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return writeJSON(c, http.StatusOK, apiv1.AccountList{Accounts: out})
	}
}

// createAccount is POST /api/v1/accounts (admin): {"name", "password", "type"}.
func (s *Server) createAccount() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := requireAdmin(c); err != nil {
			return err
		}
		var b apiv1.NewAccount
		if err := decodeJSON(c, &b); err != nil {
			return err
		}
		if b.Type == "" {
			b.Type = catalog.AccountNormal
		}
		a, err := s.Auth.CreateAccount(c.Request().Context(), b.Name, b.Password, b.Type)
		if err != nil {
			return err
		}
		return writeJSON(c, http.StatusCreated, apiv1.Account{UUID: a.UUID, Name: a.Name, Type: a.Type})
	}
}

// setPassword is PUT /api/v1/accounts/{name}/password: admin sets any password; an account
// may change its own with its current password, checked under the login limits (a wrong one
// counts as a failed login, and a throttled one answers 429 with Retry-After). Every session
// of the account ends.
func (s *Server) setPassword() echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("name")
		sess := session(c)
		var b apiv1.PasswordChange
		if err := decodeJSON(c, &b); err != nil {
			return err
		}
		ctx := c.Request().Context()
		if !auth.IsAdmin(sess) {
			if sess.AccountName != name {
				return zstack.Errorf(zstack.CodePermission, "an account may only change its own password")
			}
			if _, err := s.Auth.Verify(ctx, name, auth.SHA512Hex(b.CurrentPassword), c.RealIP()); err != nil {
				// A wrong password is a bare ID.1000; a throttled check (*auth.Throttled) keeps its
				// own answer and Retry-After.
				if ec, ok := err.(*zstack.ErrorCode); ok && ec.Code == zstack.CodeAuthFailed {
					return zstack.Errorf(zstack.CodeAuthFailed, "currentPassword is wrong")
				}
				return err
			}
		}
		if err := s.Auth.SetPassword(ctx, name, b.Password); err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, apiv1.PasswordChanged{Name: name, SessionsRevoked: true})
	}
}

// deleteAccount is DELETE /api/v1/accounts/{name} (admin).
func (s *Server) deleteAccount() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := requireAdmin(c); err != nil {
			return err
		}
		if err := s.Auth.DeleteAccount(c.Request().Context(), c.Param("name")); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}
