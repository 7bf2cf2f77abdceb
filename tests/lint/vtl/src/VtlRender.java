// Renders API Gateway mapping templates with Apache Velocity, with $input, $util and $context
// as API Gateway's developer guide describes them ("Mapping template and access logging variable
// reference"). Used by tests/lint/vtl/check_books_api.py, which owns the cases and the checks.
//
// stdin: {"cases": [{"id": "...", "template": "...", "body": "...",
//                    "params": {"path": {}, "querystring": {}, "header": {}},
//                    "context": {"requestId": "...", ...}, "nulls": "empty" | "literal"}]}
// stdout: [{"id": "...", "output": "...", "status": 404 or null, "error": "..." or null}]
//
// "nulls": how a reference that is null renders. API Gateway renders it as an empty string
// ("empty"); plain Velocity writes the reference's own text ("literal"). Templates that are
// correct under both do not depend on that difference.
import com.jayway.jsonpath.Configuration;
import com.jayway.jsonpath.JsonPath;
import com.jayway.jsonpath.Option;
import java.io.InputStreamReader;
import java.io.StringWriter;
import java.net.URLDecoder;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import net.minidev.json.JSONArray;
import net.minidev.json.JSONObject;
import net.minidev.json.JSONValue;
import net.minidev.json.parser.JSONParser;
import net.minidev.json.parser.ParseException;
import org.apache.commons.lang.StringEscapeUtils;
import org.apache.velocity.VelocityContext;
import org.apache.velocity.app.VelocityEngine;
import org.apache.velocity.app.event.EventCartridge;
import org.apache.velocity.app.event.ReferenceInsertionEventHandler;

public final class VtlRender {
    private static final Configuration JSONPATH =
            Configuration.defaultConfiguration().addOptions(Option.SUPPRESS_EXCEPTIONS);

    /** $input: the payload and the method request's parameters. */
    public static final class Input {
        private final String body;
        private final Object parsed;
        private final Map<String, Map<String, String>> params;
        private final String absent;

        Input(String body, Map<String, Map<String, String>> params, String absent) {
            this.body = body;
            this.absent = absent;
            Object p = null;
            if (body != null && !body.isEmpty()) {
                try {
                    p = new JSONParser(JSONParser.MODE_RFC4627).parse(body);
                } catch (ParseException e) {
                    throw new IllegalArgumentException("the payload is not JSON: " + e);
                }
            }
            this.parsed = p;
            this.params = params;
        }

        public String getBody() {
            return body;
        }

        public String body() {
            return body;
        }

        /** The JSONPath's value as an object: maps, lists, strings, numbers; null when absent. */
        public Object path(String jsonPath) {
            if (parsed == null) {
                return null;
            }
            return JsonPath.using(JSONPATH).parse(parsed).read(jsonPath);
        }

        /** The JSONPath's value as JSON text. */
        public String json(String jsonPath) {
            Object v = path(jsonPath);
            return JSONValue.toJSONString(v);
        }

        /** All parameters: path, querystring, header. */
        public Map<String, Map<String, String>> params() {
            return params;
        }

        /** One parameter by name, looked up in path, query string and headers, in that order. */
        public String params(String name) {
            for (String where : new String[] {"path", "querystring", "header"}) {
                Map<String, String> m = params.get(where);
                if (m != null && m.containsKey(name)) {
                    return m.get(name);
                }
            }
            return absent;
        }
    }

    /** $util. */
    public static final class Util {
        public String escapeJavaScript(String s) {
            return StringEscapeUtils.escapeJavaScript(s);
        }

        public Object parseJson(String s) {
            return JSONValue.parse(s);
        }

        public String urlEncode(String s) {
            return URLEncoder.encode(s, StandardCharsets.UTF_8);
        }

        public String urlDecode(String s) {
            return URLDecoder.decode(s, StandardCharsets.UTF_8);
        }

        public String base64Encode(String s) {
            return Base64.getEncoder().encodeToString(s.getBytes(StandardCharsets.UTF_8));
        }

        public String base64Decode(String s) {
            return new String(Base64.getDecoder().decode(s), StandardCharsets.UTF_8);
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Map<String, String>> params(Object o) {
        Map<String, Map<String, String>> out = new HashMap<>();
        for (String where : new String[] {"path", "querystring", "header"}) {
            out.put(where, new HashMap<>());
        }
        if (o instanceof Map) {
            for (Map.Entry<String, Object> e : ((Map<String, Object>) o).entrySet()) {
                Map<String, String> m = out.get(e.getKey());
                if (m == null) {
                    throw new IllegalArgumentException("unknown parameter kind " + e.getKey());
                }
                for (Map.Entry<String, Object> p : ((Map<String, Object>) e.getValue()).entrySet()) {
                    m.put(p.getKey(), String.valueOf(p.getValue()));
                }
            }
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> render(VelocityEngine ve, Map<String, Object> c) {
        Map<String, Object> result = new JSONObject();
        result.put("id", c.get("id"));
        Map<String, Object> context = new HashMap<>();
        Object given = c.get("context");
        if (given instanceof Map) {
            context.putAll((Map<String, Object>) given);
        }
        Map<String, Object> override = new HashMap<>();
        override.put("header", new HashMap<String, Object>());
        context.put("responseOverride", override);

        VelocityContext vc = new VelocityContext();
        boolean empty = "empty".equals(c.get("nulls"));
        // API Gateway answers "" for a parameter the request does not have; "literal" uses null
        vc.put("input", new Input((String) c.get("body"), params(c.get("params")), empty ? "" : null));
        vc.put("util", new Util());
        vc.put("context", context);
        vc.put("stageVariables", new HashMap<String, String>());
        if (empty) {
            EventCartridge ec = new EventCartridge();
            ec.addEventHandler((ReferenceInsertionEventHandler) (ref, value) -> value == null ? "" : value);
            ec.attachToContext(vc);
        }
        StringWriter w = new StringWriter();
        try {
            ve.evaluate(vc, w, String.valueOf(c.get("id")), (String) c.get("template"));
            result.put("output", w.toString());
            Object status = override.get("status");
            result.put("status", status == null ? null : Integer.valueOf(String.valueOf(status)));
            result.put("error", null);
        } catch (RuntimeException e) {
            result.put("output", null);
            result.put("status", null);
            result.put("error", e.toString());
        }
        return result;
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        VelocityEngine ve = new VelocityEngine();
        ve.setProperty("runtime.log.logsystem.class", "org.apache.velocity.runtime.log.NullLogChute");
        ve.init();
        Object in = JSONValue.parseWithException(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        List<Object> out = new JSONArray();
        for (Object c : (List<Object>) ((Map<String, Object>) in).get("cases")) {
            out.add(render(ve, (Map<String, Object>) c));
        }
        System.out.write(JSONValue.toJSONString(out).getBytes(StandardCharsets.UTF_8));
        System.out.flush();
    }
}
