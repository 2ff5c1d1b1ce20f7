// Package jobs owns device jobs: the AWS IoT Jobs semantics (executions per
// device run in queuedAt order, the status transitions a device may make,
// versions, cancel and timeouts) and the Service that creates and cancels
// jobs for the hub's APIs and answers the devices' requests on the MQTT
// jobs topics ($aws/things/{id}/jobs/…, see docs/jobs.md).
//
// The Service reaches storage through the Store interface and talks to
// devices through the Publisher interface, both declared here; rollouts
// follow executions through OnChange. It must not import the broker,
// HTTP/Gin or any storage engine.
package jobs
