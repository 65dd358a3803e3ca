//===----------------------------------------------------------------------===//
//
// This source file is part of the Swift Argument Parser open source project
//
// Copyright (c) 2025 Apple Inc. and the Swift project authors
// Licensed under Apache License v2.0 with Runtime Library Exception
//
// See https://swift.org/LICENSE.txt for license information
//
//===----------------------------------------------------------------------===//

// Sluice's one change to swift-argument-parser 1.8.2 (see ../../../../SLUICE-PATCH.md): this
// file no longer imports FoundationEssentials, which alone put 6.2 MB into the `sluice` binary.
// Errors are described by `String(describing:)` (no `LocalizedError`; Sluice's errors are
// `CustomStringConvertible`), and `--experimental-dump-help` prints nothing, as upstream's
// proposed trait does when Foundation is off (apple/swift-argument-parser#932).

extension Error {
  func describe() -> String {
    String(describing: self)
  }
}

enum JSONEncoder {
  static func encode<T: Encodable>(_ value: T) -> String {
    ""
  }
}
