import Foundation
import Testing

@testable import SluiceStore

/// A temporary directory removed when the test ends (call `remove()` in a `defer`).
struct TempDir {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    var storePath: String { url.appendingPathComponent("store.lmdb").path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// A clock tests move by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: UInt64
    init(_ value: UInt64) { self.value = value }
    var now: UInt64 {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
    var function: @Sendable () -> UInt64 { { [self] in self.now } }
}

/// Counts completions and lets a synchronous test wait for all of them.
final class CompletionCounter<R: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)
    private let expected: Int
    private(set) var results: [R] = []
    private(set) var failures: [StoreError] = []

    init(expected: Int) { self.expected = expected }

    func record(_ result: Result<R, StoreError>) {
        let finished: Bool = lock.withLock {
            switch result {
            case .success(let value): results.append(value)
            case .failure(let error): failures.append(error)
            }
            return results.count + failures.count == expected
        }
        if finished { done.signal() }
    }

    func wait() { done.wait() }
}

func message(_ i: Int, payloadSize: Int = 8, enqueuedAt: UInt64 = 1_000) -> QueuedMessage {
    QueuedMessage(
        topic: "sensors/\(i)",
        payload: Array(repeating: UInt8(truncatingIfNeeded: i), count: payloadSize),
        qos: 1,
        retain: i % 2 == 0,
        properties: [0x26, 0, 1, 0x6B, 0, 1, 0x76],  // a user property, opaque to the store
        enqueuedAt: enqueuedAt
    )
}

/// Runs a command-line tool and returns its exit status and standard output.
func runTool(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
