import Testing

@testable import SluiceConfig

// Broker-side Mosquitto keys honoured with Mosquitto's meaning (issue 16): their values, their
// errors (file:line:key), and the pure pieces they drive.

let brokerKeyBadCases: [BadCase] = [
    BadCase(text: "log_timestamp yes", kind: .badValue, line: 1, key: "log_timestamp", says: "expected true or false"),
    BadCase(text: "log_timestamp", kind: .missingValue, line: 1, key: "log_timestamp", says: "a value is required"),
    BadCase(
        text: "listener 1883\nuse_username_as_clientid 1",
        kind: .badValue,
        line: 2,
        key: "use_username_as_clientid",
        says: "expected true or false, got '1'"
    ),
    // A listener key, as in Mosquitto (whose key before any listener opens a second one on port 1883).
    BadCase(
        text: "use_username_as_clientid true\nlistener 1883",
        kind: .listenerKeyOutsideListener,
        line: 1,
        key: "use_username_as_clientid",
        says: "write a 'listener PORT' line"
    ),
    BadCase(text: "max_inflight_bytes -1", kind: .badValue, line: 1, key: "max_inflight_bytes", says: "got '-1'"),
    BadCase(text: "max_inflight_bytes 1k", kind: .badValue, line: 1, key: "max_inflight_bytes", says: "got '1k'"),
    BadCase(
        text: "max_inflight_bytes 1 2",
        kind: .tooManyValues,
        line: 1,
        key: "max_inflight_bytes",
        says: "one value"
    ),
    BadCase(
        text: "upgrade_outgoing_qos on",
        kind: .badValue,
        line: 1,
        key: "upgrade_outgoing_qos",
        says: "true or false"
    ),
    BadCase(text: "log_timestamp_format", kind: .missingValue, line: 1, key: "log_timestamp_format", says: "required"),
    BadCase(
        text: "log_timestamp_format " + String(repeating: "%Y", count: 60),
        kind: .badValue,
        line: 1,
        key: "log_timestamp_format",
        says: "a strftime(3) format that gives 1 to 200 bytes"
    ),
]

@Test(arguments: brokerKeyBadCases)
func badBrokerKeyNamesFileLineAndKey(_ bad: BadCase) throws {
    try expectNamesFileLineAndKey(bad)
}

@Test func logTimestampKeysChooseTheStamp() throws {
    #expect(GatewayConfig.default.logTimestampStyle == .iso8601)
    #expect(try parse("log_timestamp false").logTimestampStyle == .none)
    #expect(try parse("log_timestamp true").logTimestampStyle == .iso8601)
    // The format takes the rest of the line, blanks included.
    #expect(try parse("log_timestamp_format %Y-%m-%d %H:%M:%S").logTimestampStyle == .strftime("%Y-%m-%d %H:%M:%S"))
    // log_timestamp false wins over a format, as in Mosquitto.
    #expect(try parse("log_timestamp_format %s\nlog_timestamp false").logTimestampStyle == .none)
    #expect(try parse("log_timestamp_format %s").notices.isEmpty)
}

@Test func useUsernameAsClientIDIsPerListener() throws {
    let config = try parse("listener 1883\nuse_username_as_clientid true\nlistener 1884\n")
    #expect(config.listeners.map(\.useUsernameAsClientID) == [true, false])
    #expect(config.notices.isEmpty)
    // Mosquitto's pre-2.0 default listener takes the lines above the first `listener`.
    let old = try parse("port 1885\nuse_username_as_clientid true\nlistener 1886")
    #expect(old.listeners.map(\.useUsernameAsClientID) == [true, false])
    #expect(try parse("listener 1883\nuse_username_as_clientid false").listeners[0].useUsernameAsClientID == false)
}

@Test func maxInflightBytesAndUpgradeOutgoingQoSAreRead() throws {
    #expect(try parse("max_inflight_bytes 4096").maxInflightBytes == 4096)
    #expect(GatewayConfig.default.maxInflightBytes == 0)
    #expect(try parse("upgrade_outgoing_qos true").upgradeOutgoingQoS)
    #expect(!GatewayConfig.default.upgradeOutgoingQoS)
}

@Test func logTimestampPrefixes() {
    // 1700000000 is 2023-11-14T22:13:20Z: still 2023 in every time zone.
    #expect(LogTimestamp.iso8601.prefix(at: 1_700_000_000) == "2023-11-14T22:13:20Z ")
    #expect(LogTimestamp.none.prefix(at: 1_700_000_000) == "")
    #expect(LogTimestamp.strftime("%s").prefix(at: 1_700_000_000) == "1700000000: ")
    #expect(LogTimestamp.strftime("%Y [x]").prefix(at: 1_700_000_000) == "2023 [x]: ")
    #expect(LogTimestamp.format(String(repeating: "%Y", count: 60), at: 0) == nil, "240 bytes is too long")
    #expect(LogTimestamp.format(String(repeating: "y", count: 200), at: 0)?.utf8.count == 200)
}

@Test func useSubjectAsUsernameNeedsRequireCertificate() throws {
    let tls = repositoryRoot + "/fixtures/tls"
    let listener = "listener 8883\ncertfile \(tls)/server.pem\nkeyfile \(tls)/server.key.pem\ncafile \(tls)/ca.pem\n"
    let config = try parse(listener + "require_certificate true\nuse_subject_as_username true\n")
    #expect(config.listeners[0].tls?.useSubjectAsUsername == true)
    #expect(config.listeners[0].tls?.useIdentityAsUsername == false)
    #expect(try parse(listener).listeners[0].tls?.useSubjectAsUsername == false)
    let error = try #require(parseError(listener + "use_subject_as_username true\n"))
    #expect(error.kind == .incompleteSection)
    #expect(error.line == 1, "the listener line names the section")
    #expect(error.message.contains("use_subject_as_username true needs require_certificate true"))
    let bad = try #require(parseError(listener + "use_subject_as_username maybe\n"))
    #expect(bad.kind == .badValue && bad.line == 5 && bad.key == "use_subject_as_username")
    // A listener key: it opens no TLS on a plain listener by itself, it asks for certfile and keyfile.
    #expect(parseError("listener 1883\nuse_subject_as_username true\n")?.kind == .incompleteSection)
}
