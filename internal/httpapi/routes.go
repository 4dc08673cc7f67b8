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
	// answers 405 rather than the group's catch-all 404.
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
