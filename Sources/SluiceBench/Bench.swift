import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

@main
struct SluiceBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice-bench",
        abstract:
            "Runs the same MQTT load against Mosquitto and Sluice on this machine and prints both and their ratio."
    )

    @Option(help: "The sluice binary (default .build/release/sluice, else .build/debug/sluice with a warning).")
    var sluice: String?

    @Option(help: "Rounds per scenario; each round runs Mosquitto then Sluice.")
    var rounds: Int?

    @Flag(help: "One round, smaller counts, a subset of scenarios (whole run under two minutes).")
    var quick = false

    @Option(help: "Run only scenarios whose name starts with one of these (comma-separated), e.g. tput-fanin,latency.")
    var only: String?

    @Flag(help: "Also run the bridge scenarios (otherwise listed as not yet measured).")
    var bridge = false

    @Flag(help: "Print machine-readable JSON instead of the table.")
    var json = false

    @Option(help: "Event loop threads for the load generator.")
    var threads: Int = System.coreCount

    @Flag(help: "List scenarios and exit.")
    var list = false

    mutating func run() async throws {
        let fileLimit = raiseFileLimit()
        var scenarios = allScenarios(quick: quick, fileLimit: fileLimit, bridge: bridge)
        let filters = only?.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } ?? []
        let wantsBridgeStub =
            !bridge && (filters.isEmpty || filters.contains { "bridge".hasPrefix($0) || $0.hasPrefix("bridge") })
        if !filters.isEmpty {
            scenarios = scenarios.filter { s in filters.contains { s.name.hasPrefix($0) } }
        }
        if list {
            for s in allScenarios(quick: quick, fileLimit: fileLimit, bridge: true) {
                print("\(s.name)\t\(s.description)")
            }
            if !bridge { print("bridge\t(stub without --bridge: not yet measured)") }
            return
        }
        let sluicePath = try resolveSluice()
        let rounds = max(1, self.rounds ?? (quick ? 1 : 3))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        let ctx = BenchContext(group: group, sluicePath: sluicePath, quick: quick, fileLimit: fileLimit)

        let machine = Machine.current(fileLimit: fileLimit, sluicePath: sluicePath, threads: threads)
        if !json {
            print(machine.text)
            print("Config: \(FairConfig.summary)")
            print(
                "Rounds: \(rounds) (each round: Mosquitto, then Sluice; a fresh broker per run)\(quick ? ", --quick" : "")"
            )
            print("")
        }
        var reports: [ScenarioReport] = []
        for scenario in scenarios {
            var runs: [BrokerKind: [RunOutcome]] = [:]
            var errors: [String] = []
            for round in 1...rounds {
                for kind in [BrokerKind.mosquitto, .sluice] {
                    if !json { log("[\(scenario.name)] round \(round)/\(rounds) \(kind.rawValue)…") }
                    do {
                        let outcome = try await scenario.run(kind, ctx)
                        runs[kind, default: []].append(outcome)
                        if !json { log("  " + outcome.brief(scenario)) }
                    } catch {
                        errors.append("\(kind.rawValue) round \(round): \(error)")
                        if !json { log("  FAILED: \(error)") }
                    }
                }
            }
            reports.append(ScenarioReport(scenario: scenario, runs: runs, errors: errors))
        }
        try? await group.shutdownGracefully()
        if json {
            printJSON(machine: machine, reports: reports, rounds: rounds, bridgeStub: wantsBridgeStub)
        } else {
            printTable(reports: reports, bridgeStub: wantsBridgeStub)
        }
    }

    func resolveSluice() throws -> String {
        if let sluice {
            guard FileManager.default.isExecutableFile(atPath: sluice) else {
                throw ValidationError("--sluice \(sluice): not an executable file")
            }
            if sluice.contains("/debug/") { warnDebug(sluice) }
            return sluice
        }
        if FileManager.default.isExecutableFile(atPath: ".build/release/sluice") { return ".build/release/sluice" }
        if FileManager.default.isExecutableFile(atPath: ".build/debug/sluice") {
            warnDebug(".build/debug/sluice")
            return ".build/debug/sluice"
        }
        throw ValidationError(
            "no sluice binary: build it (swift build -c release --product sluice) or pass --sluice PATH"
        )
    }

    func warnDebug(_ path: String) {
        let bar = String(repeating: "!", count: 78)
        log(
            "\(bar)\n!! WARNING: using a DEBUG sluice (\(path)).\n!! Debug numbers are meaningless: build with `swift build -c release --product sluice`.\n\(bar)"
        )
    }
}

