package httpapi

import (
	"github.com/labstack/echo/v4"
)

// routes lists every route. ZStack routes need a session, except login; health, readiness
// and metrics are outside /zstack.
func (s *Server) routes(e *echo.Echo) {
	e.GET("/healthz", s.healthz())
	e.GET("/readyz", s.readyz())
	e.GET("/metrics", s.metrics())

	z := e.Group("/zstack/v1")
	z.PUT("/accounts/login", s.login())

	a := z.Group("", s.requireSession)
	a.DELETE("/accounts/sessions/:uuid", s.logout())
	a.POST("/vm-instances/from/vm-backups/:groupUuid", s.createVMFromBackup())
	a.GET("/api-jobs/:uuid", s.pollJob())
	a.GET("/vm-instances", s.listVMs())
	a.GET("/vm-instances/:uuid", s.listVMs())
	a.GET("/volume-backups", s.listVolumeBackups())
	a.GET("/volume-backups/:uuid", s.listVolumeBackups())
	a.GET("/zones", s.listZones())
	a.GET("/zones/:uuid", s.listZones())
	a.GET("/clusters", s.listClusters())
	a.GET("/clusters/:uuid", s.listClusters())
	a.GET("/hosts", s.listHosts())
	a.GET("/hosts/:uuid", s.listHosts())
	a.GET("/primary-storage", s.listPrimaryStorages())
	a.GET("/primary-storage/:uuid", s.listPrimaryStorages())
	a.GET("/backup-storage", s.listBackupStorages())
	a.GET("/backup-storage/:uuid", s.listBackupStorages())
	a.GET("/l3-networks", s.listL3Networks())
	a.GET("/l3-networks/:uuid", s.listL3Networks())
	a.GET("/instance-offerings", s.listInstanceOfferings())
	a.GET("/instance-offerings/:uuid", s.listInstanceOfferings())
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
