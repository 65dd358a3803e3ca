import Foundation
import Testing

@testable import SluiceConfig

/// Parses `text` as "gateway.conf".
func parse(_ text: String) throws(ConfigError) -> GatewayConfig {
    try GatewayConfig.parse(text, fileName: "gateway.conf")
}

/// The error `text` raises, or nil.
func parseError(_ text: String) -> ConfigError? {
    do {
        _ = try parse(text)
        return nil
    } catch {
        return error
    }
}

/// A fresh empty temporary directory, removed when `body` ends.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-config-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try body(dir)
}

func write(_ text: String, to path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

/// The repository root (this file is Tests/SluiceConfigTests/Support.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// A bridge as the parser builds it from `connection NAME`, `address 127.0.0.1`, `topic a/# out`.
func minimalBridge(_ name: String = "central") -> BridgeConfig {
    var bridge = BridgeConfig(name: name)
    bridge.addresses = [HostPort(host: "127.0.0.1", port: 1883)]
    bridge.topics = [BridgeTopic(pattern: "a/#")]
    return bridge
}

let minimalBridgeText = "connection central\naddress 127.0.0.1\ntopic a/#\n"
