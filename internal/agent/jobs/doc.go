// Package jobs is the agent's side of device jobs (docs/jobs.md): a Runner
// that follows the hub's AWS IoT Jobs topics, runs each job execution with
// the Handler registered for its document's "type", reports progress and
// the outcome, and keeps the execution in hand in <data>/jobs/current.json
// so that after a crash (kill -9) it reports a definite state: it runs the
// job again if the handler is Resumable, else reports FAILED with reason
// "interrupted".
//
// The Runner talks to the hub only through the small Transport interface;
// the agent wires it to the uplink: Transport.Publish is the uplink's
// Publish, Subscriptions go into the uplink's subscriptions, messages on
// them go to HandleMessage and OnSubscribed calls Connected. It must not
// import the agent, uplink, spool, collect or any hub package.
package jobs
