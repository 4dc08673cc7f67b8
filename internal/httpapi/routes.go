package httpapi

import (
	"github.com/labstack/echo/v4"
)

// routes lists every route. ZStack routes need a session, except login; health, readiness
// and metrics are outside /zstack. Query routes answer both the list and the /{uuid} form.
func (s *Server) routes(e *echo.Echo) {
	e.GET("/healthz", s.healthz())
	e.GET("/readyz", s.readyz())
	e.GET("/metrics", s.metrics())

	// Route-level (not group-level) middleware, so that a known path with another method
	// answers 405 rather than the group's catch-all 404. Body caps and read times are global
	// middleware chosen by path (limitBody, server.go), for the same reason.
	z := e.Group("/zstack/v1")
	auth := s.requireSession
	z.PUT("/accounts/login", s.login())
	z.DELETE("/accounts/sessions/:uuid", s.logout(), auth)
	z.POST("/vm-instances/from/vm-backups/:groupUuid", s.createVMFromBackup(), auth)
	z.GET("/api-jobs/:uuid", s.pollJob(), auth)
	for path, h := range map[string]echo.HandlerFunc{
		"/vm-instances":       s.listVMs(),
		"/volume-backups":     s.listVolumeBackups(),
		"/zones":              s.listZones(),
		"/clusters":           s.listClusters(),
		"/hosts":              s.listHosts(),
		"/primary-storage":    s.listPrimaryStorages(),
		"/backup-storage":     s.listBackupStorages(),
		"/l3-networks":        s.listL3Networks(),
		"/instance-offerings": s.listInstanceOfferings(),
	} {
		z.GET(path, h, auth)
		z.GET(path+"/:uuid", h, auth)
	}

	// vmrestore's native API (see openapi.yaml): plans, jobs.
	a := e.Group("/api/v1")
	a.GET("/openapi.yaml", s.openAPI())
	a.POST("/plans", s.submitPlan(), auth)
	a.GET("/plans", s.listPlans(), auth)
	a.GET("/plans/:uuid", s.getPlan(), auth)
	a.GET("/plans/:uuid/events", s.planEvents(), auth)
	a.POST("/plans/:uuid/cancel", s.operatePlan("cancel"), auth)
	a.POST("/plans/:uuid/pause", s.operatePlan("pause"), auth)
	a.POST("/plans/:uuid/resume", s.operatePlan("resume"), auth)
	a.POST("/plans/:uuid/retry", s.operatePlan("retry"), auth)
	a.GET("/jobs/:uuid", s.getJob(), auth)
	a.POST("/jobs/:uuid/cancel", s.cancelJob(), auth)
	a.GET("/accounts", s.listAccounts(), auth)
	a.POST("/accounts", s.createAccount(), auth)
	a.PUT("/accounts/:name/password", s.setPassword(), auth)
	a.DELETE("/accounts/:name", s.deleteAccount(), auth)
}

// OpsHandler serves only /healthz, /readyz and /metrics: the worker's listener.
func (s *Server) OpsHandler() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.GET("/healthz", s.healthz())
	e.GET("/readyz", s.readyz())
	e.GET("/metrics", s.metrics())
	return e
}
