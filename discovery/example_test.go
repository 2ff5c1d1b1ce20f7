package discovery_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outpost-edge/outpost/discovery"
)

// Example registers an instance, keeps it alive, resolves the service and
// dials it by name with round robin over its passing instances. It needs a
// running hub, so it is compiled but not run.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c, err := discovery.New("127.0.0.1:9090", "TOKEN-FROM-OUTPOST-LOGIN")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Serve: register with a TTL and renew well within it.
	in, err := c.Register(ctx, discovery.Registration{
		Service: "echo", Address: "10.0.0.7", Port: 7000, Tags: []string{"v1"}, TTL: 10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = c.KeepAlive(ctx, in.Service, in.ID, 3*time.Second) }()
	defer c.Deregister(context.Background(), in.Service, in.ID)

	// Look up once.
	instances, err := c.Resolve(ctx, "echo", discovery.WithTags("v1"))
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range instances {
		fmt.Println(in.ID, in.Addr(), in.Health)
	}

	// Dial by name: round robin over the passing instances, updated on
	// every change in the registry.
	conn, err := grpc.NewClient("outpost:///echo?tag=v1",
		grpc.WithResolvers(discovery.NewResolverBuilder(c)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// Use conn with any generated client: pb.NewEchoClient(conn)...
}

// ExampleClient_Watch prints the instances of a service on every change.
func ExampleClient_Watch() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := discovery.New("127.0.0.1:9090", "TOKEN")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	snapshots, err := c.Watch(ctx, "echo")
	if err != nil {
		log.Fatal(err)
	}
	for instances := range snapshots { // Closed when ctx ends.
		fmt.Println(len(instances), "passing instances of echo")
	}
}
