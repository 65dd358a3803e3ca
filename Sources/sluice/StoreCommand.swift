import ArgumentParser
import SluiceConfig
import SluicePOSIX
import SluiceStore

#if canImport(Glibc)
    import Glibc
#endif

/// `sluice store check|salvage|quarantine`: verify a store, copy what is readable out of a damaged one,
/// list and export the records moved aside. All read-only on the store they inspect, so they work
/// beside a running gateway.
struct StoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Check, salvage or inspect the quarantine of the gateway's store.",
        subcommands: [CheckStore.self, Salvage.self, QuarantineList.self, Walk.self]
    )

    struct Location: ParsableArguments {
        @Option(
            name: [.short, .customLong("config")],
            help: "Path to gateway.conf (the store lives under persistence_location)."
        )
        var config: String = "/etc/sluice/gateway.conf"

        @Option(name: .customLong("file"), help: "The store file itself (sluice.db), instead of -c.")
        var file: String?

        func storePath() throws -> (path: String, mapSize: Int) {
            if let file { return (file, 1 << 30) }
            let gatewayConfig: GatewayConfig
            do {
                gatewayConfig = try GatewayConfig.load(path: config)
            } catch {
                throw failure("\(error)", code: 2)
            }
            return (StoreFiles.path(gatewayConfig), gatewayConfig.storeMapSizeMax)
        }

        /// Opens the store read-only; exit status 2 when it cannot be opened.
        func openReadOnly() throws -> Store {
            let (path, mapSize) = try storePath()
            guard FileSystem.exists(path) else { throw failure("no store at \(path)", code: 2) }
            do {
                return try Store(path: path, maxMapSize: mapSize, readOnly: true)
            } catch {
                throw failure("cannot open \(path): \(error.message)", code: 2)
            }
        }
    }

    struct CheckStore: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Read every record of the store; exit 0 when clean, 1 on damage, 2 when it cannot be opened."
        )
        @OptionGroup var location: Location

        func run() throws {
            let (path, _) = try location.storePath()
            // The walk runs in a child process: a page broken in a way LMDB does not check could crash the
            // reader, and a crash must read as "damage", not kill this command.
            let outcome = try StoreWalkChild.run(path: path)
            OutputFile.standardOutput.write(outcome.output)
            OutputFile.standardError.write(outcome.errors)
            switch outcome.status {
            case .exited(StoreWalkChild.brokenPages):
                throw ExitCode(1)
            case .exited(let code):
                if code != 0 { throw ExitCode(code) }
            case .signalled(let signal):
                print(
                    "\(path): DAMAGED: reading the store crashed the checker (signal \(signal)): its pages are broken"
                )
                print("  restore it from a backup, or try `sluice store salvage --to NEWDIR`")
                throw ExitCode(1)
            }
        }
    }

    /// The walk itself (run by `check` and by `sluice run` in a child process).
    struct Walk: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "walk",
            abstract: "Read every record in this process (what `check` runs in a child).",
            shouldDisplay: false
        )
        @OptionGroup var location: Location
        @Flag(
            help: "Check the pages only (what `sluice run` does at start-up; damaged records are quarantined as read)."
        )
        var pagesOnly = false

        func run() throws {
            // First the pages themselves, with plain reads: LMDB would crash on a broken node offset.
            let (path, _) = try location.storePath()
            let pages: PageWalk.Result
            do {
                pages = try PageWalk.stableWalk(path: path)
            } catch {
                throw failure(error.message, code: 2)
            }
            if !pages.problems.isEmpty && !pages.stable {
                // The gateway committed during every attempt: these may be pages it was rewriting.
                print("\(path): note: the store changed during every page check; page problems not confirmed")
            } else if !pages.problems.isEmpty {
                print(
                    "\(path): DAMAGED: broken pages (\(pages.problems.count) problem(s) in \(pages.pages) pages read)"
                )
                for problem in pages.problems { print("    \(problem)") }
                print("  LMDB cannot read this store safely: restore it from a backup, or copy what is readable with")
                print("  `sluice store salvage --to NEWDIR` and point persistence_location there")
                throw ExitCode(StoreWalkChild.brokenPages)
            }
            if pagesOnly {
                print("\(path): pages OK (\(pages.pages) pages read)")
                return
            }
            let store = try location.openReadOnly()
            let report = store.verify()
            print("\(store.path): \(report.isClean ? "OK" : "DAMAGED")")
            for table in report.tables {
                print(
                    "  \(table.name): \(table.records) record(s)\(table.damaged > 0 ? ", \(table.damaged) damaged" : "")"
                )
                for problem in table.problems { print("    \(problem)") }
            }
            if report.quarantined > 0 {
                print("  quarantine: \(report.quarantined) record(s) held (`sluice store quarantine` lists them)")
            }
            if !report.isClean { throw ExitCode(1) }
        }
    }

    struct Salvage: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy every readable record into a new store in NEWDIR and report what was lost."
        )
        @OptionGroup var location: Location
        @Option(name: .customLong("to"), help: "An empty or new directory for the new sluice.db.") var to: String

        func run() throws {
            let (sourcePath, _) = try location.storePath()
            guard FileSystem.exists(sourcePath) else {
                throw failure("no store at \(sourcePath)", code: 2)
            }
            let target = PathText.appending("sluice.db", to: to)
            if let size = PathText.fileSize(target), size > 0 {
                throw failure("\(target) exists: salvage writes into a new store only", code: 2)
            }
            do {
                try FileSystem.createDirectory(to)
            } catch {
                throw failure("cannot create \(to): \(error)", code: 2)
            }
            let report: StoreReport
            do {
                report = try Store.salvage(from: sourcePath, to: target)
            } catch {
                throw failure("salvage into \(target) failed: \(error.message)", code: 2)
            }
            print("salvaged \(sourcePath) into \(target)")
            for table in report.tables {
                let lost = table.damaged > 0 ? ", \(table.damaged) damaged (kept in the quarantine)" : ""
                print("  \(table.name): \(table.records) copied\(lost)")
                for problem in table.problems { print("    \(problem)") }
            }
            if report.quarantined > 0 { print("  quarantine: \(report.quarantined) record(s) copied") }
            print("point persistence_location at \(to) to use it")
            if !report.isClean { throw ExitCode(1) }
        }
    }

    struct QuarantineList: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "quarantine",
            abstract: "List the damaged records moved aside; --export writes each one to a file."
        )
        @OptionGroup var location: Location
        @Argument(help: "Bridge (queue) name; all when omitted.") var bridge: String?
        @Option(name: .customLong("export"), help: "Directory to write the raw records to (QUEUE-SEQ.bin).")
        var export: String?

        func run() throws {
            let store = try location.openReadOnly()
            let records: [QuarantinedRecord]
            do {
                records = try store.quarantined(queue: bridge)
            } catch {
                throw failure("cannot read the quarantine: \(error.message)", code: 2)
            }
            if let export {
                do {
                    try FileSystem.createDirectory(export)
                } catch {
                    throw failure("cannot create \(export): \(error)")
                }
            }
            for record in records {
                let when = WallInstant(timeIntervalSince1970: Double(record.quarantinedAt) / 1000)
                print("\(record.queue) #\(record.seq) \(record.bytes.count) bytes, at \(when): \(record.reason)")
                if let export {
                    let safeName = record.queue.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }
                    let file = PathText.appending("\(String(safeName))-\(record.seq).bin", to: export)
                    do {
                        try FileSystem.writeFile(file, record.bytes)
                    } catch {
                        throw failure("cannot write \(file)")
                    }
                }
            }
            print("\(records.count) record(s) in the quarantine")
        }
    }
}

