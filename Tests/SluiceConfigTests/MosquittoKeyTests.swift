import Foundation
import Testing

@testable import SluiceConfig

// Every Mosquitto key gets an answer: honoured, accepted with a notice, or refused with why and
// what to do. The integration test feeds every documented key to `sluice check`; these check the
// wording and the rules one by one.

@Test(arguments: [
    "auth_plugin /usr/lib/auth.so", "plugin /usr/lib/p.so", "auth_opt_backends files", "plugin_opt_db x",
    "memory_limit 64MB", "listener 8883\ntls_keyform engine",
])
func refusedMosquittoKeySaysWhyAndWhatToDo(_ line: String) throws {
    let error = try #require(parseError(line))
    let key = String(line.split(separator: "\n").last!.split(separator: " ")[0])
    #expect(error.kind == .unsupportedKey)
    #expect(error.key == key)
    #expect(error.message.hasPrefix("Mosquitto key '\(key)' is not supported by Sluice: "), "\(error)")
    #expect(error.message.hasSuffix(")"), "the message ends with what to do, in parentheses: \(error)")
}

@Test(arguments: [
    "connection c\naddress 127.0.0.1\ntopic a/#\nnotifications_local_only true",
    "connection c\naddress 127.0.0.1\ntopic a/#\nbridge_require_ocsp true",
])
func bridgeKeysBeyondSluiceAreRefused(_ text: String) throws {
    let error = try #require(parseError(text))
    #expect(error.kind == .unsupportedKey)
    #expect(error.line == 4)
    #expect(error.message.contains("is not supported by Sluice"))
}

@Test func pidFileAndConnectionMessagesAreRead() throws {
    let config = try parse("pid_file /run/sluice/sluice.pid\nconnection_messages false\n")
    #expect(config.pidFile == "/run/sluice/sluice.pid")
    #expect(!config.connectionMessages)
    #expect(config.notices.isEmpty)
    #expect(GatewayConfig.default.connectionMessages && GatewayConfig.default.pidFile == nil)
    #expect(try parse("max_qos 1").maxQoS == 1)
    #expect(GatewayConfig.default.maxQoS == 2)
    #expect(parseError("max_qos 3")?.kind == .badValue)
}

@Test func socketDomainIsPerListener() throws {
    let config = try parse("listener 1883\nsocket_domain ipv4\nlistener 1884\n")
    #expect(config.listeners.map(\.socketDomain) == [.ipv4, nil])
    #expect(parseError("listener 1883\nsocket_domain ipx")?.kind == .badValue)
}

@Test func startTypeWithAnUnknownWordIsABadValue() throws {
    let error = try #require(parseError("connection c\naddress 127.0.0.1\ntopic a/#\nstart_type sometimes"))
    #expect(error.kind == .badValue)
}

@Test func unknownKeysStillSayCheckTheSpelling() throws {
    let error = try #require(parseError("auth_opts_x 1"))  // not the auth_opt_ family
    #expect(error.kind == .unknownKey)
    let bare = try #require(parseError("auth_opt_ 1"))  // the family needs a name after the prefix
    #expect(bare.kind == .unknownKey)
}

@Test func ignoredKeysBecomeNoticesInFileOrder() throws {
    let config = try parse("listener 1883\nlog_dest syslog\nset_tcp_nodelay false\nautosave_interval 10\n")
    #expect(config.notices.map(\.key) == ["log_dest", "set_tcp_nodelay", "autosave_interval"])
    #expect(config.notices.map(\.line) == [2, 3, 4])
    #expect(config.notices[2].message.contains("commits every change"))
    #expect(config.notices[0].description.hasPrefix("gateway.conf:2: key 'log_dest': accepted but not honoured: "))
    #expect(try parse("set_tcp_nodelay true").notices.isEmpty)
}

