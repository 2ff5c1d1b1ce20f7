package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/broker"
	"github.com/outpost-edge/outpost/internal/hub/coapsrv"
	"github.com/outpost-edge/outpost/internal/hub/deploy"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/grpcapi"
	"github.com/outpost-edge/outpost/internal/hub/httpapi"
	"github.com/outpost-edge/outpost/internal/hub/ingest"
	"github.com/outpost-edge/outpost/internal/hub/jobs"
	"github.com/outpost-edge/outpost/internal/hub/livefeed"
	"github.com/outpost-edge/outpost/internal/hub/ota"
	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/rollouts"
	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/internal/hub/svcsync"
	"github.com/outpost-edge/outpost/internal/hub/webui"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// AdminUser is the name of the user the hub creates on first start.
const AdminUser = "admin"

// AdminPasswordFileName is the file under DataDir that holds a generated
// admin password.
const AdminPasswordFileName = "admin-password"

// Ids of the hub's inline subscriptions in the embedded broker.
const (
	shadowSubscriptionID = 1
	jobsSubscriptionID   = 2
	logsSubscriptionID   = 3
)

// rolloutInterval is how often running rollouts are advanced.
const rolloutInterval = 2 * time.Second

// deployInterval is how often service deployments are advanced.
const deployInterval = 2 * time.Second

// Hub is a running hub's parts. Create it with New, run it with Run.
type Hub struct {
	cfg      Config
	logger   *slog.Logger
	store    *sqlite.Store
	broker   *broker.Broker
	ingest   *ingest.Service
	devices  *device.Service
	shadows  *shadow.Service
	ota      *ota.Service
	jobs     *jobs.Service
	rollouts *rollouts.Service
	deploy   *deploy.Service
	httpLn   net.Listener
	httpSrv  *http.Server
	// coap serves the TUF repository over CoAP; nil when CoAPAddr is empty.
	coap *coapsrv.Server
	// registry is the service registry over registryBackend (--registry);
	// svcsync registers the services deployed to devices in it.
	registry        *registry.Service
	registryBackend registry.Backend
	svcsync         *svcsync.Syncer
	// feed fans stored telemetry out to gRPC subscribers.
	feed *livefeed.Feed
	// grpc and grpcLn serve the gRPC API; nil when GRPCAddr is off.
	grpc   *grpcapi.Server
	grpcLn net.Listener

	// adminPassword is set when this start generated the password.
	adminPassword string
	closeOnce     sync.Once
	// ctx is cancelled when the hub closes; the broker's inline shadow
	// subscription uses it for store calls.
	ctx    context.Context
	cancel context.CancelFunc
}

