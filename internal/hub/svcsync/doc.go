// Package svcsync turns the services deployed to devices into service
// registry instances (source agent): for every device and every workload
// in its "workloads" shadow whose spec lists ports, one instance of the
// service named after the workload, with the device's id as instance id,
// the address the agent reports and the spec's first port. The instance
// passes while the device reports the desired revision running and
// healthy; it turns critical otherwise, and when the device has been
// offline for longer than a grace period. A workload that leaves the
// shadow is deregistered.
//
// The Syncer learns of changes from the shadow service's OnChange hook
// (Notify), resynchronizes every device periodically and polls device
// presence. It reaches the registry, the shadows and the devices only
// through the small interfaces declared here; it must not import Gin, the
// REST API or a store.
package svcsync
