package apiv1

// Account is an account as the native API shows it (never its password hash).
type Account struct {
	UUID string `json:"uuid"`
	Name string `json:"name"`
	Type string `json:"type"`
}
