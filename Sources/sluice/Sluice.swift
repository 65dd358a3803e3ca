import ArgumentParser
import SluiceServer

#if canImport(Glibc)
    import Glibc
#endif

struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "MQTT edge gateway: a local broker plus durable store-and-forward bridges.",
        version: SluiceVersion.current,
        subcommands: [
            Run.self, Check.self, Status.self, Pub.self, Sub.self, Queue.self, StoreCommand.self,
            ImportMosquittoDB.self, Passwd.self, Version.self,
        ],
        defaultSubcommand: nil
    )
}

enum SluiceVersion {
    static let current = GatewayService.version
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() { print("sluice \(SluiceVersion.current)") }
}

/// Prints `message` to stderr as `sluice: message` and returns the exit code to throw, so that
/// configuration errors read as one clear line rather than a usage screen.
func failure(_ message: String, code: Int32 = 1) -> ExitCode {
    OutputFile.standardError.write("sluice: \(message)\n")
    return ExitCode(code)
}
