package config

// Spool configures the agent's durable on-disk queue (key spool). Points are
// acknowledged to their source only once they are in the spool, and leave
// it only once the hub's broker has acknowledged them.
type Spool struct {
}

// DefaultSpool returns the spool settings used for every key agent.yaml
// leaves out.
func DefaultSpool() Spool {
	return Spool{}
}

// validate reports every problem of the spool settings, each naming its key.
func (s Spool) validate() []error {
	return nil
}
