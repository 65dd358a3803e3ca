// swift-tools-version:6.2
import PackageDescription

// Every target of this package builds with warnings as errors (SE-0480). The one exception by group:
// NIOSSL's per-certificate verification callback (crlfile, RevocationList.swift) is deprecated but is the
// only hook that keeps BoringSSL's chain verification, so deprecations stay warnings.
let strictWarnings: [SwiftSetting] = [
    .treatAllWarnings(as: .error),
    .treatWarning("DeprecatedDeclaration", as: .warning),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .executable(name: "sluice-bench", targets: ["SluiceBench"]),
        // For the fuzz package in Fuzz/ (libFuzzer targets kept out of this package's build).
        .library(name: "MQTTCore", targets: ["MQTTCore"]),
        .library(name: "SluiceConfig", targets: ["SluiceConfig"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // Vendored 1.8.2 without its FoundationEssentials import (6.2 MB of the binary): Vendor/swift-argument-parser/SLUICE-PATCH.md.
        .package(path: "Vendor/swift-argument-parser"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
    ],
    targets: [
        // System libraries: a module map and a shim header, nothing else.
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        // libcrypto (OpenSSL 3) through dlopen on first use (a crlfile, a password file), not linked: OpenSSL's
        // headers (Debian's libssl-dev) for types and constants, a table of functions filled by dlsym.
        // The .deb Depends on libssl3 (packaging/build-deb.sh), which dpkg-shlibdeps cannot see.
        .target(name: "CLibcrypto"),

        // Wire format of MQTT 3.1 / 3.1.1 / 5.0. No I/O: imports NIOCore only.
        .target(name: "MQTTCore", dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        // Pure broker rules: sessions, QoS flows, subscriptions, retained messages, wills.
        .target(
            name: "SluiceBroker",
            // SluiceBridge for the bridges' `out` rules, routed as internal durable subscribers.
            dependencies: [
                "MQTTCore", "SluiceBridge", .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // Pure bridge rules: link state machine, in-flight window, topic rules, backoff.
        .target(name: "SluiceBridge", dependencies: ["MQTTCore", "SluicePOSIX"]),
        // Password files (mosquitto_passwd compatible, PBKDF2 via libcrypto) and ACL files; LibCrypto, the
        // dlopen'd libcrypto for this module and SluiceServer's crlfile.
        .target(name: "SluiceAuth", dependencies: ["CLibcrypto", "MQTTCore", "SluiceBroker", "SluiceBase64", "SluicePOSIX"]),
        // Semtech UDP packet-forwarder protocol (GWMP v2), per-gateway state and ChirpStack events. No I/O.
        .target(name: "GWMPCore", dependencies: ["SluiceJSON", "SluiceBase64", "SluicePOSIX"]),
        // Files, directories, the wall clock, ISO 8601 time stamps, host name and environment over Glibc, and
        // substring search: what the shipped binary used Foundation and _StringProcessing for.
        .target(name: "SluicePOSIX"),
        // Strict RFC 8259 JSON values, parsed and written without Foundation.
        .target(name: "SluiceJSON"),
        // Standard base64 for password files (SluiceAuth) and LoRaWAN payloads (GWMPCore).
        .target(name: "SluiceBase64"),
        // gateway.conf lexer and validation into Sendable structs.
        .target(name: "SluiceConfig", dependencies: ["MQTTCore", "SluicePOSIX"]),
        // LMDB: environment, transactions, group commit, bridge queues, broker persistence.
        // NIOCore for ByteBuffer only: a queued payload stays the broker's received buffer until it is encoded
        // into LMDB's page, and the bridge sends the same buffer (no copy to and from [UInt8]).
        .target(
            name: "SluiceStore",
            dependencies: ["CLMDB", "SluicePOSIX", .product(name: "NIOCore", package: "swift-nio")]
        ),
        // The only module with sockets: listeners, thin handlers, services.
        .target(
            name: "SluiceServer",
            dependencies: [
                "CLibcrypto", "GWMPCore", "MQTTCore", "SluiceAuth", "SluiceBroker", "SluiceBridge", "SluiceConfig", "SluiceStore",
                "SluiceJSON", "SluicePOSIX",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceServer", "SluiceConfig", "SluiceStore", "SluiceAuth", "MQTTCore", "SluiceBridge", "SluiceBroker",
                "SluicePOSIX",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Benchmark program (not part of the test suite): Sluice against Mosquitto in one run.
        .executableTarget(
            name: "SluiceBench",
            dependencies: [
                "MQTTCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(
            name: "MQTTCoreTests",
            dependencies: ["MQTTCore", .product(name: "NIOTestUtils", package: "swift-nio")]
        ),
        .testTarget(name: "SluiceBrokerTests", dependencies: ["SluiceBroker", "SluiceBridge", "MQTTCore"]),
        .testTarget(name: "SluiceBridgeTests", dependencies: ["SluiceBridge", "MQTTCore"]),
        .testTarget(name: "SluiceConfigTests", dependencies: ["SluiceConfig"]),
        .testTarget(name: "SluicePOSIXTests", dependencies: ["SluicePOSIX"]),
        .testTarget(name: "SluiceJSONTests", dependencies: ["SluiceJSON"]),
        .testTarget(name: "SluiceBase64Tests", dependencies: ["SluiceBase64"]),
        .testTarget(
            name: "SluiceAuthTests",
            dependencies: [
                "SluiceAuth", "SluiceServer", "SluiceConfig", "SluiceBase64",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "SluiceStoreTests",
            dependencies: ["SluiceStore", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(name: "GWMPCoreTests", dependencies: ["GWMPCore"], exclude: ["fixtures"]),
        .testTarget(
            name: "SluiceServerTests",
            dependencies: [
                "SluiceServer", "MQTTCore", "SluiceBroker", "SluiceConfig", "SluiceStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + strictWarnings
}
