import Foundation
import Testing

@testable import SluiceConfig

@Test func theExampleFileParsesAsDocumented() throws {
    let config = try GatewayConfig.load(path: repositoryRoot + "/gateway.conf.example")
    var local = Listener(port: 1883, address: "127.0.0.1")
    local.maxConnections = -1
    #expect(config.listeners == [local])
    #expect(config.allowAnonymous == true && config.effectiveAllowAnonymous)
    #expect(config.persistence)
    #expect(config.persistenceLocation == "./data/")
    #expect(config.passwordFile == nil && config.aclFile == nil)
    #expect(config.listeners.allSatisfy { $0.tls == nil })
    #expect(config.bridges.count == 1)
    let bridge = try #require(config.bridges.first)
    #expect(bridge.name == "central")
    #expect(bridge.addresses == [HostPort(host: "127.0.0.1", port: 1884)])
    #expect(
        bridge.topics == [
            BridgeTopic(pattern: "sensors/#", direction: .out, qos: 1, localPrefix: "", remotePrefix: "gateway1/"),
            BridgeTopic(pattern: "commands/#", direction: .in, qos: 1, localPrefix: "", remotePrefix: "gateway1/"),
        ]
    )
    #expect(bridge.queueMaxAge == .seconds(7 * 86_400))
    #expect(!bridge.usesTLS)
}

@Test func everyKeyLineInTheExampleHasACommentAbove() throws {
    let lines = try String(contentsOfFile: repositoryRoot + "/gateway.conf.example", encoding: .utf8)
        .split(separator: "\n", omittingEmptySubsequences: false)
    for (index, line) in lines.enumerated() where !line.isEmpty && !line.hasPrefix("# ") && line != "#" {
        // A key line (active, or disabled as "#key value"): the line above is a comment or a line of the same key
        // (repeated keys such as log_type share one comment).
        let above = index > 0 ? lines[index - 1] : ""
        let key = line.split(separator: " ").first ?? ""
        #expect(
            above.hasPrefix("#") || above.hasPrefix(key + " "),
            "line \(index + 1) '\(line)' has no comment above it"
        )
    }
}

@Test func includeDirReadsConfFilesInSortedOrder() throws {
    try withTemporaryDirectory { dir in
        let confD = dir + "/conf.d"
        try FileManager.default.createDirectory(atPath: confD, withIntermediateDirectories: true)
        try write("listener 1884 127.0.0.1\nmax_inflight_messages 2\n", to: confD + "/20-second.conf")
        try write("listener 1883 127.0.0.1\nmax_inflight_messages 1\n", to: confD + "/10-first.conf")
        try write("max_inflight_messages 99\n", to: confD + "/30-ignored.txt")
        // The included files continue the open section, as in Mosquitto.
        try write("topic from/include/#\n", to: confD + "/40-bridge.conf")
        try write("connection c\naddress 127.0.0.1\ninclude_dir \(confD)\nsys_interval 5\n", to: dir + "/gateway.conf")

        let config = try GatewayConfig.load(path: dir + "/gateway.conf")
        #expect(config.listeners.map(\.port) == [1883, 1884])
        #expect(config.maxInflightMessages == 2)
        #expect(config.sysInterval == 5)
        #expect(config.bridges.first?.topics == [BridgeTopic(pattern: "from/include/#")])
    }
}

@Test func anErrorInAnIncludedFileNamesThatFile() throws {
    try withTemporaryDirectory { dir in
        try write("\nmax_keepalive -5\n", to: dir + "/limits.conf")
        let error = try #require(parseError("include_dir \(dir)"))
        #expect(
            error.description
                == "\(dir)/limits.conf:2: key 'max_keepalive': expected a whole number from 0 to 65535, got '-5'"
        )
    }
}

@Test func includeDirIsOnlyAllowedInTheMainFile() throws {
    try withTemporaryDirectory { dir in
        try write("include_dir \(dir)\n", to: dir + "/loop.conf")
        let error = try #require(parseError("include_dir \(dir)"))
        #expect(error.file == dir + "/loop.conf" && error.line == 1 && error.key == "include_dir")
    }
}

@Test func loadingAMissingFileNamesIt() throws {
    #expect(
        throws: ConfigError(
            .unreadableFile,
            file: "/nonexistent/gateway.conf",
            line: nil,
            key: nil,
            "cannot read the file: no such file"
        )
    ) {
        try GatewayConfig.load(path: "/nonexistent/gateway.conf")
    }
}