// New opens the store, prepares credentials and binds both listeners. If any
// step fails, whatever was already opened is closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Hub, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid hub configuration: %w", err)
	}
	h := &Hub{cfg: cfg, logger: logger.With("component", "hub")}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	dbPath := filepath.Join(cfg.DataDir, "outpost.db")
	if h.store, err = sqlite.Open(ctx, dbPath); err != nil {
		return nil, err
	}
	key, err := h.store.PutSettingIfAbsent(ctx, "jwt_key", []byte(auth.RandomString("", 32)))
	if err != nil {
		return nil, err
	}
	authSvc, err := auth.NewService(h.store, auth.NewIssuer(key, cfg.SessionTTL))
	if err != nil {
		return nil, err
	}
	if err := h.ensureAdmin(ctx); err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h.ingest = ingest.NewService(h.store, logger, reg)
	h.feed = livefeed.New(0)
	h.ingest.SetPublisher(h.feed)
	h.devices = device.NewService(h.store, cfg.JoinTokenTTL, logger)
	h.broker, err = broker.New(broker.Options{
		Addr: cfg.MQTTAddr, Auth: h.devices, Presence: h.devices, Ingest: h.ingest, Logger: logger, Registry: reg,
	})
	if err != nil {
		return nil, err
	}
	h.devices.SetDisconnector(h.broker)
	h.shadows = shadow.NewService(h.store, h.broker, logger, reg)
	if err := h.openRegistry(ctx, logger); err != nil {
		return nil, err
	}
	if err := h.broker.Subscribe(protocol.ShadowFilter, shadowSubscriptionID, func(topic string, payload []byte) {
		h.shadows.HandleMQTT(h.ctx, topic, payload)
	}); err != nil {
		return nil, fmt.Errorf("subscribing to shadow topics: %w", err)
	}

	h.ota, err = ota.New(ota.Options{Dir: filepath.Join(cfg.DataDir, "ota"), MaxArtifactBytes: cfg.MaxArtifactBytes, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("opening the OTA repository: %w", err)
	}

	h.jobs = jobs.NewService(h.store, h.broker, logger, jobs.Options{Registerer: reg})
	if err := h.broker.Subscribe(protocol.JobsFilter, jobsSubscriptionID, func(topic string, payload []byte) {
		h.jobs.HandleMQTT(h.ctx, topic, payload)
	}); err != nil {
		return nil, fmt.Errorf("subscribing to jobs topics: %w", err)
	}
	h.rollouts = rollouts.NewService(rollouts.NewDocumentStore(h.store), rolloutJobs{h.jobs}, rolloutDevices{h.devices},
		rolloutArtifacts{h.ota}, logger)
	h.deploy, err = deploy.NewService(deploy.Options{
		Store: h.store, Shadows: h.shadows, Devices: deployDevices{h.devices}, Artifacts: rolloutArtifacts{h.ota},
		Broker: h.broker, LogsSubscriptionID: logsSubscriptionID, Registerer: reg, Logger: logger,
	})
	if err != nil {
		return nil, err
	}

	_, mqttPort, err := net.SplitHostPort(h.broker.Addr())
	if err != nil {
		return nil, fmt.Errorf("parsing MQTT address: %w", err)
	}
	handler := httpapi.New(httpapi.Options{
		Devices: h.devices, Auth: authSvc, Telemetry: h.store, Shadows: h.shadows, OTA: h.ota, Rollouts: h.rollouts,
		Deploy:    h.deploy,
		Registry:  h.registry,
		Services:  deviceServices{h.registry},
		Ready:     h.ready,
		Metrics:   promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		PublicURL: strings.TrimRight(cfg.PublicURL, "/"), MQTTURL: cfg.MQTTPublicURL, MQTTPort: mqttPort,
		Extra:  webui.Mount, // the dashboard at /
		Logger: logger,
	})
	if h.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listening for HTTP on %s: %w", cfg.HTTPAddr, err)
	}
	h.httpSrv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if cfg.grpcEnabled() {
		if h.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return nil, fmt.Errorf("listening for gRPC on %s: %w", cfg.GRPCAddr, err)
		}
		gopts := grpcapi.Options{Auth: authSvc, Devices: h.devices, Telemetry: h.store, Feed: h.feed, Shadows: h.shadows, Logger: logger}
		if h.registry != nil {
			gopts.Registry = h.registry
		}
		h.grpc = grpcapi.New(gopts)
	}
	if cfg.CoAPAddr != "" {
		if h.coap, err = coapsrv.Listen(coapsrv.Options{Addr: cfg.CoAPAddr, Files: h.ota, Devices: h.devices, Logger: logger}); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// openRegistry opens the service registry's backend (cfg.Registry) and
// the Syncer that registers the services deployed to devices; the Syncer
// hears of every change of a workloads shadow.
func (h *Hub) openRegistry(ctx context.Context, logger *slog.Logger) (err error) {
	if h.registryBackend, err = registry.Open(ctx, h.cfg.Registry, h.store); err != nil {
		return fmt.Errorf("opening the service registry: %w", err)
	}
	if h.registry, err = registry.New(registry.Options{Backend: h.registryBackend, Logger: logger}); err != nil {
		return err
	}
	h.svcsync, err = svcsync.New(svcsync.Options{
		Registry: h.registry, Shadows: h.shadows, Devices: syncDevices{h.devices}, Logger: logger,
	})
	if err != nil {
		return err
	}
	h.shadows.OnChange(h.svcsync.Notify)
	return nil
}

// syncDevices is the device service as the service sync uses it.
type syncDevices struct{ d *device.Service }

func (s syncDevices) All(ctx context.Context) ([]svcsync.Device, error) {
	ds, err := s.d.List(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]svcsync.Device, len(ds))
	for i, d := range ds {
		out[i] = svcsync.Device{ID: d.ID, Online: d.Online}
	}
	return out, nil
}

// deviceServices answers devices' service lookups from the registry: the
// passing instances. A name the registry refuses has no instances.
type deviceServices struct{ r *registry.Service }

func (s deviceServices) Resolve(ctx context.Context, service string, tags []string) ([]httpapi.ServiceInstance, error) {
	ins, err := s.r.Resolve(ctx, service, registry.ResolveOptions{Tags: tags})
	if errors.Is(err, registry.ErrInvalid) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]httpapi.ServiceInstance, len(ins))
	for i, in := range ins {
		out[i] = httpapi.ServiceInstance{ID: in.ID, Address: in.Address, Port: in.Port, Tags: in.Tags, Meta: in.Meta, Health: string(in.Health)}
	}
	return out, nil
}

