package component

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/zkgate/zkgate/internal/zksession"
)

func TestGroupKeepsFirstFailureOnly(t *testing.T) {
	g := NewGroup(slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	for _, err := range []error{nil, context.Canceled, http.ErrServerClosed, zksession.ErrClosed} {
		g.Go("quiet", func() error { return err })
	}
	g.Wait()
	if g.Err() != nil {
		t.Fatalf("Err = %v after components stopped as asked", g.Err())
	}
	select {
	case <-g.Failed():
		t.Fatal("Failed closed without a failure")
	default:
	}
	boom := errors.New("boom")
	g.Go("a", func() error { return boom })
	g.Wait()
	g.Go("b", func() error { return errors.New("later") })
	g.Wait()
	<-g.Failed()
	if !errors.Is(g.Err(), boom) || g.Err().Error() != "a: boom" {
		t.Fatalf("Err = %v, want the first failure named by its component", g.Err())
	}
}
