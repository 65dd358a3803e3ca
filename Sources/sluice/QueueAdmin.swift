import ArgumentParser
import Dispatch
import NIOCore
import SluiceBridge
import SluicePOSIX
import SluiceStore

#if canImport(Glibc)
    import Glibc
#endif

// `sluice queue dead|requeue|drop|pause|resume`: the operator's tools to steer a drain. They write
// the store beside a running gateway (LMDB serialises writers across processes) and bump the
// bridge's control generation, which the gateway polls once a second: a pause, or messages put
// back by a requeue, take effect within about a second.

extension Queue.Stats {
    /// " dead=N dead_by_reason=0x87=1,max_attempts=2 paused": what `/metrics` shows as
    /// `sluice_bridge_dead_letters` and `sluice_bridge_dead_lettered_total`, read from the same records.
    static func deadLetterSummary(_ store: Store, _ name: String) -> String {
        guard let counts = try? store.bridgeDeadLetterCounts(bridge: name) else { return "" }
        let reasons = counts.byReason.sorted { $0.key < $1.key }.map { "\(DeadLetterCodes.label($0.key))=\($0.value)" }
        let paused = (try? store.bridgeControl(queue: name).paused) == true ? " paused" : ""
        return
            " dead=\(counts.current) dead_by_reason=\(reasons.isEmpty ? "0" : reasons.joined(separator: ","))\(paused)"
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
func signalGateway(_ store: Store, _ bridge: String, paused: Bool? = nil) throws {
    try waitFor { store.updateBridgeControl(queue: bridge, paused: paused, completion: $0) }
}

/// Exit 1 naming the bridges that exist when `bridge` is none of them (a typo must not read as an empty queue).
func checkBridge(_ names: [String], _ store: Store, _ bridge: String) throws {
    let known = Set(names + ((try? store.bridgeNames()) ?? []))
    guard known.contains(bridge) else {
        let list = known.isEmpty ? "there are none" : "bridges: \(known.sorted().joined(separator: ", "))"
        throw failure("no bridge '\(bridge)' in the configuration or the store (\(list))")
    }
}

extension Queue {
    struct Dead: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a bridge's dead letters (messages the remote never took)."
        )
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String
        @Option(name: .customShort("n"), help: "At most this many.") var count = 100
        @OptionGroup var classOption: PriorityOption

        func run() throws {
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            let classes = try classOption.queues(store, bridge)
            var shown = 0
            var total: UInt64 = 0
            for (priority, queue) in classes {
                let letters = try store.deadLetters(queue: queue, limit: max(1, count - shown))
                for letter in letters where shown < count {
                    let message = letter.message
                    let payload = String(decoding: message.payload.readableBytesView.prefix(60), as: UTF8.self)
                    let when = WallInstant(timeIntervalSince1970: Double(letter.deadAt) / 1000).iso8601
                    print(
                        "#\(letter.seq)\(classMarker(priority, of: classes)) reason=\(DeadLetterCodes.label(letter.code))"
                            + " at=\(when) qos=\(message.qos) size=\(message.payload.readableBytes) \(message.topic) \(payload)"
                    )
                    shown += 1
                }
                total += try store.deadLetterCounts(queue: queue).current
            }
            print("\(bridge): \(total) dead letter(s)\(UInt64(shown) < total ? ", \(shown) shown" : "")")
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
        @OptionGroup var classOption: PriorityOption

        func validate() throws {
            guard all != !seq.isEmpty else { throw failure("give --seq N (repeatable) or --all") }
        }

        func run() throws {
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            // Back into the queue of their own class: --all takes every class, --seq one (--priority).
            let queues = all ? try classOption.queues(store, bridge).map(\.queue) : [classOption.queue(bridge)]
            var newSeqs: [UInt64] = []
            for queue in queues {
                newSeqs += try waitFor { store.requeueDeadLetters(queue: queue, seqs: all ? nil : seq, completion: $0) }
            }
            try signalGateway(store, bridge)
            if !all && newSeqs.count < seq.count {
                print("\(bridge): requeued \(newSeqs.count) of \(seq.count): the others are not dead letters")
                throw ExitCode(1)
            }
            print(
                "\(bridge): requeued \(newSeqs.count) message(s)\(newSeqs.isEmpty ? "" : " as seq \(newSeqs.map(String.init).joined(separator: ","))")"
            )
        }
    }

    struct Drop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Take one message out of the queue (it becomes a dead letter); on a dead letter, delete it for good."
        )
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String
        @Option(help: "The message's seq (as 'sluice queue peek' or 'dead' lists it).") var seq: UInt64
        @OptionGroup var classOption: PriorityOption

        func run() throws {
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            let outcome = try waitFor { store.dropMessage(queue: classOption.queue(bridge), seq: seq, completion: $0) }
            switch outcome {
            case .movedToDeadLetters:
                try signalGateway(store, bridge)
                let priority = classOption.priority.map { " --priority \($0)" } ?? ""
                print(
                    "\(bridge): message \(seq) moved to the dead letters (requeue with 'sluice queue requeue \(bridge) --seq \(seq)\(priority)')"
                )
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
