// swift-tools-version:6.0
// libFuzzer targets for Sluice, kept in their own package: a fuzz target has no `main` (libFuzzer
// supplies it), so it cannot link in the main package's ordinary `swift build`. Build and run them
// with scripts/fuzz.sh, which uses `swift build --sanitize fuzzer --product TARGET`.
import PackageDescription

let package = Package(
    name: "sluice-fuzz",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "FuzzMQTTDecoder", targets: ["FuzzMQTTDecoder"]),
        .executable(name: "FuzzConfig", targets: ["FuzzConfig"]),
    ],
    dependencies: [.package(name: "sluice", path: "..")],
    targets: [
        // Frames and decodes arbitrary bytes as one MQTT version, and checks decode/encode round trips.
        .executableTarget(name: "FuzzMQTTDecoder", dependencies: [.product(name: "MQTTCore", package: "sluice")]),
        // Parses arbitrary text as gateway.conf.
        .executableTarget(name: "FuzzConfig", dependencies: [.product(name: "SluiceConfig", package: "sluice")]),
    ]
)
