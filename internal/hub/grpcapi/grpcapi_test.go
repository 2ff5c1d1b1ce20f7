package grpcapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/grpcapi"
	"github.com/outpost-edge/outpost/internal/hub/ingest"
	"github.com/outpost-edge/outpost/internal/hub/livefeed"
	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a gRPC server on a loopback port over the real device, telemetry,
// shadow and ingest services (with a SQLite store) and a fake registry.
type env struct {
	conn     *grpc.ClientConn
	token    string
	ingest   *ingest.Service
	devices  *device.Service
	registry *fakeRegistry
	srv      *grpcapi.Server
}

type nopPublisher struct{}

func (nopPublisher) Publish(string, []byte, bool, byte) error { return nil }

func start(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	issuer := auth.NewIssuer([]byte("test-key-0123456789abcdef0123456"), time.Hour)
	authSvc, err := auth.NewService(st, issuer)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := issuer.Issue("admin")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	feed := livefeed.New(0)
	ing := ingest.NewService(st, logger, reg)
	ing.SetPublisher(feed)
	e := &env{token: token, ingest: ing, devices: device.NewService(st, time.Hour, logger), registry: newFakeRegistry()}
	srv := grpcapi.New(grpcapi.Options{
		Auth: authSvc, Devices: e.devices, Telemetry: st, Feed: feed,
		Shadows: shadow.NewService(st, nopPublisher{}, logger, reg), Registry: e.registry, Logger: logger,
	})
	e.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := ing.Run(ctx); err != nil {
			t.Errorf("ingest: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Run(ctx, ln); err != nil {
			t.Errorf("gRPC server: %v", err)
		}
	}()
	e.conn, err = grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.conn.Close()
		cancel()
		wg.Wait()
		srv.Stop() // a second stop is harmless
		if err := st.Close(); err != nil {
			t.Errorf("closing store: %v", err)
		}
	})
	return e
}

// authed returns ctx carrying the admin token.
func (e *env) authed(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.token)
}

func (e *env) addDevice(t *testing.T, id string, labels map[string]string) {
	t.Helper()
	if _, err := e.devices.Add(context.Background(), id, labels); err != nil {
		t.Fatal(err)
	}
}

