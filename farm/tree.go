package farm

import (
	"context"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Tree is what the package needs of Paddock's tree. *client.Client
// satisfies it, and so does the node-side adapter in rpc. Errors are gRPC
// status errors.
type Tree interface {
	Create(context.Context, *paddockv1.CreateRequest) (*paddockv1.CreateResponse, error)
	Get(context.Context, *paddockv1.GetRequest) (*paddockv1.GetResponse, error)
	Set(context.Context, *paddockv1.SetRequest) (*paddockv1.SetResponse, error)
	Delete(context.Context, *paddockv1.DeleteRequest) (*paddockv1.DeleteResponse, error)
	Exists(context.Context, *paddockv1.ExistsRequest) (*paddockv1.ExistsResponse, error)
	List(context.Context, *paddockv1.ListRequest) (*paddockv1.ListResponse, error)
	Poll(context.Context, *paddockv1.PollRequest) (*paddockv1.PollResponse, error)
}

// Session is a client session that owns a joiner's ephemeral znode.
// *client.Session satisfies it.
type Session interface {
	// ID is the session id to create ephemeral znodes with.
	ID() uint64
	// Done is closed when the session has ended (expired or closed).
	Done() <-chan struct{}
}
