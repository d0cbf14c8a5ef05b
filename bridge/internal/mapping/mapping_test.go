package mapping

import (
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	stream := []string{"shanhai.>"}
	tests := []struct {
		name    string
		spec    string
		want    []Route
		wantErr string
	}{
		{"defaults", "shanhai.orders, shanhai.users", []Route{
			{"shanhai.orders", "shanhai.orders", "persistent://shanhai/events/shanhai.orders"},
			{"shanhai.users", "shanhai.users", "persistent://shanhai/events/shanhai.users"},
		}, ""},
		{"custom subject", "orders=shanhai.orders.v1", []Route{
			{"orders", "shanhai.orders.v1", "persistent://shanhai/events/orders"},
		}, ""},
		{"subject outside stream", "orders", nil, "outside the stream"},
		{"partition subjects outside stream", "shanhai.orders=other.orders", nil, `"other.orders.p0" for topic "shanhai.orders" is outside`},
		{"wildcard subject", "shanhai.orders=shanhai.*", nil, "wildcard"},
		{"empty token", "shanhai..orders", nil, "empty token"},
		{"bad kafka topic", "shanhai/orders", nil, "kafka topic"},
		{"duplicate", "shanhai.a,shanhai.a", nil, "twice"},
		{"empty", " , ", nil, "no topics"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Routes(tc.spec, stream, "shanhai/events")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("route %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// The partition subjects, not the topic's, must fall inside the stream: a
// stream of exactly "shanhai.orders" would not take shanhai.orders.p0.
func TestRoutesNeedTheStreamToTakePartitionSubjects(t *testing.T) {
	if _, err := Routes("shanhai.orders", []string{"shanhai.orders"}, "shanhai/events"); err == nil || !strings.Contains(err.Error(), "shanhai.orders.p0") {
		t.Fatalf("err = %v, want the partition subject outside the stream", err)
	}
	routes, err := Routes("shanhai.orders", []string{"shanhai.orders.*"}, "shanhai/events")
	if err != nil {
		t.Fatal(err)
	}
	if got := routes[0].PartitionSubject(2); got != "shanhai.orders.p2" {
		t.Fatalf("PartitionSubject(2) = %q", got)
	}
}

// Two topics whose subjects nest (a versioned topic under the first): a consumer of the first topic filters on
// stream.Filters(subject), shanhai.orders.> among them, and was delivered the second topic's events. Routes accepted
// them; now it names the pair, as it does for the same subject given twice.
func TestRoutesRejectNestedSubjects(t *testing.T) {
	for spec, want := range map[string]string{
		"shanhai.orders,shanhai.orders.v2":     `subjects "shanhai.orders" (topic "shanhai.orders") and "shanhai.orders.v2" (topic "shanhai.orders.v2") nest`,
		"shanhai.orders.v2,shanhai.orders":     `subjects "shanhai.orders.v2" (topic "shanhai.orders.v2") and "shanhai.orders" (topic "shanhai.orders") nest`,
		"a=shanhai.orders.p0.x,shanhai.orders": `and "shanhai.orders" (topic "shanhai.orders") nest`,
		"a=shanhai.orders,shanhai.orders":      `topics "a" and "shanhai.orders" have the same subject "shanhai.orders"`,
	} {
		if _, err := Routes(spec, []string{"shanhai.>"}, "shanhai/events"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Routes(%q): err = %v, want containing %q", spec, err, want)
		}
	}
	// Sharing a prefix that is not a whole token is no nesting.
	if _, err := Routes("shanhai.orders,shanhai.ordersv2", []string{"shanhai.>"}, "shanhai/events"); err != nil {
		t.Fatal(err)
	}
}

func TestRoutesBadNamespaceAndStream(t *testing.T) {
	_, err := Routes("shanhai.a", []string{"shanhai.>.x"}, "shanhai")
	if err == nil || !strings.Contains(err.Error(), "namespace") || !strings.Contains(err.Error(), "not last") {
		t.Fatalf("err = %v, want both namespace and stream subject complaints", err)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"shanhai.>", "shanhai.orders", true},
		{"shanhai.>", "shanhai", false},
		{"shanhai.*", "shanhai.orders", true},
		{"shanhai.*", "shanhai.orders.x", false},
		{"shanhai.orders", "shanhai.orders", true},
		{"shanhai.orders", "shanhai.users", false},
	}
	for _, tc := range tests {
		if got := Match(tc.filter, tc.subject); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.filter, tc.subject, got)
		}
	}
}

func TestName(t *testing.T) {
	if got := Name("shanhai.orders", 2); got != "bridge-shanhai_orders-2" {
		t.Fatalf("Name = %q", got)
	}
	for _, tc := range []struct{ cluster, want string }{
		{"MkU3OEVBNTcwNTJENDM2Qk", "bridge-shanhai_orders-2.MkU3OEVBNTcwNTJENDM2Qk"},
		{"a.b/c", "bridge-shanhai_orders-2.a_b_c"},
		{"[INFO] x\nta-8BSCbQcyW2HjnJaovmQ", "bridge-shanhai_orders-2._INFO__x_ta-8BSCbQcyW2HjnJaovmQ"}, // the test servers' id: a log line with it
		{"", "bridge-shanhai_orders-2"},
	} {
		if got := ProducerName(tc.cluster, "", "shanhai.orders", 2); got != tc.want {
			t.Errorf("ProducerName(%q) = %q, want %q", tc.cluster, got, tc.want)
		}
		// Leg A stamps the token; leg B names a stamped record by it, and an unstamped one by the id Kafka reports.
		if got := ProducerName(ClusterToken(tc.cluster), "", "shanhai.orders", 2); got != tc.want {
			t.Errorf("ProducerName(ClusterToken(%q)) = %q, want %q", tc.cluster, got, tc.want)
		}
	}
	// A topic created again has another id, and so another name (kafkaleg.TopicID).
	for _, tc := range []struct{ cluster, topicID, want string }{
		{"MkU3OEVBNTcwNTJENDM2Qk", "Zq9b2Lx5QoyFl7n3dD8W0g", "bridge-shanhai_orders-2.MkU3OEVBNTcwNTJENDM2Qk.Zq9b2Lx5QoyFl7n3dD8W0g"},
		{"", "Zq9b2Lx5QoyFl7n3dD8W0g", "bridge-shanhai_orders-2..Zq9b2Lx5QoyFl7n3dD8W0g"},
	} {
		if got := ProducerName(tc.cluster, tc.topicID, "shanhai.orders", 2); got != tc.want {
			t.Errorf("ProducerName(%q, %q) = %q, want %q", tc.cluster, tc.topicID, got, tc.want)
		}
	}
}
