package httpapi

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

const sessionKey = "vmrestore.session"

// loginPath is ZStack's login route (routes.go), the one route of /zstack/v1 that anyone may
// call.
const loginPath = "/zstack/v1/accounts/login"

// requireSession checks "Authorization: OAuth <session>" as ZStack does: a missing header or
// another scheme is a plain-text 400, an unknown or expired session is ID.1001. The request's
// context then reads on behalf of the session's account (store.OnBehalfOf): another account's
// job answers as one that does not exist, from the store itself, whatever the handler.
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		if h == "" {
			return plain(http.StatusBadRequest, "missing header 'Authorization'")
		}
		scheme, token, _ := strings.Cut(strings.TrimSpace(h), " ")
		if scheme != "OAuth" {
			return plain(http.StatusBadRequest, "Authorization type must be 'OAuth'")
		}
		sess, err := s.Auth.Session(c.Request().Context(), strings.TrimSpace(token))
		if err != nil {
			return err
		}
		c.Set(sessionKey, sess)
		c.SetRequest(c.Request().WithContext(store.OnBehalfOf(c.Request().Context(), sess.AccountUUID, auth.IsAdmin(sess))))
		return next(c)
	}
}

func session(c echo.Context) *store.Session {
	sess, _ := c.Get(sessionKey).(*store.Session)
	return sess
}

// ownerFilter is the account whose records a session may see: its own, or all for admin.
func ownerFilter(sess *store.Session) string {
	if auth.IsAdmin(sess) {
		return ""
	}
	return sess.AccountUUID
}

// canSee reports whether a session may see a record owned by account.
func canSee(sess *store.Session, account string) bool {
	return auth.IsAdmin(sess) || sess.AccountUUID == account
}

// login is PUT /zstack/v1/accounts/login.
func (s *Server) login() echo.HandlerFunc {
	return func(c echo.Context) error {
		var body zstack.LogInByAccountRequest
		if err := decodeJSON(c, &body); err != nil {
			return err
		}
		l := body.LogInByAccount
		switch {
		case l == nil:
			return zstack.InvalidArgument("the body must be {\"logInByAccount\": {\"accountName\": ..., \"password\": <SHA-512 hex of the password>}}")
		case l.AccountName == "" || len(l.AccountName) > 255:
			return zstack.InvalidArgument("field[accountName] is mandatory and at most 255 characters")
		case len(l.Password) != 128:
			return zstack.InvalidArgument("field[password] must be the SHA-512 hex (128 characters) of the password")
		}
		sess, err := s.Auth.Login(c.Request().Context(), l.AccountName, l.Password, c.RealIP())
		if err != nil {
			return err
		}
		return writeAnswer(c, false, field{"inventory", sess.Inventory(), zstack.ClassSession})
	}
}

// logout is DELETE /zstack/v1/accounts/sessions/{uuid}. As in ZStack, whose APILogOutMsg
// suppresses the credential check, it needs no Authorization: the session uuid is itself the
// credential, and ending it is all its holder can ask. Ending an unknown session succeeds.
func (s *Server) logout() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.Auth.Logout(c.Request().Context(), c.Param("uuid")); err != nil {
			return err
		}
		return writeAnswer(c, false)
	}
}

// validateSession is GET /zstack/v1/accounts/sessions/{uuid}/valid (ValidateSession, which
// needs no Authorization either): {"valid": true} while the session can be used.
func (s *Server) validateSession() echo.HandlerFunc {
	return func(c echo.Context) error {
		_, err := s.Auth.Session(c.Request().Context(), c.Param("uuid"))
		if ec, ok := zstack.AsErrorCode(err); ok && ec.Code == zstack.CodeInvalidSession {
			return writeAnswer(c, false, field{"valid", false, nil})
		}
		if err != nil {
			return err
		}
		return writeAnswer(c, false, field{"valid", true, nil})
	}
}