// ensureAdmin creates the admin user on first start, with the password from
// AdminPasswordFile or a generated one written to DataDir/admin-password.
func (h *Hub) ensureAdmin(ctx context.Context) error {
	_, err := h.store.UserPasswordHash(ctx, AdminUser)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("reading admin user: %w", err)
	}
	if h.cfg.AdminPasswordFile != "" {
		b, err := os.ReadFile(h.cfg.AdminPasswordFile)
		if err != nil {
			return fmt.Errorf("reading admin password file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if len(pw) < 8 {
			return fmt.Errorf("admin password in %s: at least 8 characters", h.cfg.AdminPasswordFile)
		}
		hash, err := auth.HashPassword(pw)
		if err != nil {
			return err
		}
		if exists {
			return h.store.SetUserPassword(ctx, AdminUser, hash)
		}
		return h.store.CreateUser(ctx, AdminUser, hash, time.Now())
	}
	if exists {
		return nil
	}
	pw := auth.RandomString("", 18)
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return err
	}
	path := filepath.Join(h.cfg.DataDir, AdminPasswordFileName)
	if err := atomicfile.Write(path, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing admin password: %w", err)
	}
	if err := h.store.CreateUser(ctx, AdminUser, hash, time.Now()); err != nil {
		return fmt.Errorf("creating admin user: %w", err)
	}
	h.adminPassword = pw
	h.logger.Info("generated the admin password; it is in the file named here (mode 0600)", "user", AdminUser, "file", path)
	return nil
}

func (h *Hub) ready(ctx context.Context) error {
	if err := h.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// HTTPAddr is the bound REST API address.
func (h *Hub) HTTPAddr() string { return h.httpLn.Addr().String() }

// HTTPURL is a URL for the REST API reachable from this machine.
func (h *Hub) HTTPURL() string { return "http://" + loopbackIfUnspecified(h.HTTPAddr()) }

// coapAddr is the bound CoAP address, or "off".
func (h *Hub) coapAddr() string {
	if h.coap == nil {
		return "off"
	}
	return h.coap.Addr().String()
}

// GRPCAddr is the bound gRPC API address, or "" when it is off.
func (h *Hub) GRPCAddr() string {
	if h.grpcLn == nil {
		return ""
	}
	return h.grpcLn.Addr().String()
}

// GRPCTarget is the gRPC API's host:port reachable from this machine (as
// grpcurl takes it), or "" when it is off.
func (h *Hub) GRPCTarget() string {
	if h.grpcLn == nil {
		return ""
	}
	return loopbackIfUnspecified(h.GRPCAddr())
}

// MQTTAddr is the bound MQTT address.
func (h *Hub) MQTTAddr() string { return h.broker.Addr() }

// MQTTURL is a URL for the broker reachable from this machine.
func (h *Hub) MQTTURL() string { return "mqtt://" + loopbackIfUnspecified(h.MQTTAddr()) }

// GeneratedAdminPassword returns the admin password if this start generated it.
func (h *Hub) GeneratedAdminPassword() (string, bool) { return h.adminPassword, h.adminPassword != "" }

// OTA is the TUF repository service (tests call RefreshTimestamp).
func (h *Hub) OTA() *ota.Service { return h.ota }

// Devices is the device service (used by the in-process demo).
func (h *Hub) Devices() *device.Service { return h.devices }

func loopbackIfUnspecified(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Run serves until ctx ends, then shuts down: HTTP and MQTT stop first, the
// ingest writer drains last, the store closes. It returns the first error
// that stopped the hub, or nil after a requested shutdown.
func (h *Hub) Run(ctx context.Context) error {
	defer h.close()
	ingestCtx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	ingestDone := make(chan error, 1)
	go func() { ingestDone <- h.ingest.Run(ingestCtx) }()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return h.broker.Run(gctx) })
	g.Go(func() error { return h.ota.Run(gctx) })
	g.Go(func() error { return h.jobs.Run(gctx) })
	g.Go(func() error {
		h.rollouts.Run(gctx, rolloutInterval)
		return nil
	})
	g.Go(func() error {
		h.deploy.Run(gctx, deployInterval)
		return nil
	})
	g.Go(func() error {
		if err := h.httpSrv.Serve(h.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	})
	if h.coap != nil {
		g.Go(func() error { return h.coap.Run(gctx) })
	}
	g.Go(func() error { return h.registry.Run(gctx) })
	g.Go(func() error { return h.svcsync.Run(gctx) })
	if h.grpc != nil {
		g.Go(func() error { return h.grpc.Run(gctx, h.grpcLn) })
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return h.httpSrv.Shutdown(sctx)
	})
	h.logger.Info("hub running", "http", h.HTTPAddr(), "mqtt", h.MQTTAddr(), "coap", h.coapAddr(), "grpc", h.GRPCAddr(), "data", h.cfg.DataDir)
	err := g.Wait()
	stopIngest()
	if ierr := <-ingestDone; err == nil {
		err = ierr
	}
	h.logger.Info("hub stopped")
	return err
}

func (h *Hub) close() {
	h.closeOnce.Do(func() {
		h.cancel()
		if h.broker != nil {
			h.broker.Close()
		}
		if h.httpLn != nil {
			h.httpLn.Close()
		}
		if h.coap != nil {
			h.coap.Close()
		}
		if h.grpcLn != nil {
			h.grpcLn.Close()
		}
		if h.registryBackend != nil {
			if err := h.registryBackend.Close(); err != nil {
				h.logger.Error("closing the registry backend", "err", err)
			}
		}
		if h.store != nil {
			if err := h.store.Close(); err != nil {
				h.logger.Error("closing store", "err", err)
			}
		}
	})
}
