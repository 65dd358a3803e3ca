import ArgumentParser
import Dispatch
import NIOCore
import SluiceConfig
import SluicePOSIX
import SluiceStore

#if canImport(Glibc)
    import Glibc
#endif

/// `sluice queue stats|peek|purge`: inspect the bridges' durable queues, also while the gateway runs
/// (LMDB lets a second process read and write the same store).
struct Queue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect, purge and steer the bridges' durable queues and dead letters.",
        subcommands: [Stats.self, Peek.self, Purge.self, Dead.self, Requeue.self, Drop.self, Pause.self, Resume.self]
    )

    struct StoreOptions: ParsableArguments {
        @Option(
            name: [.short, .customLong("config")],
            help: "Path to gateway.conf (the store lives under persistence_location)."
        )
        var config: String = "/etc/sluice/gateway.conf"

        /// Writable by default (purge, requeue, drop, pause…); `stats` and `peek` open read-only.
        func open(readOnly: Bool = false) throws -> (GatewayConfig, Store) {
            let gatewayConfig: GatewayConfig
            do {
                gatewayConfig = try GatewayConfig.load(path: config)
            } catch {
                throw failure("\(error)")
            }
            let path = PathText.appending("sluice.db", to: gatewayConfig.persistenceLocation)
            guard FileSystem.exists(path) else {
                throw failure("no store at \(path) (has the gateway run with this configuration?)")
            }
            do {
                // Read-only (MDB_RDONLY) for stats and peek: works beside a running gateway, writes nothing.
                return (
                    gatewayConfig, try Store(path: path, maxMapSize: gatewayConfig.storeMapSizeMax, readOnly: readOnly)
                )
            } catch {
                throw failure("cannot open \(path): \(error.message)")
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Depth, bytes, oldest age and drop counts per bridge."
        )
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name; all bridges when omitted.") var bridge: String?

        func run() throws {
            let (config, store) = try options.open(readOnly: true)
            defer { store.close() }
            if let bridge { try checkBridge(config.bridges.map(\.name), store, bridge) }
            let names =
                bridge.map { [$0] }
                ?? Array(Set(config.bridges.map(\.name) + ((try? store.bridgeNames()) ?? []))).sorted()
            let now = Store.wallClockMilliseconds()
            for name in names {
                // The bridge as a whole (its classes summed), then one line per class when it has several.
                let stats = try store.bridgeStats(bridge: name)
                print("\(name): " + line(stats, now: now) + Self.deadLetterSummary(store, name))
                let classes = try store.classStats(bridge: name)
                guard classes.count > 1 else { continue }
                for (priority, stats) in classes {
                    let queue = PriorityQueues.queueName(bridge: name, priority: priority)
                    let dead = (try? store.deadLetterCounts(queue: queue).current) ?? 0
                    print("  priority \(priority): " + line(stats, now: now) + " dead=\(dead)")
                }
            }
        }

        private func line(_ stats: QueueStats, now: UInt64) -> String {
            let age = stats.oldestEnqueuedAt.map { "\(Double(now.saturatingSubtract($0)) / 1000)s" } ?? "-"
            return "depth=\(stats.depth) bytes=\(stats.bytes) oldest_age=\(age) next_seq=\(stats.nextSeq)"
                + " dropped=\(describe(stats.dropped)) rejected=\(describe(stats.rejected))"
                + " quarantined=\(stats.quarantined)"
        }

        private func describe(_ counts: DropCounts) -> String {
            let parts = DropReason.allCases.compactMap { reason -> String? in
                let count = counts.counts[Int(reason.rawValue)]
                return count == 0 ? nil : "\(reason)=\(count)"
            }
            return parts.isEmpty ? "0" : parts.joined(separator: ",")
        }
    }

    struct Peek: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the first messages of a bridge's queue.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String
        @Option(name: .customShort("n"), help: "How many messages.") var count = 10
        @OptionGroup var classOption: PriorityOption

        /// In drain order: class by class, highest priority first.
        func run() throws {
            let (config, store) = try options.open(readOnly: true)
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            let classes = try classOption.queues(store, bridge)
            var left = max(1, count)
            for (priority, queue) in classes where left > 0 {
                for stored in try store.read(queue: queue, after: nil, limit: left) {
                    let message = stored.message
                    let payload = String(decoding: message.payload.readableBytesView.prefix(80), as: UTF8.self)
                    print(
                        "#\(stored.seq)\(classMarker(priority, of: classes)) qos=\(message.qos) retain=\(message.retain)"
                            + " \(message.topic) \(payload)"
                    )
                    left -= 1
                }
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every message in a bridge's queue.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String
        @Flag(help: "Confirm: the messages are gone for good.") var yes = false
        @OptionGroup var classOption: PriorityOption

        func run() throws {
            guard yes else { throw failure("purging deletes queued messages for good: add --yes to confirm") }
            let (config, store) = try options.open()
            defer { store.close() }
            try checkBridge(config.bridges.map(\.name), store, bridge)
            var purged = 0
            for (_, queue) in try classOption.queues(store, bridge) {
                let done = DispatchSemaphore(value: 0)
                nonisolated(unsafe) var outcome: Result<Int, StoreError> = .success(0)
                store.purge(queue: queue) { result in
                    outcome = result
                    done.signal()
                }
                done.wait()
                purged += try outcome.get()
            }
            try signalGateway(store, bridge)  // a running gateway drops what it holds of the queue in memory
            print("\(bridge): purged \(purged) message(s)")
        }
    }
}

extension UInt64 {
    fileprivate func saturatingSubtract(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }
}
