// Package grpcapi is the hub's gRPC API: DeviceService, TelemetryService,
// ShadowService and RegistryService (proto/outpost/api/v1), plus the standard
// health service and server reflection. It adapts requests to the same
// service layer the REST API uses, through the small interfaces declared
// here, and holds no business logic: it converts messages, checks tokens
// and maps service errors to gRPC codes.
//
// It must not import the broker, HTTP, or any storage engine.
package grpcapi
