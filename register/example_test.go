package register_test

import (
	"context"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/register"
)

// A Go service registers itself like a Spring Cloud Zookeeper service, and
// on SIGTERM drains through the zkgate controller before it deregisters and
// stops serving.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("hello\n"))
	})}
	go srv.Serve(ln)

	drainer, err := register.NewControllerDrainer("http://127.0.0.1:7070",
		register.ControllerOptions{Token: os.Getenv("ZKGATE_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	reg, err := register.Register(startCtx, register.Options{
		Servers:      []string{"127.0.0.1:2181"},
		Service:      "orders",
		Address:      ln.Addr().String(),
		Metadata:     map[string]string{"version": "1.4.2"},
		Health:       &register.HealthCheck{URL: "http://" + ln.Addr().String() + "/", Interval: 5 * time.Second},
		Drainer:      drainer,
		DrainTimeout: 20 * time.Second,
	})
	cancel()
	if err != nil {
		log.Fatal(err)
	}

	<-ctx.Done() // SIGTERM

	// Drain (every gateway stops picking the instance and finishes what it
	// sent), deregister, close the session; then stop serving.
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := reg.Shutdown(shutCtx); err != nil {
		log.Printf("shutdown: %v", err)
	}
	srv.Shutdown(shutCtx)
}
