package adapters

import "github.com/shanhai-dev/shanhai/pkg/stream"

// The platform's JetStream stream and the names a consumer uses (pkg/stream).
const (
	Stream         = stream.Name
	StreamSubjects = stream.Subjects
)

// Names are the JetStream names a consumer uses; empty fields take DefaultNames.
type Names = stream.Names
