import ArgumentParser
import Glibc
import SluiceConfig
import SluicePOSIX
import SluiceServer
import SluiceStore

/// `sluice status`: one screen per gateway. Asks the running gateway (`/status.json` on its
/// `metrics_listener`); when it does not answer, reads the store read-only and says so.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Link state, backlog, drain rate and time to drain of every bridge, on one screen.",
        discussion: """
            Asks the running gateway through its metrics_listener; when it does not answer, shows the \
            store's queues read-only (no link state, rates or clients) and exits 3. Exits 1 on errors.
            """
    )

    @OptionGroup var options: Queue.StoreOptions

    @Flag(help: "Print the snapshot as JSON (one document per line with --watch).")
    var json = false

    @Flag(help: "Refresh until Ctrl-C (or --count refreshes).")
    var watch = false

    @Option(help: "Seconds between refreshes with --watch.")
    var interval: Double = 2

    @Option(help: "With --watch: stop after this many refreshes.")
    var count: Int?

    /// Exit code when the snapshot comes from the store because the gateway did not answer.
    static let gatewayDownExitCode: Int32 = 3

    func validate() throws {
        guard interval >= 0.1, interval <= 3600 else {
            throw ValidationError("--interval must be between 0.1 and 3600 seconds")
        }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if count != nil, !watch { throw ValidationError("--count goes with --watch") }
    }

    func run() async throws {
        let config: GatewayConfig
        do {
            config = try GatewayConfig.load(path: options.config)
        } catch {
            throw failure("\(error)")
        }
        var refreshes = 0
        var source = GatewayStatusSnapshot.Source.gateway
        while true {
            let snapshot = try await take(config)
            source = snapshot.source
            show(snapshot, first: refreshes == 0)
            refreshes += 1
            guard watch, refreshes < (count ?? .max) else { break }
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
        if source == .store { throw ExitCode(Self.gatewayDownExitCode) }
    }

    /// The gateway's snapshot, or the store's when the gateway does not answer.
    private func take(_ config: GatewayConfig) async throws -> GatewayStatusSnapshot {
        let unreachable: String
        if let address = config.metricsListener {
            let target = Self.dialable(address)
            do {
                return try await StatusClient.fetch(target)
            } catch {
                unreachable = "\(target): \(error)"
            }
        } else {
            unreachable = "no metrics_listener in \(options.config)"
        }
        let path = PathText.appending("sluice.db", to: config.persistenceLocation)
        guard FileSystem.exists(path) else {
            throw failure("gateway not answering (\(unreachable)) and no store at \(path)")
        }
        let (_, store) = try options.open(readOnly: true)
        defer { store.close() }
        do {
            return try GatewayStatusSnapshot.fromStore(store, config: config, unreachable: unreachable)
        } catch {
            throw failure("gateway not answering (\(unreachable)) and reading \(path) failed: \(error.message)")
        }
    }

    private func show(_ snapshot: GatewayStatusSnapshot, first: Bool) {
        if json {
            var data = (try? snapshot.jsonData(pretty: !watch)) ?? Array("{}".utf8)
            data.append(UInt8(ascii: "\n"))
            OutputFile.standardOutput.write(String(decoding: data, as: UTF8.self))
            return
        }
        // A terminal gets the screen redrawn in place; a pipe gets one block per refresh.
        if watch, isatty(STDOUT_FILENO) != 0 {
            print("\u{1B}[H\u{1B}[2J", terminator: "")
        } else if !first {
            print("")
        }
        print(snapshot.text)
        fflush(nil)  // each refresh shows at once, also through a pipe
    }

    /// A listener bound to every address is asked on loopback.
    static func dialable(_ address: HostPort) -> HostPort {
        switch address.host {
        case "0.0.0.0", "": HostPort(host: "127.0.0.1", port: address.port)
        case "::": HostPort(host: "::1", port: address.port)
        default: address
        }
    }
}