@Test func keyAnswersCoverTheTableWithReasons() {
    let answers = GatewayConfig.keyAnswers
    #expect(answers.map(\.key) == answers.map(\.key).sorted())
    #expect(Set(answers.map(\.key)).count == answers.count)
    for answer in answers where answer.status != .honoured { #expect(!answer.note.isEmpty, "\(answer.key)") }
    let byKey = Dictionary(uniqueKeysWithValues: answers.map { ($0.key, $0.status) })
    #expect(byKey["auth_opt_*"] == .refused)
    #expect(byKey["allow_duplicate_messages"] == .ignored)
    #expect(byKey["log_timestamp"] == .honoured)
    #expect(byKey["include_dir"] == .honoured)
    #expect(byKey["listener"] == .honoured)
}

@Test func diagnoseReportsEveryBadLineAndTheNotices() throws {
    try withTemporaryDirectory { dir in
        let path = dir + "/gateway.conf"
        try write("frobnicate 1\nlog_dest syslog\nplugin /p.so\nmax_keepalive abc\nlistener 1883\n", to: path)
        let diagnosis = GatewayConfig.diagnose(path: path)
        #expect(diagnosis.config == nil)
        #expect(diagnosis.errors.map(\.line) == [1, 3, 4])
        #expect(diagnosis.errors.map(\.kind) == [.unknownKey, .unsupportedKey, .badValue])
        #expect(diagnosis.notices.map(\.key) == ["log_dest"])

        try write("listener 1883\nallow_duplicate_messages false\n", to: path)
        let good = GatewayConfig.diagnose(path: path)
        #expect(good.errors.isEmpty)
        #expect(good.config?.listeners.map(\.port) == [1883])
        #expect(good.notices.map(\.key) == ["allow_duplicate_messages"])
    }
}

// Mosquitto's pre-2.0 default listener.

@Test func portAndBindAddressMakeTheDefaultListener() throws {
    #expect(try parse("port 1884").listeners == [Listener(port: 1884)])
    #expect(try parse("bind_address 127.0.0.1").listeners == [Listener(port: 1883, address: "127.0.0.1")])
    let config = try parse("port 1884\nbind_address ::1\nlistener 9001 127.0.0.1\nprotocol websockets\n")
    var websockets = Listener(port: 9001, address: "127.0.0.1")
    websockets.protocolKind = .websockets
    #expect(config.listeners == [Listener(port: 1884, address: "::1"), websockets])
    // On every interface, so anonymous clients are refused unless the file says otherwise (Mosquitto 2).
    #expect(try !parse("port 1883").effectiveAllowAnonymous)
}

@Test func listenerKeysBeforeTheFirstListenerBelongToTheDefaultListener() throws {
    let tls = repositoryRoot + "/fixtures/tls"
    let config = try parse(
        "certfile \(tls)/server.pem\nport 8883\nkeyfile \(tls)/server.key.pem\nlistener 1883 127.0.0.1\n"
    )
    #expect(config.listeners.map(\.port) == [8883, 1883])
    #expect(config.listeners[0].tls?.certFile == "\(tls)/server.pem")
    #expect(config.listeners[1].tls == nil)
}

@Test func securityKeysInAListenerSectionWarnThatTheyApplyEverywhere() throws {
    let config = try parse("listener 1883 127.0.0.1\nlistener 8883\nallow_anonymous false\npassword_file /dev/null\n")
    #expect(config.allowAnonymous == false)
    #expect(config.notices.map(\.key) == ["allow_anonymous", "password_file"])
    #expect(config.notices.map(\.line) == [3, 4])
    #expect(
        config.notices[0].message.contains(
            "listener all interfaces:8883 but applies to every listener, also 127.0.0.1:1883"
        )
    )
    // Written above the listeners, or with a single listener, it is plain: no notice.
    #expect(try parse("allow_anonymous false\nlistener 1883 127.0.0.1\nlistener 8883\n").notices.isEmpty)
    #expect(try parse("listener 8883\nallow_anonymous false\n").notices.isEmpty)
}

@Test func perListenerSettingsGiveEachListenerItsOwnAuthentication() throws {
    let config = try parse(
        """
        per_listener_settings true
        password_file /dev/null
        listener 1883 127.0.0.1
        listener 8883
        allow_anonymous false
        password_file /dev/zero
        listener 8884
        """
    )
    #expect(config.perListenerSettings)
    #expect(config.allowAnonymous == nil && config.passwordFile == "/dev/null")
    #expect(config.authentication(forListener: 0) == (true, "/dev/null"))  // loopback: anonymous by default
    #expect(config.authentication(forListener: 1) == (false, "/dev/zero"))
    #expect(config.authentication(forListener: 2) == (false, "/dev/null"))  // every interface: refused by default
    #expect(config.notices.isEmpty)  // per listener on purpose: no "applies to every listener" notice
    // Without it the listener's lines are global, as before.
    let global = try parse("listener 1883 127.0.0.1\nlistener 8883\nallow_anonymous false\n")
    #expect(global.authentication(forListener: 0) == (false, nil))
}

@Test func perListenerACLFileIsRefused() throws {
    let error = try #require(parseError("per_listener_settings true\nlistener 1883\nacl_file /dev/null\n"))
    #expect(error.kind == .unsupportedKey)
    #expect(error.line == 3)
    #expect(error.message.contains("an ACL file per listener is not implemented"))
    #expect(try parse("per_listener_settings true\nacl_file /dev/null\nlistener 1883\n").aclFile == "/dev/null")
}

@Test func logDestSyslogIsNoticedAndBadWordsAreErrors() throws {
    let config = try parse("log_dest syslog\nlog_dest file /tmp/x.log\n")
    #expect(config.logDestinations == [.file("/tmp/x.log")])
    #expect(config.notices.map(\.key) == ["log_dest"])
    #expect(config.notices[0].message.contains("does not log to syslog"))
    #expect(parseError("log_dest file")?.kind == .missingValue)
    #expect(parseError("log_dest paper")?.kind == .badValue)
    #expect(parseError("log_dest stderr extra")?.kind == .badValue)
}