func log(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}

struct Machine: Codable {
    var date: String
    var nproc: String
    var kernel: String
    var cpu: String
    var mosquittoVersion: String
    var sluice: String
    var sluiceBuild: String
    var generatorThreads: Int
    var fileLimit: Int

    static func current(fileLimit: Int, sluicePath: String, threads: Int) -> Machine {
        let f = ISO8601DateFormatter()
        return Machine(
            date: f.string(from: Date()),
            nproc: shell("nproc"),
            kernel: shell("uname -sr"),
            cpu: shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            mosquittoVersion: shell("\(BrokerProcess.mosquittoPath()) -h 2>&1 | head -1"),
            sluice: sluicePath,
            sluiceBuild: sluicePath.contains("/debug/") ? "DEBUG (numbers meaningless)" : "release",
            generatorThreads: threads,
            fileLimit: fileLimit
        )
    }

    var text: String {
        """
        sluice-bench — \(date)
        Machine: \(nproc) CPUs (\(cpu)), \(kernel), RLIMIT_NOFILE \(fileLimit)
        Mosquitto: \(mosquittoVersion)
        Sluice: \(sluice) (\(sluiceBuild))
        Load generator: \(generatorThreads) event-loop threads, same machine
        """
    }
}

struct Stats: Codable {
    var median: Double
    var min: Double
    var max: Double
    var samples: [Double]

    init?(_ xs: [Double]) {
        let v = xs.filter { $0.isFinite }.sorted()
        guard !v.isEmpty else { return nil }
        samples = v
        min = v.first!
        max = v.last!
        median = v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
    }
}

struct ScenarioReport {
    var scenario: Scenario
    var runs: [BrokerKind: [RunOutcome]]
    var errors: [String]

    func stats(_ kind: BrokerKind, _ key: String) -> Stats? {
        Stats((runs[kind] ?? []).compactMap { $0.values[key] })
    }
    func loss(_ kind: BrokerKind) -> Int { (runs[kind] ?? []).map(\.loss).reduce(0, +) }
    func dups(_ kind: BrokerKind) -> Int { (runs[kind] ?? []).map(\.duplicates).reduce(0, +) }
    /// Generator CPU as a share of one core over the measured wall time, all runs.
    var generatorCPUShare: Double? {
        let all = runs.values.flatMap { $0 }
        let wall = all.map(\.wall).reduce(0, +)
        return wall > 0 ? all.map(\.generatorCPU).reduce(0, +) / wall : nil
    }
    func brokerCPUShare(_ kind: BrokerKind) -> Double? {
        let rs = (runs[kind] ?? []).filter { $0.brokerCPU != nil }
        let wall = rs.map(\.wall).reduce(0, +)
        return wall > 0 ? rs.compactMap(\.brokerCPU).reduce(0, +) / wall : nil
    }
}

extension RunOutcome {
    func brief(_ s: Scenario) -> String {
        var parts = s.metrics.compactMap { m in values[m.key].map { "\(m.key)=\(fmt($0))" } }
        parts.append(String(format: "wall %.2fs, gen CPU %.2fs", wall, generatorCPU))
        if let brokerCPU { parts.append(String(format: "broker CPU %.2fs", brokerCPU)) }
        if loss > 0 { parts.append("LOSS \(loss)") }
        if duplicates > 0 { parts.append("dups \(duplicates)") }
        if let note { parts.append(note) }
        return parts.joined(separator: ", ")
    }
}

func fmt(_ x: Double) -> String {
    if !x.isFinite { return "—" }
    let a = abs(x)
    if a >= 1000 { return String(format: "%.0f", x) }
    if a >= 100 { return String(format: "%.1f", x) }
    if a >= 10 { return String(format: "%.2f", x) }
    return String(format: "%.3f", x)
}

func pct(_ x: Double?) -> String { x.map { String(format: "%.0f%%", $0 * 100) } ?? "—" }

