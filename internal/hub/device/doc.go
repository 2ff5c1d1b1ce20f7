// Package device owns the hub's fleet: registering devices with labels,
// issuing one-time join tokens, redeeming them for MQTT credentials,
// authenticating device connections and tracking presence.
//
// It is a domain service: the REST and gRPC adapters and the broker call it;
// it reaches storage only through the Store interface declared here.
package device
