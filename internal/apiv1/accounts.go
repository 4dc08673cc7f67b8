package apiv1

// Account is an account as the native API shows it (never its password hash).
type Account struct {
	UUID string `json:"uuid"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// AccountList is GET /api/v1/accounts, by name.
type AccountList struct {
	Accounts []Account `json:"accounts"`
}

// NewAccount is the body of POST /api/v1/accounts; type is Normal (the default) or
// SystemAdmin.
type NewAccount struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Type     string `json:"type,omitempty"`
}

// PasswordChange is the body of PUT /api/v1/accounts/{name}/password: an administrator
// gives the new password only; an account changing its own also gives its current one.
type PasswordChange struct {
	Password        string `json:"password"`
	CurrentPassword string `json:"currentPassword,omitempty"`
}

// PasswordChanged answers a password change: every session of the account has ended.
type PasswordChanged struct {
	Name            string `json:"name"`
	SessionsRevoked bool   `json:"sessionsRevoked"`
}
