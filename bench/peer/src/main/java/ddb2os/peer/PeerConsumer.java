package ddb2os.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.math.BigDecimal;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.retrieval.KinesisClientRecord;
import software.amazon.kinesis.retrieval.polling.PollingConfig;
import software.amazon.kinesis.worker.metric.OperatingRange;
import software.amazon.kinesis.worker.metric.impl.linux.LinuxCpuWorkerMetric;

/**
 * The KCL consumer of the side-by-side benchmark: it does what a ddb2os worker does with each
 * record of a DynamoDB table's Kinesis Data Streams destination. The record's DynamoDB JSON
 * becomes plain JSON, ApproximateCreationDateTime (microseconds) becomes the external version,
 * INSERT/MODIFY index the NewImage and REMOVE deletes, the batch goes to OpenSearch as one bulk
 * request per 5 MiB, and the shard is checkpointed after the bulk is acknowledged.
 *
 * <p>usage: PeerConsumer STREAM APPLICATION INDEX KEY_ATTRIBUTE EXPECTED_RECORDS TIME_LIMIT_S
 *
 * <p>Endpoints come from the environment (D2O_TEST_KINESALITE, D2O_TEST_DYNAMODB,
 * D2O_TEST_OPENSEARCH); there is no default, so nothing is ever sent to AWS. Standard output gets
 * "first_read EPOCH_MS" at the first record, "done EPOCH_MS RECORDS" once EXPECTED_RECORDS were
 * bulked and checkpointed, and "bulk_errors N" with the count of items refused for a reason other
 * than an older version (409).
 */
public final class PeerConsumer {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
    private static final int BULK_BYTES = 5 << 20;

    private static final AtomicLong processed = new AtomicLong();
    private static final AtomicLong bulkErrors = new AtomicLong();
    private static final AtomicBoolean firstRead = new AtomicBoolean();
    private static long expected;

