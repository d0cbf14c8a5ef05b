//go:build ignore

// database/sql.(*DB).queryDC and execDC and go-redis v9 (*baseClient)._process, processPipeline and processTxPipeline,
// timed from entry to exit, errors counted.
// The programs are the generic ones in include/calls.h; the agent tells them apart by attach cookie.
#include "calls.h"
