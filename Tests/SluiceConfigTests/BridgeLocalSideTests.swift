import Testing

@testable import SluiceConfig

// The bridge keys once accepted only at Mosquitto's default or ignored: bridge_outgoing_retain,
// bridge_attempt_unsubscribe, bridge_bind_address, local_clientid, local_password, local_cleansession.

private let bridge = "connection c\naddress 127.0.0.1\ntopic a/# out\n"

@Test func bridgeKeysAreReadWithMosquittosDefaults() throws {
    let defaults = try #require(try parse(bridge).bridges.first)
    #expect(defaults.outgoingRetain && defaults.attemptUnsubscribe)
    #expect(defaults.bindAddress == nil && defaults.localClientID == nil && defaults.localPassword == nil)
    #expect(defaults.effectiveLocalClientID(hostName: "gw") == "local.gw.c")
    let text =
        bridge
        + "bridge_outgoing_retain false\nbridge_attempt_unsubscribe false\nbridge_bind_address 127.0.0.2\n"
        + "remote_clientid edge-7\nlocal_clientid bridge local\nlocal_username u\nlocal_password p w\n"
        + "local_cleansession false\n"
    let config = try parse(text)
    let set = try #require(config.bridges.first)
    #expect(!set.outgoingRetain && !set.attemptUnsubscribe)
    #expect(set.bindAddress == "127.0.0.2")
    #expect(set.localClientID == "bridge local" && set.effectiveLocalClientID(hostName: "gw") == "bridge local")
    #expect(set.localPassword == "p w")
    #expect(set.localPasswordLine?.line == 10 && set.localPasswordLine?.file == "gateway.conf")
    #expect(set.localCleanSession == false)
    #expect(config.notices.isEmpty, "all honoured: \(config.notices)")
    #expect(try parse(bridge + "bridge_bind_address ::1\n").bridges.first?.bindAddress == "::1")
    #expect(try parse(bridge + "bridge_outgoing_retain true\n").bridges.first?.outgoingRetain == true)
}

@Test(arguments: [
    ("bridge_outgoing_retain maybe", ConfigError.Kind.badValue),
    ("bridge_outgoing_retain", .missingValue),
    ("bridge_attempt_unsubscribe 0", .badValue),
    ("bridge_attempt_unsubscribe false true", .tooManyValues),
    ("bridge_bind_address gateway.local", .badValue),
    ("bridge_bind_address 10.0.0.256", .badValue),
    ("bridge_bind_address 127.0.0.1:1883", .badValue),
    ("bridge_bind_address", .missingValue),
    ("local_clientid", .missingValue),
    ("local_password", .missingValue),
    ("local_cleansession yes", .badValue),
])
func badBridgeKeyValuesNameFileLineAndKey(_ line: String, _ kind: ConfigError.Kind) throws {
    let error = try #require(parseError(bridge + line + "\n"))
    #expect(error.kind == kind, "\(error)")
    #expect(error.file == "gateway.conf" && error.line == 4, "\(error)")
    #expect(error.key == String(line.split(separator: " ")[0]), "\(error)")
}

@Test(arguments: [
    "bridge_outgoing_retain false", "bridge_attempt_unsubscribe false", "bridge_bind_address 127.0.0.2",
    "local_clientid x", "local_password p", "local_cleansession true",
])
func bridgeKeysOutsideAConnectionAreErrors(_ line: String) throws {
    let error = try #require(parseError(line + "\n"))
    #expect(error.kind == .bridgeKeyOutsideConnection && error.line == 1, "\(error)")
}

@Test func localPasswordNeedsLocalUsername() throws {
    let error = try #require(parseError(bridge + "local_password secret\n"))
    #expect(error.kind == .incompleteSection)
    #expect(error.line == 4 && error.key == "local_password", "\(error)")
    #expect(error.message.contains("local_username"), "\(error)")
}

@Test func localCleanSessionTrueIsAcceptedWithANoticeSayingWhatSluiceDoes() throws {
    let config = try parse(bridge + "cleansession true\nlocal_cleansession true\n")
    #expect(config.bridges.first?.localCleanSession == true)
    let notice = try #require(config.notices.first)
    #expect(config.notices.count == 1)
    #expect(notice.line == 5 && notice.key == "local_cleansession")
    #expect(notice.message.contains("durable queue") && notice.message.contains("sluice queue purge"), "\(notice)")
    // The remote session's clean flag is still honoured: only the local side is always durable.
    #expect(config.bridges.first?.cleanSession == true)
}

@Test func theKeyTableAnswersEachBridgeKeyAsHonoured() {
    let answers = Dictionary(uniqueKeysWithValues: GatewayConfig.keyAnswers.map { ($0.key, $0) })
    for key in [
        "bridge_outgoing_retain", "bridge_attempt_unsubscribe", "bridge_bind_address", "local_clientid",
        "local_password", "local_cleansession",
    ] {
        #expect(answers[key]?.status == .honoured, "\(key)")
        #expect(answers[key]?.note.isEmpty == false, "\(key) says what Sluice restricts")
    }
}

@Test func whereAKeyIsWrittenIsNotASetting() throws {
    // A SIGHUP after lines moved must not report the bridge's settings as changed.
    let before = try parse(bridge + "local_username u\nlocal_password p\n")
    let after = try parse("# moved\n" + bridge + "local_username u\nlocal_password p\n")
    #expect(before.bridges == after.bridges)
}
