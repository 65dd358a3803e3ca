// swift-tools-version:6.0
// swift-argument-parser 1.8.2 (https://github.com/apple/swift-argument-parser, tag 1.8.2,
// commit 436bde4), vendored with one file changed: see SLUICE-PATCH.md.

import PackageDescription

let package = Package(
  name: "swift-argument-parser",
  products: [
    .library(name: "ArgumentParser", targets: ["ArgumentParser"])
  ],
  targets: [
    .target(name: "ArgumentParser", dependencies: ["ArgumentParserToolInfo"]),
    .target(name: "ArgumentParserToolInfo"),
  ]
)
