package zstack

// The envelopes of ZStack's REST answers, and the login body.

// ErrorAnswer is every error answer: {"error": ErrorCode}, on the ZStack routes as on the
// native ones.
type ErrorAnswer struct {
	Error *ErrorCode `json:"error"`
}

// AsyncAnswer is the 202 of an asynchronous call: where to poll (GET
// /zstack/v1/api-jobs/{uuid}), and the job's timeout in milliseconds (vmrestore's; ZStack's
// SDKs read only the location).
type AsyncAnswer struct {
	Location   string `json:"location"`
	APITimeout int64  `json:"apiTimeout"`
}

// LogInByAccountRequest is the body of PUT /zstack/v1/accounts/login (APILogInByAccountMsg).
type LogInByAccountRequest struct {
	LogInByAccount *LogInByAccount `json:"logInByAccount"`
}

// LogInByAccount names the account and carries its password's SHA-512, in hex.
type LogInByAccount struct {
	AccountName string `json:"accountName"`
	Password    string `json:"password"`
}
