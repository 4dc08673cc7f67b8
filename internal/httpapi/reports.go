package httpapi

import (
	"bytes"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/plan"
	"github.com/vmrestore/vmrestore/internal/reportpage"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// planReport is GET /api/v1/plans/{uuid}/report: the plan's run report, as JSON, or with
// ?format=html a self-contained page, or ?format=csv one line per VM. The report stored when
// the plan ended is answered even once the plan's VMs are cleaned up; a plan still running
// answers its report so far.
func (s *Server) planReport() echo.HandlerFunc {
	return func(c echo.Context) error {
		format := c.QueryParam("format")
		if format != "" && format != "json" && format != "html" && format != "csv" {
			return zstack.InvalidArgument("format=%q must be json, html or csv", format)
		}
		ctx, uuid := c.Request().Context(), c.Param("uuid")
		rep, err := plan.StoredOrLiveReport(ctx, s.Store, uuid, s.Config.ReportRetention)
		if errors.Is(err, store.ErrNotFound) {
			return zstack.Errorf(zstack.CodeNotFound, "plan %s does not exist, and no report of it is kept", uuid)
		}
		if err != nil {
			return err
		}
		if !canSee(session(c), rep.StartedByAccountUUID) {
			return zstack.Errorf(zstack.CodeNotFound, "plan %s does not exist, and no report of it is kept", uuid)
		}
		return writeReport(c, rep, format)
	}
}

// writeReport answers a report in a format.
func writeReport(c echo.Context, rep *apiv1.RunReport, format string) error {
	var buf bytes.Buffer
	h := c.Response().Header()
	h.Set(echo.HeaderXContentTypeOptions, "nosniff")
	switch format {
	case "html":
		if err := reportpage.HTML(&buf, rep); err != nil {
			return err
		}
		h.Set(echo.HeaderContentType, "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	case "csv":
		if err := reportpage.CSV(&buf, rep); err != nil {
			return err
		}
		h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		h.Set(echo.HeaderContentDisposition, `attachment; filename="report-`+rep.PlanUUID+`.csv"`)
	default:
		return writeJSON(c, http.StatusOK, rep)
	}
	return c.Blob(http.StatusOK, h.Get(echo.HeaderContentType), buf.Bytes())
}

// listReports is GET /api/v1/reports: the stored run reports the session may see, newest
// first, without their VMs.
func (s *Server) listReports() echo.HandlerFunc {
	return func(c echo.Context) error {
		list, err := plan.Reports(c.Request().Context(), s.Store, ownerFilter(session(c)), s.Config.ReportRetention)
		if err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, apiv1.RunReportList{Reports: list})
	}
}