@Test func startTypeThresholdAndIdleTimeoutAreReadPerBridge() throws {
    let bridge = "connection c\naddress 127.0.0.1\ntopic a/# out\n"
    let defaults = try #require(try parse(bridge).bridges.first)
    #expect(defaults.startType == .automatic && defaults.threshold == 10 && defaults.idleTimeout == 60)
    let lazy = try #require(try parse(bridge + "start_type lazy\nthreshold 100\nidle_timeout 300\n").bridges.first)
    #expect(lazy.startType == .lazy && lazy.threshold == 100 && lazy.idleTimeout == 300)
    #expect(try parse(bridge + "start_type once\n").bridges.first?.startType == .once)
    #expect(parseError(bridge + "start_type sometimes\n")?.kind == .badValue)
    #expect(parseError(bridge + "threshold 0\n")?.kind == .badValue)
    #expect(parseError(bridge + "idle_timeout -1\n")?.kind == .badValue)
    #expect(parseError("threshold 5\n") != nil)  // a bridge key before any connection
}

@Test func bridgeALPNNeedsTLS() throws {
    let bridge = "connection c\naddress 127.0.0.1\ntopic a/# out\n"
    #expect(parseError(bridge + "bridge_alpn mqtt\n")?.kind == .incompleteSection)
    let ca = FileManager.default.currentDirectoryPath + "/fixtures/tls/ca.pem"
    let config = try parse(bridge + "bridge_cafile \(ca)\nbridge_alpn x-amzn-mqtt-ca\n")
    #expect(config.bridges.first?.bridgeALPN == "x-amzn-mqtt-ca")
    #expect(
        parseError(bridge + "bridge_cafile \(ca)\nbridge_alpn " + String(repeating: "a", count: 256) + "\n")?.kind
            == .badValue
    )
}

@Test func bindInterfaceIsPerListener() throws {
    #expect(try parse("listener 1883\nbind_interface lo\n").listeners.first?.bindInterface == "lo")
    #expect(parseError("listener 1883\nbind_interface " + String(repeating: "e", count: 16) + "\n")?.kind == .badValue)
    #expect(parseError("bind_interface lo\n") != nil)  // a listener key before any listener
}

@Test func mountPointIsAPerListenerPrefixWithoutWildcards() throws {
    #expect(try parse("listener 1883\nmount_point site7/\n").listeners.first?.mountPoint == "site7/")
    #expect(parseError("listener 1883\nmount_point site/+/\n")?.kind == .badValue)
    #expect(parseError("listener 1883\nmount_point a/#\n")?.kind == .badValue)
    // MQTTCore's topic name check: at most 65,535 bytes.
    #expect(parseError("listener 1883\nmount_point \(String(repeating: "a", count: 65_536))\n")?.kind == .badValue)
}

@Test func bridgePSKNeedsBothKeysHexAndNoCertificates() throws {
    let bridge = "connection c\naddress 127.0.0.1:8883\ntopic a/# out\n"
    let config = try #require(try parse(bridge + "bridge_identity gw1\nbridge_psk 0aFF10\n").bridges.first)
    #expect(config.bridgeIdentity == "gw1" && config.bridgePSK == [0x0A, 0xFF, 0x10] && config.usesTLS)
    #expect(parseError(bridge + "bridge_identity gw1\n")?.kind == .incompleteSection)
    #expect(parseError(bridge + "bridge_psk 0a\n")?.kind == .incompleteSection)
    #expect(parseError(bridge + "bridge_identity gw1\nbridge_psk 0g\n")?.kind == .badValue)
    #expect(parseError(bridge + "bridge_identity gw1\nbridge_psk abc\n")?.kind == .badValue)
    let ca = FileManager.default.currentDirectoryPath + "/fixtures/tls/ca.pem"
    #expect(
        parseError(bridge + "bridge_identity gw1\nbridge_psk 0a\nbridge_cafile \(ca)\n")?.kind == .incompleteSection
    )
}

@Test func pskHintIsPerListenerAndNotWithCertificates() throws {
    #expect(try parse("listener 8883\npsk_hint gw\n").listeners.first?.pskHint == "gw")
    let dir = FileManager.default.currentDirectoryPath + "/fixtures/tls/"
    #expect(
        parseError("listener 8883\ncertfile \(dir)server.pem\nkeyfile \(dir)server.key.pem\npsk_hint gw\n")?.kind
            == .unsupportedKey
    )
    #expect(
        parseError("listener 8883\npsk_hint gw\ncertfile \(dir)server.pem\nkeyfile \(dir)server.key.pem\n")?.kind
            == .incompleteSection
    )
    #expect(parseError("psk_file /nonexistent/psk\n") != nil)
}

@Test func localUsernameIsReadPerBridge() throws {
    let config = try parse("connection c\naddress 127.0.0.1\ntopic a/# out\nlocal_username bridge-user\n")
    #expect(config.bridges.first?.localUsername == "bridge-user")
    #expect(config.notices.isEmpty, "honoured: no 'not honoured' notice")
    #expect(parseError("connection c\naddress 127.0.0.1\ntopic a/# out\nlocal_username\n")?.kind == .missingValue)
}

@Test func crlfileNeedsAFileThatExists() throws {
    #expect(
        parseError("listener 8883\ncertfile /etc/hostname\nkeyfile /etc/hostname\ncrlfile /nonexistent/crl.pem\n")
            != nil
    )
}
