import ArgumentParser
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif
import Dispatch
import SluiceBridge
import SluiceStore

// `sluice queue dead|requeue|drop|pause|resume`: the operator's tools to steer a drain. They write
// the store beside a running gateway (LMDB serialises writers across processes) and bump the
// bridge's control generation, which the gateway polls once a second: a pause, or messages put
// back by a requeue, take effect within about a second.

extension Queue.Stats {
    /// " dead=N dead_by_reason=0x87=1,max_attempts=2 paused": what `/metrics` shows as
    /// `sluice_bridge_dead_letters` and `sluice_bridge_dead_lettered_total`, read from the same records.
    static func deadLetterSummary(_ store: Store, _ name: String) -> String {
        guard let counts = try? store.deadLetterCounts(queue: name) else { return "" }
        let reasons = counts.byReason.sorted { $0.key < $1.key }.map { "\(DeadLetterCodes.label($0.key))=\($0.value)" }
        let paused = (try? store.bridgeControl(queue: name).paused) == true ? " paused" : ""
        return " dead=\(counts.current) dead_by_reason=\(reasons.isEmpty ? "0" : reasons.joined(separator: ","))\(paused)"
    }
}

/// Runs a store write from a synchronous command and waits for its commit.
private func waitFor<R: Sendable>(_ submit: (@escaping @Sendable (Result<R, StoreError>) -> Void) -> Void) throws -> R {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var outcome: Result<R, StoreError>?
    submit { result in
        outcome = result
        done.signal()
    }
    done.wait()
    switch outcome! {
    case .success(let value): return value
    case .failure(let error): throw failure("\(error)")
    }
}

/// Tells a running gateway to look again (pause flag, queue); `paused` nil leaves the flag as is.
private func signalGateway(_ store: Store, _ bridge: String, paused: Bool? = nil) throws {
    try waitFor { store.updateBridgeControl(queue: bridge, paused: paused, completion: $0) }
}

private func checkBridge(_ names: [String], _ store: Store, _ bridge: String) throws {
    let known = Set(names + ((try? store.queueNames()) ?? []))
    guard known.contains(bridge) else {
        throw failure("no bridge '\(bridge)' in the configuration or the store (known: \(known.sorted().joined(separator: ", ")))")
    }
}

extension Queue {
    struct Dead: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a bridge's dead letters (messages the remote never took).")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String
        @Option(name: .customShort("n"), help: "At most this many.") var count = 100

        func run() throws {
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            let letters = try store.deadLetters(queue: bridge, limit: max(1, count))
            for letter in letters {
                let message = letter.message
                let payload = String(decoding: message.payload.prefix(60), as: UTF8.self)
                let when = Date(timeIntervalSince1970: Double(letter.deadAt) / 1000).formatted(.iso8601)
                print(
                    "#\(letter.seq) reason=\(DeadLetterCodes.label(letter.code)) at=\(when) qos=\(message.qos)"
                        + " size=\(message.payload.count) \(message.topic) \(payload)"
                )
            }
            let counts = try store.deadLetterCounts(queue: bridge)
            print("\(bridge): \(counts.current) dead letter(s)\(letters.count < counts.current ? ", \(letters.count) shown" : "")")
        }
    }

    struct Requeue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead letters back at the tail of the bridge's queue (new seqs)."
        )
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String
        @Option(help: "The dead letter's seq (as 'sluice queue dead' lists it).") var seq: [UInt64] = []
        @Flag(help: "Every dead letter of the bridge.") var all = false

        func validate() throws {
            guard all != !seq.isEmpty else { throw ValidationError("give --seq N (repeatable) or --all") }
        }

        func run() throws {
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            let wanted: [UInt64]? = all ? nil : seq
            let newSeqs = try waitFor { store.requeueDeadLetters(queue: bridge, seqs: wanted, completion: $0) }
            try signalGateway(store, bridge)
            if !all && newSeqs.count < seq.count {
                print("\(bridge): requeued \(newSeqs.count) of \(seq.count): the others are not dead letters")
                throw ExitCode(1)
            }
            print("\(bridge): requeued \(newSeqs.count) message(s)\(newSeqs.isEmpty ? "" : " as seq \(newSeqs.map(String.init).joined(separator: ","))")")
        }
    }

    struct Drop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take one message out of the queue (it becomes a dead letter); on a dead letter, delete it for good."
        )
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String
        @Option(help: "The message's seq (as 'sluice queue peek' or 'dead' lists it).") var seq: UInt64

        func run() throws {
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            let outcome = try waitFor { store.dropMessage(queue: bridge, seq: seq, completion: $0) }
            switch outcome {
            case .movedToDeadLetters:
                try signalGateway(store, bridge)
                print("\(bridge): message \(seq) moved to the dead letters (requeue with 'sluice queue requeue \(bridge) --seq \(seq)')")
            case .deletedDeadLetter:
                print("\(bridge): dead letter \(seq) deleted for good")
            case .notFound:
                throw failure("\(bridge): no message \(seq) in the queue or the dead letters")
            }
        }
    }

    struct Pause: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop sending from a bridge's queue (it keeps queueing); persisted across restarts."
        )
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String

        func run() throws {
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            try signalGateway(store, bridge, paused: true)
            print("\(bridge): paused")
        }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume sending from a paused bridge's queue.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String

        func run() throws {
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            try signalGateway(store, bridge, paused: false)
            print("\(bridge): resumed")
        }
    }
}
