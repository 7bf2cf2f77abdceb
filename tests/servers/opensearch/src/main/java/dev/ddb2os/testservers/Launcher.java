package dev.ddb2os.testservers;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;

import org.codelibs.opensearch.runner.OpenSearchRunner;
import org.opensearch.common.settings.Settings;

/**
 * Test-only launcher used by scripts/services: runs ONE real OpenSearch 2.19 node inside this JVM,
 * bound to 127.0.0.1, for the ddb2os integration suite and scripts/demo.
 *
 * <pre>
 * usage: Launcher HTTP_PORT TRANSPORT_PORT HOME_DIR [LOGS_DIR]
 * </pre>
 *
 * HOME_DIR receives the node's config and data (the caller wipes it between runs); OpenSearch's own log
 * files go to LOGS_DIR (default HOME_DIR/logs; scripts/services passes .services/logs/opensearch).
 * When the node is up and the cluster is at least yellow, HOME_DIR/READY is written (atomically) with
 * "pid http_port".
 * Any start failure (busy port, bad settings, ...) prints the cause and exits 1: OpenSearch's non-daemon
 * threads would otherwise keep a half-started JVM alive and scripts/services would wait for nothing.
 * SIGTERM closes the node cleanly through a shutdown hook and exits 0.
 */
public final class Launcher {
    private Launcher() {}

    public static void main(final String[] args) {
        if (args.length < 3 || args.length > 4) {
            System.err.println("usage: Launcher HTTP_PORT TRANSPORT_PORT HOME_DIR [LOGS_DIR]");
            System.exit(2);
        }
        final int httpPort = port(args[0]);
        final int transportPort = port(args[1]);
        final Path home = Paths.get(args[2]).toAbsolutePath();
        final Path logs = (args.length > 3 ? Paths.get(args[3]) : home.resolve("logs")).toAbsolutePath();
        final Path ready = home.resolve("READY");

        final OpenSearchRunner runner = new OpenSearchRunner();
        try {
            Files.createDirectories(home);
            Files.createDirectories(logs);
            Files.deleteIfExists(ready);
            // The runner applies these after reading its own opensearch.yml, so they win.
            runner.onBuild((nodeIndex, s) -> {
                configure(s, httpPort, transportPort);
                s.put("path.logs", logs.toString()); // the runner only fills path.logs when absent
            });
            // The runner refuses HTTP ports above its maxHttpPort (9299 by default), which ruled out
            // a second set of servers on 9300 and up.
            runner.setMaxHttpPort(Math.max(9299, httpPort));
            runner.build(OpenSearchRunner.newConfigs()
                    .basePath(home.toString())
                    .numOfNode(1)
                    .baseHttpPort(httpPort - 1) // runner adds the node number; http.port above is what binds
                    .clusterName("ddb2os-test")
                    .printOnFailure());
            if (runner.node() == null) {
                throw new IllegalStateException("OpenSearch node did not start");
            }
            runner.ensureYellow();

            final Path tmp = home.resolve("READY.tmp");
            Files.write(tmp, (ProcessHandle.current().pid() + " " + httpPort + "\n")
                    .getBytes(StandardCharsets.UTF_8));
            Files.move(tmp, ready, StandardCopyOption.ATOMIC_MOVE);
            System.out.println("ddb2os-launcher: OpenSearch ready on http://127.0.0.1:" + httpPort);
        } catch (Throwable t) {
            System.err.println("ddb2os-launcher: OpenSearch failed to start: " + t);
            t.printStackTrace();
            System.exit(1);
        }

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                Files.deleteIfExists(ready);
                runner.close();
            } catch (Exception e) {
                System.err.println("ddb2os-launcher: close failed: " + e);
            }
        }, "ddb2os-launcher-shutdown"));

        try {
            Thread.currentThread().join(); // the node runs on its own threads; park main until SIGTERM
        } catch (InterruptedException e) {
            System.exit(0);
        }
    }

    /** Node settings ddb2os tests rely on. */
    private static void configure(final Settings.Builder s, final int httpPort, final int transportPort) {
        // Explicit ports: a busy port must fail the start, not silently move to the next free one.
        s.put("http.port", Integer.toString(httpPort));
        s.put("transport.port", Integer.toString(transportPort));
        // Loopback only, both HTTP and transport.
        s.put("network.host", "127.0.0.1");
        s.put("http.host", "127.0.0.1");
        s.put("transport.host", "127.0.0.1");
        // One node, no discovery pings and no bootstrap wait.
        s.put("discovery.type", "single-node");
        // The runner's default roles lack ingest; ddb2os may use ingest pipelines in tests.
        s.putList("node.roles", "cluster_manager", "data", "ingest");
        // A nearly full disk on a dev box must not turn test indices read-only and fail _bulk.
        s.put("cluster.routing.allocation.disk.threshold_enabled", false);
        // Tests create and delete many indices; keep deletes by wildcard possible.
        s.put("action.destructive_requires_name", false);
    }

    private static int port(final String text) {
        try {
            final int p = Integer.parseInt(text);
            if (p > 0 && p < 65536) {
                return p;
            }
        } catch (NumberFormatException e) {
            // fall through
        }
        System.err.println("ddb2os-launcher: bad port: " + text);
        System.exit(2);
        return -1;
    }
}
