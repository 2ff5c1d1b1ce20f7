package hub_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// startGRPCHub runs a hub with the gRPC API on a free port, logged in as
// admin (hubtest.Start leaves gRPC off).
func startGRPCHub(t *testing.T) *hubtest.Hub {
	t.Helper()
	cfg := hub.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.MQTTAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	h, err := hub.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatalf("starting hub: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub stopped with error: %v", err)
		}
	})
	th := &hubtest.Hub{Hub: h, DataDir: cfg.DataDir, Client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	var login struct{ Token string }
	th.API(t, "POST", "/api/v1/auth/login", map[string]string{"username": hub.AdminUser, "password": th.AdminPassword(t)}, http.StatusOK, &login)
	th.Token = login.Token
	return th
}

func TestGRPCOffByDefault(t *testing.T) {
	if got := startHub(t).GRPCAddr(); got != "" {
		t.Fatalf("GRPCAddr = %q with the default config, want off", got)
	}
}

// TestGRPCSubscribeSeesMQTTTelemetry follows a point from a device's MQTT
// publish through ingest to a gRPC subscriber, with the token from REST
// login.
func TestGRPCSubscribeSeesMQTTTelemetry(t *testing.T) {
	h := startGRPCHub(t)
	mc := mustDial(t, h.MQTTAddr(), "pump-7", h.AddDevice(t, "pump-7"))
	conn, err := grpc.NewClient(h.GRPCTarget(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tel := apiv1.NewTelemetryServiceClient(conn)

	if _, err := tel.Query(ctx, &apiv1.QueryRequest{Device: "pump-7"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Query without a token: %v, want Unauthenticated", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.Token)
	stream, err := tel.Subscribe(ctx, &apiv1.SubscribeRequest{Devices: []string{"pump-7"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	if code := mc.publish(t, protocol.TelemetryTopic("pump-7"), batch("pump-7", 1, 20.5), protocol.ContentTypeProtobuf); code != codeSuccess {
		t.Fatalf("publish: reason %#x", code)
	}
	msg, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.GetPoints()) != 1 || msg.GetPoints()[0].GetNum() != 20.5 || msg.GetPoints()[0].GetDevice() != "pump-7" {
		t.Fatalf("Subscribe sent %v, want pump-7's point 20.5", msg)
	}
	q, err := tel.Query(ctx, &apiv1.QueryRequest{Device: "pump-7"})
	if err != nil || len(q.GetPoints()) != 1 {
		t.Fatalf("Query = %v, %v; want the stored point", q, err)
	}
	// The hub's service registry is served too.
	if _, err := apiv1.NewRegistryServiceClient(conn).List(ctx, &apiv1.ListRequest{}); err != nil {
		t.Fatalf("RegistryService.List: %v", err)
	}
}
