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
import SluiceConfig
import SluiceStore

/// `sluice queue stats|peek|purge`: inspect the bridges' durable queues, also while the gateway runs
/// (LMDB lets a second process read and write the same store).
struct Queue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect, purge and steer the bridges' durable queues and dead letters.",
        subcommands: [Stats.self, Peek.self, Purge.self, Dead.self, Requeue.self, Drop.self, Pause.self, Resume.self]
    )

    struct StoreOptions: ParsableArguments {
        @Option(name: [.short, .customLong("config")], help: "Path to gateway.conf (the store lives under persistence_location).")
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
            guard FileManager.default.fileExists(atPath: path) else {
                throw failure("no store at \(path) (has the gateway run with this configuration?)")
            }
            do {
                // Read-only (MDB_RDONLY) for stats and peek: works beside a running gateway, writes nothing.
                return (gatewayConfig, try Store(path: path, maxMapSize: gatewayConfig.storeMapSizeMax, readOnly: readOnly))
            } catch {
                throw failure("cannot open \(path): \(error.message)")
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Depth, bytes, oldest age and drop counts per bridge.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name; all bridges when omitted.") var bridge: String?

        func run() throws {
            let (config, store) = try options.open(readOnly: true)
            defer { store.close() }
            let names = bridge.map { [$0] } ?? Array(Set(config.bridges.map(\.name) + ((try? store.queueNames()) ?? []))).sorted()
            let now = Store.wallClockMilliseconds()
            for name in names {
                let stats = try store.stats(queue: name)
                let age = stats.oldestEnqueuedAt.map { "\(Double(now.saturatingSubtract($0)) / 1000)s" } ?? "-"
                print(
                    "\(name): depth=\(stats.depth) bytes=\(stats.bytes) oldest_age=\(age) next_seq=\(stats.nextSeq)"
                        + " dropped=\(describe(stats.dropped)) rejected=\(describe(stats.rejected))"
                        + " quarantined=\(stats.quarantined)"
                        + Self.deadLetterSummary(store, name)
                )
            }
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

        func run() throws {
            let (_, store) = try options.open(readOnly: true)
            defer { store.close() }
            for stored in try store.read(queue: bridge, after: nil, limit: max(1, count)) {
                let message = stored.message
                let payload = String(decoding: message.payload.prefix(80), as: UTF8.self)
                print("#\(stored.seq) qos=\(message.qos) retain=\(message.retain) \(message.topic) \(payload)")
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every message in a bridge's queue.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Bridge (connection) name.") var bridge: String
        @Flag(help: "Confirm: the messages are gone for good.") var yes = false

        func run() throws {
            guard yes else { throw failure("purging deletes queued messages for good: add --yes to confirm") }
            let (_, store) = try options.open()
            defer { store.close() }
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var outcome: Result<Int, StoreError> = .success(0)
            store.purge(queue: bridge) { result in
                outcome = result
                done.signal()
            }
            done.wait()
            print("\(bridge): purged \(try outcome.get()) message(s)")
        }
    }
}

extension UInt64 {
    fileprivate func saturatingSubtract(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }
}
