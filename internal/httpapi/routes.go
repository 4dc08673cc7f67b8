package httpapi

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// routes lists every route. ZStack routes need a session, except login; health, readiness
// and metrics are outside /zstack. Query routes answer both the list and the /{uuid} form.
func (s *Server) routes(e *echo.Echo) {
	e.GET("/", s.index())
	e.GET("/healthz", s.healthz())
	e.GET("/readyz", s.readyz())
	e.GET("/metrics", s.metrics())

	// Route-level (not group-level) middleware, so that a known path with another method
	// answers 405 rather than the group's catch-all 404. Body caps and read times are global
	// middleware chosen by path (limitBody, server.go), for the same reason.
	e.Use(exactParams)
	z := e.Group("/zstack/v1")
	auth := s.requireSession
	// Login, logout and the session check need no session, as in ZStack (their messages
	// suppress the credential check).
	z.PUT("/accounts/login", s.login())
	z.DELETE("/accounts/sessions/:uuid", s.logout())
	z.GET("/accounts/sessions/:uuid/valid", s.validateSession())
	z.POST("/vm-instances/from/vm-backups/:groupUuid", s.createVMFromBackup(), auth)
	z.GET("/api-jobs/:uuid", s.pollJob(), auth)
	z.DELETE("/vm-instances/:uuid", s.destroyVM(), auth)
	z.PUT("/vm-instances/:uuid/actions", s.vmAction(), auth)
	z.GET("/l3-networks/ip/free", s.freeIPs(false), auth)
	z.GET("/l3-networks/:uuid/ip/free", s.freeIPs(false), auth)
	z.GET("/l3-networks/ip-ranges/:uuid/ip/free", s.freeIPs(true), auth)
	s.queryPaths = map[string]bool{}
	for path, h := range queryRoutes(s) {
		s.queryPaths[path] = true
		z.GET(path, h, auth)
		z.GET(path+"/:uuid", h, auth)
	}

	// vmrestore's native API (see openapi.yaml): plans, jobs.
	a := e.Group("/api/v1")
	a.GET("/openapi.yaml", s.openAPI())
	a.POST("/restores", s.restoreNow(), auth)
	a.POST("/plans", s.submitPlan(), auth)
	a.GET("/plans", s.listPlans(), auth)
	a.GET("/plans/:uuid", s.getPlan(), auth)
	a.GET("/plans/:uuid/events", s.planEvents(), auth)
	a.POST("/plans/:uuid/cancel", s.operatePlan("cancel"), auth)
	a.POST("/plans/:uuid/pause", s.operatePlan("pause"), auth)
	a.POST("/plans/:uuid/resume", s.operatePlan("resume"), auth)
	a.POST("/plans/:uuid/retry", s.operatePlan("retry"), auth)
	a.POST("/plans/:uuid/cleanup", s.cleanupPlan(), auth)
	a.GET("/plans/:uuid/report", s.planReport(), auth)
	a.GET("/reports", s.listReports(), auth)
	a.GET("/jobs/:uuid", s.getJob(), auth)
	a.POST("/jobs/:uuid/cancel", s.cancelJob(), auth)
	a.GET("/accounts", s.listAccounts(), auth)
	a.POST("/accounts", s.createAccount(), auth)
	a.PUT("/accounts/:name/password", s.setPassword(), auth)
	a.DELETE("/accounts/:name", s.deleteAccount(), auth)
}

// exactParams answers 404 "no api mapping to <path>" when a path variable is empty or spans
// several segments: echo lets a route's last variable take the rest of the path, so
// /hosts/{uuid} would otherwise answer /hosts/x/y/z, and /zones/{uuid} /zones//x.
func exactParams(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		for _, name := range c.ParamNames() {
			if v := c.Param(name); v == "" || strings.Contains(v, "/") {
				return echo.ErrNotFound
			}
		}
		return next(c)
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

// queryRoutes are ZStack's query APIs: GET of a resource's list and of one by uuid.
func queryRoutes(s *Server) map[string]echo.HandlerFunc {
	return map[string]echo.HandlerFunc{
		"/vm-instances":       s.listVMs(),
		"/volume-backups":     s.listVolumeBackups(),
		"/images":             s.listImages(),
		"/zones":              s.listZones(),
		"/clusters":           s.listClusters(),
		"/hosts":              s.listHosts(),
		"/primary-storage":    s.listPrimaryStorages(),
		"/backup-storage":     s.listBackupStorages(),
		"/l3-networks":        s.listL3Networks(),
		"/instance-offerings": s.listInstanceOfferings(),
	}
}

// isQueryPath says whether a GET of path would be a query of a resource: ZStack reads any
// GET under a query resource as a query, so one that no query route serves (a GET on
// /vm-instances/from/vm-backups/{uuid}, the create route) is an unknown path (404), not a
// known path with another method (405).
func (s *Server) isQueryPath(method, path string) bool {
	rest, ok := strings.CutPrefix(path, "/zstack/v1/")
	if method != http.MethodGet || !ok {
		return false
	}
	first, _, _ := strings.Cut(rest, "/")
	return s.queryPaths["/"+first]
}
