import Testing

@testable import SluiceConfig

/// A bad configuration and the error it must raise.
struct BadCase: Sendable, CustomTestStringConvertible {
    var text: String
    var kind: ConfigError.Kind
    var line: Int
    var key: String
    /// A piece of the message saying what was wrong.
    var says: String
    var testDescription: String { "\(kind): \(text.split(separator: "\n").last ?? "")" }
}

let badCases: [BadCase] = [
    // The example from the brief, word for word.
    BadCase(
        text: "# limits\n\n\nlistener 1883\n\n\n\n\n\n\n\nmax_inflight_messages abc",
        kind: .badValue,
        line: 12,
        key: "max_inflight_messages",
        says: "expected a whole number from 0 to 65535, got 'abc'"
    ),
    BadCase(text: "allow_anonymouse true", kind: .unknownKey, line: 1, key: "allow_anonymouse", says: "unknown key"),
    BadCase(text: "port 0", kind: .badValue, line: 1, key: "port", says: "from 1 to 65535"),
    BadCase(
        text: "port 1883\nlistener 1883",
        kind: .duplicateListener,
        line: 2,
        key: "listener",
        says: "default listener"
    ),
    BadCase(
        text: "certfile /x.pem\nlistener 1883",
        kind: .listenerKeyOutsideListener,
        line: 1,
        key: "certfile",
        says: "or Mosquitto's 'port PORT'"
    ),
    BadCase(
        text: "per_listener_settings maybe",
        kind: .badValue,
        line: 1,
        key: "per_listener_settings",
        says: "expected true or false"
    ),
    BadCase(text: "persistence", kind: .missingValue, line: 1, key: "persistence", says: "a value is required"),
    BadCase(text: "password_file", kind: .missingValue, line: 1, key: "password_file", says: "a value is required"),
    BadCase(text: "listener", kind: .missingValue, line: 1, key: "listener", says: "a value is required"),
    BadCase(
        text: "max_keepalive 60 # one minute",
        kind: .tooManyValues,
        line: 1,
        key: "max_keepalive",
        says: "expected one value, got 4"
    ),
    BadCase(
        text: "listener 1883 127.0.0.1 extra",
        kind: .tooManyValues,
        line: 1,
        key: "listener",
        says: "at most 2 values"
    ),
    BadCase(
        text: "persistence yes",
        kind: .badValue,
        line: 1,
        key: "persistence",
        says: "expected true or false, got 'yes'"
    ),
    BadCase(
        text: "max_keepalive 65536",
        kind: .badValue,
        line: 1,
        key: "max_keepalive",
        says: "from 0 to 65535, got '65536'"
    ),
    BadCase(
        text: "max_queued_messages -1",
        kind: .badValue,
        line: 1,
        key: "max_queued_messages",
        says: "at least 0, got '-1'"
    ),
    BadCase(
        text: "message_size_limit 268435456",
        kind: .badValue,
        line: 1,
        key: "message_size_limit",
        says: "from 0 to 268435455"
    ),
    BadCase(text: "max_connections -2", kind: .badValue, line: 1, key: "max_connections", says: "at least -1"),
    BadCase(
        text: "max_topic_levels 0",
        kind: .badValue,
        line: 1,
        key: "max_topic_levels",
        says: "from 1 to 65535, got '0'"
    ),
    BadCase(
        text: "max_topic_levels 65536",
        kind: .badValue,
        line: 1,
        key: "max_topic_levels",
        says: "from 1 to 65535, got '65536'"
    ),
    BadCase(text: "listener 70000", kind: .badValue, line: 1, key: "listener", says: "from 0 to 65535, got '70000'"),
    BadCase(
        text: "listener 1883\nprotocol mqtts",
        kind: .badValue,
        line: 2,
        key: "protocol",
        says: "expected one of mqtt, websockets, got 'mqtts'"
    ),
    BadCase(text: "log_type verbose", kind: .badValue, line: 1, key: "log_type", says: "got 'verbose'"),
    BadCase(
        text: "persistent_client_expiration 10",
        kind: .badValue,
        line: 1,
        key: "persistent_client_expiration",
        says: "expected a duration"
    ),
    BadCase(
        text: "persistent_client_expiration 3x",
        kind: .badValue,
        line: 1,
        key: "persistent_client_expiration",
        says: "got '3x'"
    ),
    BadCase(text: "store_max_size 2TB", kind: .badValue, line: 1, key: "store_max_size", says: "got '2TB'"),
    BadCase(text: "store_max_size 1KB", kind: .badValue, line: 1, key: "store_max_size", says: "from 1MB"),
    BadCase(text: "store_min_free 95%", kind: .badValue, line: 1, key: "store_min_free", says: "from 0% to 90%"),
    BadCase(text: "store_min_free -1%", kind: .badValue, line: 1, key: "store_min_free", says: "got '-1%'"),
    BadCase(text: "store_min_free lots", kind: .badValue, line: 1, key: "store_min_free", says: "got 'lots'"),
    BadCase(text: "store_min_free", kind: .missingValue, line: 1, key: "store_min_free", says: "required"),
    BadCase(
        text: "queue_commit_window 10001",
        kind: .badValue,
        line: 1,
        key: "queue_commit_window",
        says: "expected auto or milliseconds from 0 to 10000, got '10001'"
    ),
    BadCase(
        text: "# flash\nqueue_commit_window -1",
        kind: .badValue,
        line: 2,
        key: "queue_commit_window",
        says: "got '-1'"
    ),
    BadCase(text: "queue_commit_window Auto", kind: .badValue, line: 1, key: "queue_commit_window", says: "got 'Auto'"),
    BadCase(text: "queue_commit_window 20ms", kind: .badValue, line: 1, key: "queue_commit_window", says: "got '20ms'"),
    BadCase(text: "queue_commit_window", kind: .missingValue, line: 1, key: "queue_commit_window", says: "required"),
    BadCase(
        text: "queue_commit_window auto 20",
        kind: .tooManyValues,
        line: 1,
        key: "queue_commit_window",
        says: "auto 20"
    ),
    BadCase(text: "metrics_listener http", kind: .badValue, line: 1, key: "metrics_listener", says: "got 'http'"),
    BadCase(text: "lorawan_region eu999", kind: .badValue, line: 1, key: "lorawan_region", says: "got 'eu999'"),
    BadCase(
        text: "lorawan_udp_listener 1700x",
        kind: .badValue,
        line: 1,
        key: "lorawan_udp_listener",
        says: "got '1700x'"
    ),
    BadCase(
        text: "lorawan_udp_listener",
        kind: .missingValue,
        line: 1,
        key: "lorawan_udp_listener",
        says: "a value is required"
    ),
    BadCase(text: "lorawan_gateway_timeout 0", kind: .badValue, line: 1, key: "lorawan_gateway_timeout", says: "0"),
    BadCase(text: "connect_timeout 0", kind: .badValue, line: 1, key: "connect_timeout", says: "from 1 to 3600"),
    BadCase(
        text: "queue_overflow drop_newest",
        kind: .badValue,
        line: 1,
        key: "queue_overflow",
        says: "drop_oldest, reject_new"
    ),
    BadCase(
        text: "bridge_max_inflight 0",
        kind: .badValue,
        line: 1,
        key: "bridge_max_inflight",
        says: "from 1 to 65535"
    ),
    BadCase(
        text: "bridge_max_attempts 0",
        kind: .badValue,
        line: 1,
        key: "bridge_max_attempts",
        says: "from 1 to 1000"
    ),
    BadCase(text: "bridge_max_rate fast", kind: .badValue, line: 1, key: "bridge_max_rate", says: "got 'fast'"),
    BadCase(text: "bridge_max_rate -1", kind: .badValue, line: 1, key: "bridge_max_rate", says: "-1"),
    BadCase(text: "bridge_max_rate 10 0", kind: .badValue, line: 1, key: "bridge_max_rate", says: "0"),
    BadCase(text: "bridge_max_rate", kind: .missingValue, line: 1, key: "bridge_max_rate", says: "a value is required"),
    BadCase(text: "bridge_max_rate 1 2 3", kind: .tooManyValues, line: 1, key: "bridge_max_rate", says: "at most 2"),
    BadCase(text: "queue_max_age forever", kind: .badValue, line: 1, key: "queue_max_age", says: "or 0 for none"),
    BadCase(text: "queue_max_bytes 12XB", kind: .badValue, line: 1, key: "queue_max_bytes", says: "512MB"),
    // Section errors.
    BadCase(
        text: "cafile /etc/ssl/ca.crt",
        kind: .listenerKeyOutsideListener,
        line: 1,
        key: "cafile",
        says: "'listener PORT'"
    ),
    BadCase(
        text: "protocol websockets\nlistener 9001",
        kind: .listenerKeyOutsideListener,
        line: 1,
        key: "protocol",
        says: "belongs to a listener"
    ),
    BadCase(
        text: "address 10.0.0.1\nconnection c",
        kind: .bridgeKeyOutsideConnection,
        line: 1,
        key: "address",
        says: "'connection NAME'"
    ),
    BadCase(
        text: "topic a/# out",
        kind: .bridgeKeyOutsideConnection,
        line: 1,
        key: "topic",
        says: "belongs to a bridge"
    ),
    BadCase(
        text: minimalBridgeText + minimalBridgeText,
        kind: .duplicateConnection,
        line: 4,
        key: "connection",
        says: "already defined at gateway.conf:1"
    ),
    BadCase(
        text: "listener 1883\nlistener 1883",
        kind: .duplicateListener,
        line: 2,
        key: "listener",
        says: "already a listener at gateway.conf:1"
    ),
    BadCase(text: "connection a/b", kind: .badValue, line: 1, key: "connection", says: "got 'a/b'"),
    BadCase(text: "connection c\ntopic a/#", kind: .incompleteSection, line: 1, key: "connection", says: "no address"),
    BadCase(
        text: "connection c\naddress 127.0.0.1",
        kind: .incompleteSection,
        line: 1,
        key: "connection",
        says: "no topic"
    ),
    BadCase(text: "connection c\naddress", kind: .missingValue, line: 2, key: "address", says: "a value is required"),
    BadCase(
        text: "connection c\naddress host:99999",
        kind: .badValue,
        line: 2,
        key: "address",
        says: "port from 1 to 65535"
    ),
    BadCase(text: "connection c\naddress [::1:1883", kind: .badValue, line: 2, key: "address", says: "[::1]:1883"),
    BadCase(
        text: "connection c\nbridge_protocol_version mqttv5",
        kind: .badValue,
        line: 2,
        key: "bridge_protocol_version",
        says: "got 'mqttv5'"
    ),
    BadCase(
        text: "connection c\nkeepalive_interval 1",
        kind: .badValue,
        line: 2,
        key: "keepalive_interval",
        says: "from 5 to 65535"
    ),
    BadCase(
        text: "connection c\nrestart_timeout 30 5",
        kind: .badValue,
        line: 2,
        key: "restart_timeout",
        says: "from 30 to 86400, got '5'"
    ),
    BadCase(
        text: "connection c\nrestart_timeout",
        kind: .missingValue,
        line: 2,
        key: "restart_timeout",
        says: "a value is required"
    ),
    BadCase(
        text: "connection c\nnotification_topic a/#",
        kind: .badValue,
        line: 2,
        key: "notification_topic",
        says: "topic name contains a wildcard"
    ),
    BadCase(
        text: minimalBridgeText + "bridge_insecure true",
        kind: .incompleteSection,
        line: 1,
        key: "connection",
        says: "neither bridge_cafile"
    ),
    BadCase(
        text: "listener 8883\ntls_version tlsv1.2",
        kind: .incompleteSection,
        line: 1,
        key: "listener",
        says: "no certfile or keyfile"
    ),
    BadCase(
        text: "listener 8883\ntls_version tlsv1.0",
        kind: .badValue,
        line: 2,
        key: "tls_version",
        says: "got 'tlsv1.0'"
    ),
    // Topic lines.
    BadCase(text: "connection c\ntopic", kind: .missingValue, line: 2, key: "topic", says: "pattern is required"),
    BadCase(
        text: "connection c\ntopic a/# sideways",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "in, out or both, got 'sideways'"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 3",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "QoS 0, 1 or 2, got '3'"
    ),
    BadCase(text: "connection c\ntopic a/# out one", kind: .badTopic, line: 2, key: "topic", says: "got 'one'"),
    BadCase(
        text: "connection c\ntopic a/# out 1 local/",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "needs a remote prefix"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 \"\" remote/ extra",
        kind: .tooManyValues,
        line: 2,
        key: "topic",
        says: "at most 5"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 l/+/ r/",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "local prefix must not contain"
    ),
    BadCase(
        text: "connection c\ntopic a/# out 1 l/ r/#",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "remote prefix must not contain"
    ),
    BadCase(
        text: "connection c\ntopic a/#/b",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "not a valid topic filter"
    ),
    BadCase(
        text: "connection c\ntopic a/b#",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "'#' must be alone in the last level"
    ),
    BadCase(
        text: "connection c\ntopic a/b+/c",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "'+' must be alone in its level"
    ),
    BadCase(text: "connection c\ntopic # out 0 gw r/", kind: .badTopic, line: 2, key: "topic", says: "'gw#'"),
    BadCase(text: "connection c\ntopic \"\" out 1", kind: .badTopic, line: 2, key: "topic", says: "empty pattern"),
    BadCase(
        text: "connection c\ntopic \"\" out 1 \"\" r/x",
        kind: .badTopic,
        line: 2,
        key: "topic",
        says: "empty pattern"
    ),
    BadCase(text: "connection c\ntopic \"a/# out", kind: .badTopic, line: 2, key: "topic", says: "not closed"),
    // Missing referenced files.
    BadCase(
        text: "password_file /nonexistent/passwd",
        kind: .missingFile,
        line: 1,
        key: "password_file",
        says: "'/nonexistent/passwd' does not exist"
    ),
    BadCase(text: "acl_file /nonexistent/acl", kind: .missingFile, line: 1, key: "acl_file", says: "does not exist"),
    BadCase(
        text: "listener 8883\ncafile /nonexistent/ca.crt",
        kind: .missingFile,
        line: 2,
        key: "cafile",
        says: "does not exist"
    ),
    BadCase(
        text: "listener 8883\ncertfile /nonexistent/s.crt",
        kind: .missingFile,
        line: 2,
        key: "certfile",
        says: "does not exist"
    ),
    BadCase(
        text: "listener 8883\nkeyfile /nonexistent/s.key",
        kind: .missingFile,
        line: 2,
        key: "keyfile",
        says: "does not exist"
    ),
    BadCase(text: "listener 8883\ncapath /nonexistent/", kind: .missingFile, line: 2, key: "capath", says: "directory"),
    BadCase(
        text: "connection c\nbridge_cafile /nonexistent/ca",
        kind: .missingFile,
        line: 2,
        key: "bridge_cafile",
        says: "does not exist"
    ),
    BadCase(
        text: "connection c\nbridge_certfile /nonexistent/c",
        kind: .missingFile,
        line: 2,
        key: "bridge_certfile",
        says: "does not exist"
    ),
    BadCase(
        text: "connection c\nbridge_keyfile /nonexistent/k",
        kind: .missingFile,
        line: 2,
        key: "bridge_keyfile",
        says: "does not exist"
    ),
    BadCase(
        text: "include_dir /nonexistent/conf.d",
        kind: .missingFile,
        line: 1,
        key: "include_dir",
        says: "does not exist"
    ),
]

@Test(arguments: badCases)
func badConfigNamesFileLineAndKey(_ bad: BadCase) throws {
    try expectNamesFileLineAndKey(bad)
}

/// The error for `bad.text` is `bad.kind`, on gateway.conf's `bad.line`, about `bad.key`, and says `bad.says`.
func expectNamesFileLineAndKey(_ bad: BadCase) throws {
    let error = try #require(parseError(bad.text))
    #expect(error.kind == bad.kind)
    #expect(error.file == "gateway.conf")
    #expect(error.line == bad.line)
    #expect(error.key == bad.key)
    #expect(error.description.hasPrefix("gateway.conf:\(bad.line): key '\(bad.key)': "), "\(error)")
    #expect(error.description.contains(bad.says), "\(error)")
}

@Test func theBriefsExampleMessageReadsExactly() throws {
    let text = String(repeating: "\n", count: 11) + "max_inflight_messages abc"
    let error = try #require(parseError(text))
    #expect(
        error.description
            == "gateway.conf:12: key 'max_inflight_messages': expected a whole number from 0 to 65535, got 'abc'"
    )
}