func printTable(reports: [ScenarioReport], bridgeStub: Bool) {
    var rows: [[String]] = [
        [
            "scenario", "mosquitto", "sluice", "sluice/mosq", "better", "mosq min–max", "sluice min–max",
            "gen CPU", "broker CPU m/s", "loss m/s",
        ]
    ]
    for r in reports {
        for m in r.scenario.metrics {
            let a = r.stats(.mosquitto, m.key)
            let b = r.stats(.sluice, m.key)
            var ratio = "—"
            if let a, let b, a.median != 0 { ratio = String(format: "%.2f×", b.median / a.median) }
            rows.append([
                m.label,
                // An info row only one broker has (Sluice's LMDB counters) is "n/a" for the other.
                a.map { fmt($0.median) } ?? (m.better == .info ? "n/a" : "failed"),
                b.map { fmt($0.median) } ?? (m.better == .info ? "n/a" : "failed"),
                ratio,
                m.better.rawValue,
                a.map { "\(fmt($0.min))–\(fmt($0.max))" } ?? "—",
                b.map { "\(fmt($0.min))–\(fmt($0.max))" } ?? "—",
                pct(r.generatorCPUShare),
                "\(pct(r.brokerCPUShare(.mosquitto)))/\(pct(r.brokerCPUShare(.sluice)))",
                "\(r.loss(.mosquitto))/\(r.loss(.sluice))",
            ])
        }
    }
    if bridgeStub {
        rows.append(["bridge", "not yet measured", "", "", "", "", "", "", "", ""])
    }
    let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
    for (i, row) in rows.enumerated() {
        let line = row.enumerated().map { c, cell in
            c == 0
                ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[c] - cell.count) + cell
        }.joined(separator: "  ")
        print(line)
        if i == 0 { print(String(repeating: "-", count: line.count)) }
    }
    print("")
    print(
        "Ratio is Sluice median / Mosquitto median; 'better' says which direction wins (rates: higher; latency and memory: lower;"
    )
    print("info: context for another row, e.g. a process's CPU as % of one core, or Sluice's LMDB commits).")
    print(
        "gen CPU: load generator's own CPU (getrusage of this process) as a share of one core over the measured time, all runs;"
    )
    print(
        "broker CPU: each broker's CPU (/proc/PID/stat) over its measured time. \(System.coreCount) cores are shared by both."
    )
    print("loss: messages expected but not received, summed over rounds.")
    for r in reports {
        for e in r.errors { print("ERROR \(r.scenario.name): \(e)") }
        for (kind, outs) in r.runs.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            for o in outs where o.note != nil || o.duplicates > 0 {
                print(
                    "note \(r.scenario.name) \(kind.rawValue): \(o.note ?? "") \(o.duplicates > 0 ? "duplicates \(o.duplicates)" : "")"
                )
            }
        }
    }
}

func printJSON(machine: Machine, reports: [ScenarioReport], rounds: Int, bridgeStub: Bool) {
    struct MetricJSON: Codable {
        var scenario: String
        var metric: String
        var unit: String
        var better: Better
        var mosquitto: Stats?
        var sluice: Stats?
        var ratio: Double?
        var generatorCPUShare: Double?
        var brokerCPUShare: [String: Double]
        var loss: [String: Int]
        var duplicates: [String: Int]
        var errors: [String]
    }
    struct Doc: Codable {
        var machine: Machine
        var config: String
        var rounds: Int
        var results: [MetricJSON]
        var notMeasured: [String]
    }
    var results: [MetricJSON] = []
    for r in reports {
        for m in r.scenario.metrics {
            let a = r.stats(.mosquitto, m.key)
            let b = r.stats(.sluice, m.key)
            var cpu: [String: Double] = [:]
            for k in BrokerKind.allCases { cpu[k.rawValue] = r.brokerCPUShare(k) }
            results.append(
                MetricJSON(
                    scenario: r.scenario.name,
                    metric: m.key,
                    unit: m.unit,
                    better: m.better,
                    mosquitto: a,
                    sluice: b,
                    ratio: (a != nil && b != nil && a!.median != 0) ? b!.median / a!.median : nil,
                    generatorCPUShare: r.generatorCPUShare,
                    brokerCPUShare: cpu,
                    loss: ["mosquitto": r.loss(.mosquitto), "sluice": r.loss(.sluice)],
                    duplicates: ["mosquitto": r.dups(.mosquitto), "sluice": r.dups(.sluice)],
                    errors: r.errors
                )
            )
        }
    }
    let doc = Doc(
        machine: machine,
        config: FairConfig.summary,
        rounds: rounds,
        results: results,
        notMeasured: bridgeStub ? ["bridge"] : []
    )
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    if let data = try? enc.encode(doc) { print(String(decoding: data, as: UTF8.self)) }
}
