// Package deploy runs service deployments on the hub: `outpost deploy
// apply -f app.yaml` stores a deployspec.Spec under its name, and Step
// rolls it out, batch after batch, to the devices its label selector
// matches, through each device's named shadow "workloads"
// (protocol.WorkloadsShadow). A batch is done when its devices report the
// new revision running and healthy; too many devices that do not, within
// the strategy's health timeout, fail the deployment and put that batch
// back on the previous revision. The package also asks devices for a
// service's log lines over MQTT (Logs).
//
// State lives in the hub's store as one JSON document per deployment, so a
// hub restart resumes a rollout where it was. The package reaches the
// shadow, device, OTA and broker services only through the small
// interfaces declared here; it must not import Gin, the REST API or the
// sqlite store. docs/deploy.md is the user guide.
package deploy
