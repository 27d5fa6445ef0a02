package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
)

// statusCommand is `zkgate status [--service S] [--json] [--controller URL]
// [--token T]`: a table of instances (one service, or every service) with
// their state, mark and per-gateway states; without --service, then a
// table of the gateways (whether a crash of each would be found by asking
// its admin address) and the recently departed ones. Exit 0 success, 1
// error.
func statusCommand(c *invocation) func(context.Context) int {
	var cf clientFlags
	cf.register(c.fs)
	service := c.fs.String("service", "", "show only this service")
	timeout := c.fs.Duration("timeout", 30*time.Second, "how long to wait for the controller")
	return func(ctx context.Context) int {
		client, err := cf.client()
		if err != nil {
			return c.fail(err)
		}
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		var services []string
		if *service != "" {
			services = []string{*service}
		} else {
			list, err := client.Services(cctx)
			if err != nil {
				return c.fail(err)
			}
			for _, s := range list.Services {
				services = append(services, s.Name)
			}
			if n := len(list.Skipped); n > 0 {
				q := make([]string, n)
				for i, name := range list.Skipped {
					q[i] = fmt.Sprintf("%q", name)
				}
				fmt.Fprintf(c.stderr, "zkgate status: %d registry service(s) skipped, names zkgate cannot drain: %s\n", n, strings.Join(q, ", "))
			}
		}
		views := make([]*ctlclient.ServiceResponse, 0, len(services))
		for _, s := range services {
			v, err := client.Service(cctx, s)
			var ae *ctlclient.APIError
			if *service == "" && errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
				continue // gone since it was listed
			}
			if err != nil {
				return c.fail(err)
			}
			views = append(views, v)
		}
		if cf.json {
			printJSON(c.stdout, views)
			return exitOK
		}
		var gws *ctlclient.GatewaysResponse
		if *service == "" {
			if gws, err = client.Gateways(cctx); err != nil {
				return c.fail(err)
			}
		}
		now := time.Now()
		writeStatusTable(c.stdout, views, now)
		if gws != nil {
			fmt.Fprintln(c.stdout)
			writeGatewaysTable(c.stdout, gws, now)
		}
		return exitOK
	}
}

// writeStatusTable prints one line per instance.
func writeStatusTable(w io.Writer, views []*ctlclient.ServiceResponse, now time.Time) {
	if len(views) == 0 {
		fmt.Fprintln(w, "no services")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tSTATE\tREGISTERED\tMARK\tEXPIRES\tGATEWAYS")
	for _, v := range views {
		for _, in := range v.Instances {
			reg := "no"
			if in.Registered {
				reg = "yes"
				if in.Status != "" && in.Status != "UP" {
					reg = "yes (" + in.Status + ")"
				}
			}
			mark, expires := "-", "-"
			if in.Mark != nil {
				mark = in.Mark.Reason
				if in.Mark.By != "" {
					mark += " (by " + in.Mark.By + ")"
				}
				if !in.Marked {
					mark += " [not applied]"
				}
				if in.Mark.ExpiresMs > 0 {
					left := time.UnixMilli(in.Mark.ExpiresMs).Sub(now)
					if left <= 0 {
						expires = "expired"
					} else {
						expires = "in " + left.Round(time.Second).String()
					}
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Service, in.Addr, in.State, reg, mark, expires, gatewaySummary(in.Gateways))
		}
	}
	tw.Flush()
}

// writeGatewaysTable prints one line per live gateway, then one per
// recently departed one.
func writeGatewaysTable(w io.Writer, gws *ctlclient.GatewaysResponse, now time.Time) {
	if len(gws.Gateways) == 0 {
		fmt.Fprintln(w, "no live gateways")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GATEWAY\tLISTEN\tVERSION\tMARKS\tUPDATED\tCRASH PROBE")
		for _, g := range gws.Gateways {
			probe := "ready"
			if !g.ProbeReady {
				probe = "no: " + g.ProbeNote
			}
			if g.Error != "" {
				probe = "report unreadable: " + g.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", g.ID, g.Listen, g.Version, len(g.Marks), ago(now, g.UpdatedMs), probe)
		}
		tw.Flush()
	}
	for _, d := range gws.Departed {
		what := "may still route by its last state: drains report it lost"
		switch {
		case d.Leaving:
			what = "left (graceful shutdown)"
		case d.Gone != "":
			what = "gone: " + d.Gone
		case d.Probe != "":
			what += " (" + d.Probe + ")"
		}
		fmt.Fprintf(w, "departed %s %s: %s\n", d.ID, ago(now, d.DepartedMs), what)
	}
}

// ago is e.g. "3s ago"; "-" for 0.
func ago(now time.Time, ms int64) string {
	if ms == 0 {
		return "-"
	}
	return now.Sub(time.UnixMilli(ms)).Round(time.Second).String() + " ago"
}

// gatewaySummary is e.g. "gw-1:drained gw-2:draining(3)".
func gatewaySummary(gs []ctlclient.GatewayInstance) string {
	if len(gs) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(gs))
	for _, g := range gs {
		s := g.ID + ":" + g.State
		if g.InFlight > 0 {
			s += fmt.Sprintf("(%d)", g.InFlight)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}