enum StoreFiles {
    /// `sluice.db` under `persistence_location`.
    static func path(_ config: GatewayConfig) -> String {
        PathText.appending("sluice.db", to: config.persistenceLocation)
    }
}

/// Runs `sluice store walk --file PATH` in a child process and collects its output and how it ended.
enum StoreWalkChild {
    enum Status {
        case exited(Int32)
        case signalled(Int32)
    }

    /// The walk's exit status for pages LMDB cannot read safely (records damaged only: 1).
    static let brokenPages: Int32 = 3

    static func run(path: String, pagesOnly: Bool = false) throws -> (status: Status, output: String, errors: String) {
        let executable =
            FileSystem.linkDestination("/proc/self/exe") ?? CommandLine.arguments[0]
        var environment = SystemInfo.environment()
        environment["SWIFT_BACKTRACE"] = "enable=no"  // a crash here is an expected verdict, not a bug report
        let child: (termination: ChildProcess.Termination, output: [UInt8], errors: [UInt8])
        do {
            child = try ChildProcess.run(
                executable: executable,
                arguments: ["store", "walk", "--file", path] + (pagesOnly ? ["--pages-only"] : []),
                environment: environment
            )
        } catch {
            throw failure("cannot start the store checker \(executable): \(error)", code: 2)
        }
        let status: Status =
            switch child.termination {
            case .exited(let code): .exited(code)
            case .signalled(let signal): .signalled(signal)
            }
        return (status, String(decoding: child.output, as: UTF8.self), String(decoding: child.errors, as: UTF8.self))
    }
}