@Test func referencedFilesThatExistAreAccepted() throws {
    try withTemporaryDirectory { dir in
        for name in ["passwd", "acl", "ca.crt", "server.crt", "server.key", "central-ca.crt", "gw.crt", "gw.key"] {
            try write("x\n", to: "\(dir)/\(name)")
        }
        let config = try parse(
            """
            password_file \(dir)/passwd
            acl_file \(dir)/acl
            listener 8883
            cafile \(dir)/ca.crt
            capath \(dir)
            certfile \(dir)/server.crt
            keyfile \(dir)/server.key
            require_certificate true
            use_identity_as_username true
            tls_version tlsv1.3
            ciphers ECDHE-RSA-AES256-GCM-SHA384
            max_connections 100
            connection central
            address central.example.com:8883
            topic sensors/# out 1 "" gw/
            bridge_cafile \(dir)/central-ca.crt
            bridge_capath \(dir)
            bridge_certfile \(dir)/gw.crt
            bridge_keyfile \(dir)/gw.key
            bridge_insecure true
            bridge_tls_version tlsv1.3
            """
        )
        #expect(config.passwordFile == "\(dir)/passwd")
        #expect(config.aclFile == "\(dir)/acl")
        var tls = TLSSettings(certFile: "\(dir)/server.crt", keyFile: "\(dir)/server.key")
        tls.caFile = "\(dir)/ca.crt"
        tls.caPath = dir
        tls.requireCertificate = true
        tls.useIdentityAsUsername = true
        tls.tlsVersion = "tlsv1.3"
        tls.ciphers = "ECDHE-RSA-AES256-GCM-SHA384"
        var listener = Listener(port: 8883)
        listener.tls = tls
        listener.maxConnections = 100
        #expect(config.listeners == [listener])
        #expect(config.maxConnections == -1)
        #expect(!config.effectiveAllowAnonymous)
        let bridge = try #require(config.bridges.first)
        #expect(bridge.usesTLS)
        #expect(bridge.bridgeCAFile == "\(dir)/central-ca.crt" && bridge.bridgeCAPath == dir)
        #expect(bridge.bridgeCertFile == "\(dir)/gw.crt" && bridge.bridgeKeyFile == "\(dir)/gw.key")
        #expect(bridge.bridgeInsecure && bridge.bridgeTLSVersion == "tlsv1.3")
    }
}

@Test func tlsListenerErrorsNeedTheWholeSection() throws {
    try withTemporaryDirectory { dir in
        try write("x\n", to: "\(dir)/server.crt")
        try write("x\n", to: "\(dir)/server.key")
        let missingKey = try #require(parseError("listener 8883\ncertfile \(dir)/server.crt"))
        #expect(missingKey.kind == .incompleteSection && missingKey.line == 1 && missingKey.key == "listener")
        #expect(missingKey.message.contains("no keyfile"))

        let noCA = try #require(
            parseError("listener 8883\ncertfile \(dir)/server.crt\nkeyfile \(dir)/server.key\nrequire_certificate true")
        )
        #expect(noCA.kind == .incompleteSection && noCA.message.contains("needs cafile or capath"))

        let pathIsDirectory = try #require(parseError("password_file \(dir)"))
        #expect(pathIsDirectory.kind == .missingFile)
    }
}

@Test func theExamplesDisabledLinesParseOnceEnabled() throws {
    try withTemporaryDirectory { dir in
        for name in ["server.crt", "server.key", "ca.crt", "central-ca.crt", "gateway1.crt", "gateway1.key"] {
            try write("x\n", to: "\(dir)/\(name)")
        }
        let example = try String(contentsOfFile: repositoryRoot + "/gateway.conf.example", encoding: .utf8)
        let enabled =
            example
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { line in line.hasPrefix("#") && !line.hasPrefix("# ") && line != "#" ? line.dropFirst() : line }
            .joined(separator: "\n")
            .replacingOccurrences(of: "/etc/sluice/tls", with: dir)
        let config = try parse(enabled)
        #expect(config.listeners.count == 3)
        #expect(config.listeners.map(\.protocolKind) == [.mqtt, .websockets, .mqtt])
        #expect(config.listeners.last?.tls?.certFile == "\(dir)/server.crt")
        #expect(config.bridges.first?.usesTLS == true)
    }
}

@Test func ignoredKeysAreListedWithAReason() {
    #expect(GatewayConfig.ignoredKeys["allow_duplicate_messages"] != nil)
    #expect(GatewayConfig.ignoredKeys["allow_anonymous"] == nil)
    #expect(GatewayConfig.ignoredKeys.values.allSatisfy { !$0.isEmpty })
}