    private static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            System.err.println(name + " is not set: run scripts/services start and export"
                    + " scripts/services env");
            System.exit(2);
        }
        return v;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: PeerConsumer STREAM APPLICATION INDEX KEY_ATTRIBUTE"
                    + " EXPECTED_RECORDS TIME_LIMIT_S");
            System.exit(2);
        }
        String stream = args[0];
        String app = args[1];
        String index = args[2];
        String key = args[3];
        expected = Long.parseLong(args[4]);
        long limitS = Long.parseLong(args[5]);
        URI kinesisUrl = URI.create(env("D2O_TEST_KINESALITE"));
        URI dynamoUrl = URI.create(env("D2O_TEST_DYNAMODB"));
        String opensearch = env("D2O_TEST_OPENSEARCH").replaceAll("/+$", "");

        Region region = Region.US_EAST_1;
        StaticCredentialsProvider creds = StaticCredentialsProvider.create(
                AwsBasicCredentials.create("AKIDPEERBENCH", "peer-bench-secret"));
        KinesisAsyncClient kinesis = KinesisAsyncClient.builder()
                .endpointOverride(kinesisUrl).region(region).credentialsProvider(creds)
                .httpClientBuilder(NettyNioAsyncHttpClient.builder()
                        .protocol(Protocol.HTTP1_1).maxConcurrency(64))
                .build();
        DynamoDbAsyncClient dynamo = DynamoDbAsyncClient.builder()
                .endpointOverride(dynamoUrl).region(region).credentialsProvider(creds).build();
        // Never called (NullMetricsFactory below); pointed at a closed local port all the same.
        CloudWatchAsyncClient cloudwatch = CloudWatchAsyncClient.builder()
                .endpointOverride(URI.create("http://127.0.0.1:9")).region(region)
                .credentialsProvider(creds).build();
        HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10)).build();

        ShardRecordProcessorFactory factory = () -> new Processor(http, opensearch, index, key);
        String workerId = "peer-" + ProcessHandle.current().pid();
        ConfigsBuilder cb = new ConfigsBuilder(stream, app, kinesis, dynamo, cloudwatch, workerId,
                factory);
        PollingConfig polling = new PollingConfig(stream, kinesis)
                .maxRecords(Integer.getInteger("peer.maxRecords", 1000))
                .idleTimeBetweenReadsInMillis(Long.getLong("peer.idleMillis", 200L));
        // The default worker metrics probe the EC2/ECS/EKS metadata addresses to pick a
        // platform; naming the Linux CPU metric keeps the worker on this machine.
        cb.leaseManagementConfig().workerUtilizationAwareAssignmentConfig().workerMetricList(
                List.of(new LinuxCpuWorkerMetric(
                        OperatingRange.builder().maxUtilization(100).build())));
        Scheduler scheduler = new Scheduler(
                cb.checkpointConfig(),
                cb.coordinatorConfig(),
                cb.leaseManagementConfig(),
                cb.lifecycleConfig(),
                cb.metricsConfig().metricsFactory(new NullMetricsFactory()),
                cb.processorConfig(),
                cb.retrievalConfig()
                        .initialPositionInStreamExtended(
                                InitialPositionInStreamExtended.newInitialPosition(
                                        InitialPositionInStream.TRIM_HORIZON))
                        .retrievalSpecificConfig(polling));
        Thread t = new Thread(scheduler, "kcl-scheduler");
        t.setDaemon(true);
        t.start();
        long deadline = System.currentTimeMillis() + limitS * 1000;
        while (System.currentTimeMillis() < deadline && processed.get() < expected) {
            Thread.sleep(50);
        }
        System.out.println("bulk_errors " + bulkErrors.get());
        if (processed.get() >= expected) {
            System.out.println("done " + System.currentTimeMillis() + " " + processed.get());
        } else {
            System.out.println("timeout " + processed.get());
        }
        System.out.flush();
        // The measurement is over: leave without the graceful shutdown's lease hand-over.
        Runtime.getRuntime().halt(processed.get() >= expected ? 0 : 1);
    }

    /** DynamoDB JSON (an AttributeValue) to plain JSON, as ddb2os converts it. */
    static JsonNode plain(JsonNode av) {
        Map.Entry<String, JsonNode> e = av.fields().next();
        JsonNode v = e.getValue();
        switch (e.getKey()) {
            case "S":
                return v;
            case "N":
                return NODES.numberNode(new BigDecimal(v.asText()));
            case "BOOL":
                return v;
            case "NULL":
                return NODES.nullNode();
            case "B":
                return v;
            case "SS":
            case "BS":
                return v;
            case "NS": {
                ArrayNode a = NODES.arrayNode();
                for (JsonNode n : v) {
                    a.add(NODES.numberNode(new BigDecimal(n.asText())));
                }
                return a;
            }
            case "L": {
                ArrayNode a = NODES.arrayNode();
                for (JsonNode n : v) {
                    a.add(plain(n));
                }
                return a;
            }
            case "M":
                return image(v);
            default:
                throw new IllegalArgumentException("unknown AttributeValue type " + e.getKey());
        }
    }

    static ObjectNode image(JsonNode m) {
        ObjectNode o = NODES.objectNode();
        for (Iterator<Map.Entry<String, JsonNode>> it = m.fields(); it.hasNext();) {
            Map.Entry<String, JsonNode> f = it.next();
            o.set(f.getKey(), plain(f.getValue()));
        }
        return o;
    }

    static final class Processor implements ShardRecordProcessor {
        private final HttpClient http;
        private final String opensearch;
        private final String index;
        private final String key;

        Processor(HttpClient http, String opensearch, String index, String key) {
            this.http = http;
            this.opensearch = opensearch;
            this.index = index;
            this.key = key;
        }

        @Override
        public void initialize(InitializationInput in) {}

        @Override
        public void processRecords(ProcessRecordsInput in) {
            List<KinesisClientRecord> records = in.records();
            if (records.isEmpty()) {
                return;
            }
            if (firstRead.compareAndSet(false, true)) {
                System.out.println("first_read " + System.currentTimeMillis());
                System.out.flush();
            }
            ByteArrayOutputStream body = new ByteArrayOutputStream(1 << 20);
            try {
                for (KinesisClientRecord r : records) {
                    ByteBuffer data = r.data();
                    byte[] bytes = new byte[data.remaining()];
                    data.get(bytes);
                    item(JSON.readTree(bytes), body);
                    if (body.size() >= BULK_BYTES) {
                        bulk(body.toByteArray());
                        body.reset();
                    }
                }
                if (body.size() > 0) {
                    bulk(body.toByteArray());
                }
                in.checkpointer().checkpoint();
            } catch (Exception e) {
                throw new RuntimeException("batch of " + records.size() + " records failed", e);
            }
            processed.addAndGet(records.size());
        }

        private void item(JsonNode rec, ByteArrayOutputStream body) throws IOException {
            JsonNode ddb = rec.get("dynamodb");
            String id = ddb.get("Keys").get(key).fields().next().getValue().asText();
            long version = ddb.get("ApproximateCreationDateTime").asLong();
            if (!"MICROSECOND".equals(ddb.path("ApproximateCreationDateTimePrecision").asText())) {
                version *= 1000; // milliseconds: room for 1000 changes per millisecond
            }
            boolean remove = "REMOVE".equals(rec.get("eventName").asText());
            ObjectNode meta = NODES.objectNode();
            meta.put("_index", index).put("_id", id).put("version", version)
                    .put("version_type", "external");
            ObjectNode action = NODES.objectNode();
            action.set(remove ? "delete" : "index", meta);
            JSON.writeValue(body, action);
            body.write('\n');
            if (!remove) {
                JSON.writeValue(body, image(ddb.get("NewImage")));
                body.write('\n');
            }
        }

        /** One bulk request, retried whole on 429 and 5xx; items refused with 409 are older
         *  versions (already superseded), every other refused item is counted. */
        private void bulk(byte[] body) throws IOException, InterruptedException {
            HttpRequest req = HttpRequest.newBuilder(URI.create(opensearch
                            + "/_bulk?filter_path=errors,items.*.status,items.*.error.type"))
                    .header("Content-Type", "application/x-ndjson")
                    .timeout(Duration.ofSeconds(60))
                    .POST(HttpRequest.BodyPublishers.ofByteArray(body)).build();
            for (int attempt = 0;; attempt++) {
                HttpResponse<byte[]> res = http.send(req, HttpResponse.BodyHandlers.ofByteArray());
                int code = res.statusCode();
                if ((code == 429 || code >= 500) && attempt < 10) {
                    Thread.sleep(Math.min(5000, 50L << attempt));
                    continue;
                }
                if (code != 200) {
                    throw new IOException("bulk: HTTP " + code + ": "
                            + new String(res.body(), StandardCharsets.UTF_8));
                }
                JsonNode r = JSON.readTree(res.body());
                if (r.path("errors").asBoolean(false)) {
                    for (JsonNode it : r.path("items")) {
                        int s = it.elements().next().path("status").asInt();
                        if (s >= 300 && s != 409) {
                            bulkErrors.incrementAndGet();
                        }
                    }
                }
                return;
            }
        }

        @Override
        public void leaseLost(LeaseLostInput in) {}

        @Override
        public void shardEnded(ShardEndedInput in) {
            try {
                in.checkpointer().checkpoint();
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }

        @Override
        public void shutdownRequested(ShutdownRequestedInput in) {}
    }

    private PeerConsumer() {}
}
