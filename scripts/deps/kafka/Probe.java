// Probe is Kafka's readiness check for scripts/deps.sh, run by the JDK's source launcher against the broker's own jars:
//
//   java -cp '<kafka lib>/*' Probe.java <bootstrap> <seconds> [topic...]
//
// An open port is not a ready broker: this waits until the cluster answers a metadata request with a controller and at
// least one broker, then creates the given topics with 3 partitions (an existing topic is fine), so the first test never
// races topic auto-creation. Exit 0 means ready.
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.errors.TopicExistsException;

public class Probe {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: Probe.java <bootstrap> <seconds> [topic...]");
            System.exit(2);
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 3000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 5000);
        p.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, 200);
        try (Admin admin = Admin.create(p)) {
            Exception last = null;
            while (System.nanoTime() < deadline) {
                try {
                    DescribeClusterResult c = admin.describeCluster();
                    int brokers = c.nodes().get(5, TimeUnit.SECONDS).size();
                    if (brokers > 0 && c.controller().get(5, TimeUnit.SECONDS) != null) {
                        createTopics(admin, args);
                        System.out.println("kafka probe: ready, " + brokers + " broker(s), cluster " + c.clusterId().get());
                        return;
                    }
                } catch (Exception e) {
                    last = e;
                }
                Thread.sleep(500);
            }
            System.err.println("kafka probe: not ready at " + args[0] + ": " + last);
            System.exit(1);
        }
    }

    private static void createTopics(Admin admin, String[] args) throws Exception {
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 2; i < args.length; i++) {
            topics.add(new NewTopic(args[i], 3, (short) 1));
        }
        if (topics.isEmpty()) {
            return;
        }
        for (var f : admin.createTopics(topics).values().values()) {
            try {
                f.get(10, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }
    }
}