// publish sends a telemetry batch through the real ingest path (what the
// broker does for a device's MQTT publish).
func (e *env) publish(t *testing.T, id string, seq uint64, sensor string, v float64) {
	t.Helper()
	payload, err := protocol.EncodeTelemetry(&outpostv1.TelemetryBatch{Device: id, SeqFirst: seq, Points: []*outpostv1.Point{
		{Sensor: sensor, TsUnixMs: time.Now().UnixMilli(), Value: &outpostv1.Point_Num{Num: v}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ingest.Handle(context.Background(), id, payload, protocol.ContentTypeProtobuf); err != nil {
		t.Fatalf("ingesting: %v", err)
	}
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code %s (%v), want %s", got, err, want)
	}
}

// recvErr is the error of a stream's first Recv.
func recvErr[T any](s grpc.ServerStreamingClient[T], err error) error {
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

func TestEveryServiceNeedsAToken(t *testing.T) {
	e := start(t)
	dev := apiv1.NewDeviceServiceClient(e.conn)
	tel := apiv1.NewTelemetryServiceClient(e.conn)
	sh := apiv1.NewShadowServiceClient(e.conn)
	reg := apiv1.NewRegistryServiceClient(e.conn)
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"ListDevices", func(ctx context.Context) error {
			_, err := dev.ListDevices(ctx, &apiv1.ListDevicesRequest{})
			return err
		}},
		{"GetDevice", func(ctx context.Context) error {
			_, err := dev.GetDevice(ctx, &apiv1.GetDeviceRequest{Id: "d1"})
			return err
		}},
		{"Query", func(ctx context.Context) error {
			_, err := tel.Query(ctx, &apiv1.QueryRequest{Device: "d1"})
			return err
		}},
		{"Subscribe", func(ctx context.Context) error { return recvErr(tel.Subscribe(ctx, &apiv1.SubscribeRequest{})) }},
		{"GetShadow", func(ctx context.Context) error {
			_, err := sh.GetShadow(ctx, &apiv1.GetShadowRequest{Device: "d1"})
			return err
		}},
		{"UpdateDesired", func(ctx context.Context) error {
			_, err := sh.UpdateDesired(ctx, &apiv1.UpdateDesiredRequest{Device: "d1", PatchJson: `{"a":1}`})
			return err
		}},
		{"Register", func(ctx context.Context) error {
			_, err := reg.Register(ctx, &apiv1.RegisterRequest{Instance: &apiv1.Instance{Service: "web"}})
			return err
		}},
		{"Deregister", func(ctx context.Context) error {
			_, err := reg.Deregister(ctx, &apiv1.DeregisterRequest{Service: "web", Id: "a"})
			return err
		}},
		{"Renew", func(ctx context.Context) error {
			_, err := reg.Renew(ctx, &apiv1.RenewRequest{Service: "web", Id: "a"})
			return err
		}},
		{"Resolve", func(ctx context.Context) error {
			_, err := reg.Resolve(ctx, &apiv1.ResolveRequest{Service: "web"})
			return err
		}},
		{"Watch", func(ctx context.Context) error {
			return recvErr(reg.Watch(ctx, &apiv1.ResolveRequest{Service: "web"}))
		}},
		{"List", func(ctx context.Context) error {
			_, err := reg.List(ctx, &apiv1.ListRequest{})
			return err
		}},
	}
	tokens := []struct {
		name string
		md   []string
	}{
		{"no token", nil},
		{"not bearer", []string{"authorization", "Basic YWRtaW46eA=="}},
		{"bad token", []string{"authorization", "Bearer not-a-jwt"}},
		{"foreign signature", []string{"authorization", "Bearer " + foreignToken(t)}},
	}
	for _, c := range calls {
		for _, tok := range tokens {
			t.Run(c.name+"/"+tok.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if tok.md != nil {
					ctx = metadata.AppendToOutgoingContext(ctx, tok.md...)
				}
				wantCode(t, c.call(ctx), codes.Unauthenticated)
			})
		}
	}
}

func foreignToken(t *testing.T) string {
	tok, _, err := auth.NewIssuer([]byte("another-key-0123456789abcdef0123"), time.Hour).Issue("admin")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHealthAndReflectionNeedNoToken(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, svc := range []string{"", "outpost.api.v1.DeviceService", "outpost.api.v1.TelemetryService", "outpost.api.v1.ShadowService", "outpost.api.v1.RegistryService"} {
		resp, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health check %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q = %s, want SERVING", svc, resp.GetStatus())
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"outpost.api.v1.DeviceService", "outpost.api.v1.TelemetryService", "outpost.api.v1.ShadowService",
		"outpost.api.v1.RegistryService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

func TestDevices(t *testing.T) {
	e := start(t)
	e.addDevice(t, "d1", map[string]string{"site": "north"})
	e.addDevice(t, "d2", map[string]string{"site": "south"})
	ctx := e.authed(context.Background())
	c := apiv1.NewDeviceServiceClient(e.conn)

	tests := []struct {
		selector map[string]string
		want     []string
	}{
		{nil, []string{"d1", "d2"}},
		{map[string]string{"site": "south"}, []string{"d2"}},
		{map[string]string{"site": "west"}, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.selector), func(t *testing.T) {
			resp, err := c.ListDevices(ctx, &apiv1.ListDevicesRequest{LabelSelector: tt.selector})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range resp.GetDevices() {
				ids = append(ids, d.GetId())
			}
			if !slices.Equal(ids, tt.want) {
				t.Fatalf("devices %v, want %v", ids, tt.want)
			}
		})
	}

	d, err := c.GetDevice(ctx, &apiv1.GetDeviceRequest{Id: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetLabels()["site"] != "north" || d.GetCreatedUnixMs() == 0 || d.GetJoined() {
		t.Errorf("GetDevice = %v", d)
	}
	_, err = c.GetDevice(ctx, &apiv1.GetDeviceRequest{Id: "nope"})
	wantCode(t, err, codes.NotFound)
	_, err = c.GetDevice(ctx, &apiv1.GetDeviceRequest{})
	wantCode(t, err, codes.InvalidArgument)
}

func TestQueryReturnsStoredPoints(t *testing.T) {
	e := start(t)
	e.addDevice(t, "d1", nil)
	e.publish(t, "d1", 1, "temp", 21.5)
	e.publish(t, "d1", 2, "hum", 40)
	ctx := e.authed(context.Background())
	c := apiv1.NewTelemetryServiceClient(e.conn)

	resp, err := c.Query(ctx, &apiv1.QueryRequest{Device: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetPoints()) != 2 {
		t.Fatalf("%d points, want 2: %v", len(resp.GetPoints()), resp)
	}
	p := resp.GetPoints()[0]
	if p.GetDevice() != "d1" || p.GetSeq() != 1 || p.GetSensor() != "temp" || p.GetNum() != 21.5 {
		t.Errorf("first point %v", p)
	}
	resp, err = c.Query(ctx, &apiv1.QueryRequest{Device: "d1", Sensor: "hum"})
	if err != nil || len(resp.GetPoints()) != 1 || resp.GetPoints()[0].GetNum() != 40 {
		t.Errorf("sensor query = %v, %v; want the hum point", resp, err)
	}
	_, err = c.Query(ctx, &apiv1.QueryRequest{Device: "nope"})
	wantCode(t, err, codes.NotFound)
	_, err = c.Query(ctx, &apiv1.QueryRequest{Device: "d1", Limit: 10001})
	wantCode(t, err, codes.InvalidArgument)
}

func TestSubscribeStreamsNewPoints(t *testing.T) {
	e := start(t)
	e.addDevice(t, "d1", nil)
	e.addDevice(t, "d2", nil)
	ctx, cancel := context.WithTimeout(e.authed(context.Background()), 10*time.Second)
	defer cancel()
	c := apiv1.NewTelemetryServiceClient(e.conn)
	stream, err := c.Subscribe(ctx, &apiv1.SubscribeRequest{Devices: []string{"d1"}})
	if err != nil {
		t.Fatal(err)
	}
	// The headers arrive once the subscription is in place.
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "d2", 1, "temp", 1) // filtered out
	e.publish(t, "d1", 1, "temp", 22)
	msg, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.GetPoints()) != 1 {
		t.Fatalf("message %v, want one point", msg)
	}
	if p := msg.GetPoints()[0]; p.GetDevice() != "d1" || p.GetSeq() != 1 || p.GetNum() != 22 {
		t.Errorf("point %v, want d1 seq 1 = 22", p)
	}
}

func TestShadows(t *testing.T) {
	e := start(t)
	e.addDevice(t, "d1", nil)
	ctx := e.authed(context.Background())
	c := apiv1.NewShadowServiceClient(e.conn)

	_, err := c.GetShadow(ctx, &apiv1.GetShadowRequest{Device: "d1"})
	wantCode(t, err, codes.NotFound)

	up, err := c.UpdateDesired(ctx, &apiv1.UpdateDesiredRequest{Device: "d1", PatchJson: `{"interval": 5}`})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetShadow(ctx, &apiv1.GetShadowRequest{Device: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetVersion() != up.GetVersion() || got.GetVersion() == 0 {
		t.Errorf("GetShadow version %d, UpdateDesired answered %d", got.GetVersion(), up.GetVersion())
	}
	var doc protocol.ShadowDocument
	if err := json.Unmarshal([]byte(got.GetDocumentJson()), &doc); err != nil {
		t.Fatal(err)
	}
	if desired, _ := doc.State["desired"].(map[string]any); desired["interval"] != 5.0 {
		t.Errorf("desired state %v, want interval 5", doc.State["desired"])
	}

	stale := up.GetVersion() + 7
	tests := []struct {
		name string
		req  *apiv1.UpdateDesiredRequest
		want codes.Code
	}{
		{"version matches", &apiv1.UpdateDesiredRequest{Device: "d1", PatchJson: `{"mode": "eco"}`, Version: &up.Version}, codes.OK},
		{"stale version", &apiv1.UpdateDesiredRequest{Device: "d1", PatchJson: `{"mode": "x"}`, Version: &stale}, codes.Aborted},
		{"not JSON", &apiv1.UpdateDesiredRequest{Device: "d1", PatchJson: `{`}, codes.InvalidArgument},
		{"empty patch", &apiv1.UpdateDesiredRequest{Device: "d1"}, codes.InvalidArgument},
		{"no device", &apiv1.UpdateDesiredRequest{PatchJson: `{}`}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.UpdateDesired(ctx, tt.req)
			wantCode(t, err, tt.want)
		})
	}
}

func TestRegistryAdapter(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithTimeout(e.authed(context.Background()), 10*time.Second)
	defer cancel()
	c := apiv1.NewRegistryServiceClient(e.conn)

	watch, err := c.Watch(ctx, &apiv1.ResolveRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil || len(first.GetInstances()) != 0 {
		t.Fatalf("first watch message %v, %v; want no instances", first, err)
	}

	in, err := c.Register(ctx, &apiv1.RegisterRequest{Instance: &apiv1.Instance{
		Service: "web", Address: "10.0.0.1", Port: 80, Tags: []string{"v1"}, Ttl: durationpb.New(30 * time.Second),
		Check: &apiv1.Check{Type: "tcp", Interval: durationpb.New(time.Second)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if in.GetId() != "10.0.0.1:80" || in.GetHealth() != apiv1.Health_HEALTH_PASSING || in.GetTtl().AsDuration() != 30*time.Second ||
		in.GetCheck().GetInterval().AsDuration() != time.Second {
		t.Errorf("Register = %v", in)
	}
	if got := e.registry.last(); got.Port != 80 || got.TTL != 30*time.Second || got.Check == nil || got.Check.Type != "tcp" {
		t.Errorf("the registry got %+v", got)
	}
	next, err := watch.Recv()
	if err != nil || len(next.GetInstances()) != 1 {
		t.Fatalf("watch after Register: %v, %v; want the instance", next, err)
	}

	res, err := c.Resolve(ctx, &apiv1.ResolveRequest{Service: "web", Tags: []string{"v1"}})
	if err != nil || len(res.GetInstances()) != 1 {
		t.Errorf("Resolve = %v, %v", res, err)
	}
	if _, err := c.Renew(ctx, &apiv1.RenewRequest{Service: "web", Id: "10.0.0.1:80"}); err != nil {
		t.Errorf("Renew: %v", err)
	}
	list, err := c.List(ctx, &apiv1.ListRequest{})
	if err != nil || len(list.GetInstances()) != 1 {
		t.Errorf("List = %v, %v", list, err)
	}

	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"deregister", func() error {
			_, err := c.Deregister(ctx, &apiv1.DeregisterRequest{Service: "web", Id: "10.0.0.1:80"})
			return err
		}, codes.OK},
		{"renew missing", func() error {
			_, err := c.Renew(ctx, &apiv1.RenewRequest{Service: "web", Id: "10.0.0.1:80"})
			return err
		}, codes.NotFound},
		{"register invalid", func() error {
			_, err := c.Register(ctx, &apiv1.RegisterRequest{Instance: &apiv1.Instance{Service: "Bad Name"}})
			return err
		}, codes.InvalidArgument},
		{"register nothing", func() error {
			_, err := c.Register(ctx, &apiv1.RegisterRequest{})
			return err
		}, codes.InvalidArgument},
		{"backend failure", func() error {
			_, err := c.Resolve(ctx, &apiv1.ResolveRequest{Service: "broken"})
			return err
		}, codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), tt.want) })
	}
}

// fakeRegistry keeps instances in a map and tells watchers of every change.
type fakeRegistry struct {
	mu       sync.Mutex
	ins      map[string]registry.Instance
	lastIn   registry.Instance
	watchers []chan struct{}
}

func newFakeRegistry() *fakeRegistry { return &fakeRegistry{ins: map[string]registry.Instance{}} }

func (f *fakeRegistry) last() registry.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastIn
}

func (f *fakeRegistry) changed() {
	for _, w := range f.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (f *fakeRegistry) Register(_ context.Context, in registry.Instance) (registry.Instance, error) {
	if in.Service != "web" {
		return registry.Instance{}, fmt.Errorf("%w: service name %q", registry.ErrInvalid, in.Service)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastIn = in
	if in.ID == "" {
		in.ID = net.JoinHostPort(in.Address, fmt.Sprint(in.Port))
	}
	in.Health, in.UpdatedAt = registry.Passing, time.Now()
	f.ins[in.Key()] = in
	f.changed()
	return in, nil
}

func (f *fakeRegistry) Deregister(_ context.Context, service, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ins, service+"/"+id)
	f.changed()
	return nil
}

func (f *fakeRegistry) Renew(_ context.Context, service, id string) (registry.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.ins[service+"/"+id]
	if !ok {
		return registry.Instance{}, fmt.Errorf("renewing %s/%s: %w", service, id, registry.ErrNotFound)
	}
	return in, nil
}

func (f *fakeRegistry) Resolve(_ context.Context, service string, opts registry.ResolveOptions) ([]registry.Instance, error) {
	if service == "broken" {
		return nil, errors.New("backend unreachable")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []registry.Instance
	for _, in := range f.ins {
		if in.Service == service && !slices.ContainsFunc(opts.Tags, func(t string) bool { return !slices.Contains(in.Tags, t) }) {
			out = append(out, in)
		}
	}
	return out, nil
}

func (f *fakeRegistry) Watch(ctx context.Context, service string, opts registry.ResolveOptions) (<-chan []registry.Instance, error) {
	wake := make(chan struct{}, 1)
	f.mu.Lock()
	f.watchers = append(f.watchers, wake)
	f.mu.Unlock()
	out := make(chan []registry.Instance)
	go func() {
		defer close(out)
		for {
			ins, err := f.Resolve(ctx, service, opts)
			if err != nil {
				return
			}
			select {
			case out <- ins:
			case <-ctx.Done():
				return
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (f *fakeRegistry) List(context.Context, string) ([]registry.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []registry.Instance
	for _, in := range f.ins {
		out = append(out, in)
	}
	return out, nil
}

func TestStopEndsStreams(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithTimeout(e.authed(context.Background()), 10*time.Second)
	defer cancel()
	sub, err := apiv1.NewTelemetryServiceClient(e.conn).Subscribe(ctx, &apiv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Header(); err != nil {
		t.Fatal(err)
	}
	watch, err := apiv1.NewRegistryServiceClient(e.conn).Watch(ctx, &apiv1.ResolveRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		e.srv.Stop()
		close(stopped)
	}()
	_, err = sub.Recv()
	wantCode(t, err, codes.Unavailable)
	_, err = watch.Recv()
	wantCode(t, err, codes.Unavailable)
	<-stopped
}
