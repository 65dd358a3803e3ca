import Foundation
import Testing

@testable import SluiceStore

/// The durability contract under `kill -9`: a child process (this test binary, re-run with an environment
/// variable) appends and prints each acknowledged sequence number; the parent kills it with SIGKILL
/// mid-stream, reopens the file and finds every acknowledged message.
@Suite struct CrashTests {
    static let childVariable = "SLUICE_STORE_CRASH_CHILD"

    /// Does nothing unless started by `acknowledgedAppendsSurviveKill9` with the variable set.
    @Test func crashChild() throws {
        guard let path = ProcessInfo.processInfo.environment[CrashTests.childVariable] else { return }
        let store = try Store(path: path)
        let output = FileHandle.standardOutput
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            var i = 0
            while true {
                let done = DispatchSemaphore(value: 0)
                let ids = (0..<5).map { "\(worker)-\(i + $0)" }
                let messages = ids.map {
                    QueuedMessage(topic: "crash/\($0)", payload: Array($0.utf8), qos: 1, enqueuedAt: 1)
                }
                i += 5
                store.append(queue: "crash", messages: messages, limits: .unlimited) { result in
                    if case .success(let results) = result {
                        let lines = zip(results, ids).compactMap { result, id in result.seq.map { "ACK \($0) \(id)\n" }
                        }
                        lock.withLock { output.write(Data(lines.joined().utf8)) }
                    }
                    done.signal()
                }
                done.wait()
            }
        }
    }

    @Test func acknowledgedAppendsSurviveKill9() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = [
            "--testing-library", "swift-testing", "--filter", "SluiceStoreTests.CrashTests/crashChild",
        ]
        process.environment = ProcessInfo.processInfo.environment.merging([CrashTests.childVariable: dir.storePath]) {
            $1
        }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()

        // Collect acknowledgements until there are plenty, then SIGKILL the child mid-stream.
        var acked: [UInt64: String] = [:]
        var buffer = Data()
        let deadline = Date().addingTimeInterval(60)
        while acked.count < 3_000 && Date() < deadline {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                let fields = line.split(separator: " ")
                if fields.count == 3, fields[0] == "ACK", let seq = UInt64(fields[1]) {
                    acked[seq] = String(fields[2])
                }
            }
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(acked.count >= 3_000)

        let store = try Store(path: dir.storePath)
        defer { store.close() }
        let stored = try store.read(queue: "crash", after: nil, limit: .max)
        let byseq = Dictionary(uniqueKeysWithValues: stored.map { ($0.seq, $0.message) })
        let missing = acked.filter { seq, id in byseq[seq]?.topic != "crash/\(id)" }
        #expect(missing.isEmpty, "acknowledged but lost after kill -9: \(missing.count)")
        #expect(stored.count >= acked.count)
        #expect(try store.stats(queue: "crash").depth == UInt64(stored.count))
        // The file is writable again (LMDB's robust writer mutex recovered from the dead owner).
        #expect(try awaitAppend(store).seq != nil)
        print("kill -9: \(acked.count) acknowledged, \(stored.count) on disk after restart, 0 lost")
    }

    private func awaitAppend(_ store: Store) throws -> AppendResult {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        store.append(queue: "crash", messages: [message(1)], limits: .unlimited) { result in
            box.set(result)
            done.signal()
        }
        done.wait()
        return try box.get().first!
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<[AppendResult], StoreError>?
    func set(_ result: Result<[AppendResult], StoreError>) { lock.withLock { self.result = result } }
    func get() throws -> [AppendResult] { try lock.withLock { result! }.get() }
}
