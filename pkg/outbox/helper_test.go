package outbox_test

// helperMain lets the test binary act as a relay process that crashes on purpose (see kafka_test.go).
// It returns false in a normal test run.
func helperMain() bool { return false }
