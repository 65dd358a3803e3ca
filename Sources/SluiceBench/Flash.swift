import Foundation
import MQTTCore
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

// Note on the flash scenarios (issue 15): a gateway keeps its store on an SD card or eMMC, which wears out by
// the bytes written to it and slows the whole box on every device flush. These scenarios run the steady rates
// gateways see (a few to a few hundred readings a second, 64-byte QoS 1 payloads, bridged by `topic bench/# out
// 1`) and print, per message:
//
// - bytes the kernel wrote to storage for the edge process (`write_bytes` in /proc/PID/io: data pages, LMDB's
//   meta page, logs; what the card sees before its own write amplification);
// - bytes handed to write syscalls on the store file, and device flushes (fdatasync/fsync calls, plus writes
//   through a descriptor opened O_DSYNC/O_SYNC, which LMDB uses for its meta page), counted by strace in a
//   second, shorter pass so that strace's overhead stays out of the latency figures;
// - LMDB commits (Sluice's /metrics);
// - the publisher's PUBACK latency, p50 and p99;
//
// beside the floor a durable-before-acknowledged store cannot go below: one 4 KiB page and one flush per commit.
// Mosquitto runs the same load with its in-memory bridge queue (0 bytes written, everything lost on a crash):
// shown for context, it is not the comparison.

struct FlashCase {
    var name: String
    var sensors: Int
    var rate: Double  // messages per second, all sensors together
    var centralUp: Bool
}

let flashCases: [FlashCase] = [
    FlashCase(name: "flash-1x10-up", sensors: 1, rate: 10, centralUp: true),
    FlashCase(name: "flash-20x10-up", sensors: 20, rate: 10, centralUp: true),
    FlashCase(name: "flash-20x50-up", sensors: 20, rate: 50, centralUp: true),
    FlashCase(name: "flash-20x200-up", sensors: 20, rate: 200, centralUp: true),
    FlashCase(name: "flash-20x100-down", sensors: 20, rate: 100, centralUp: false),
]

func flashScenarios(quick: Bool) -> [Scenario] {
    flashCases.map { flashScenario($0, quick: quick) }
}

/// Bytes the kernel wrote to storage on behalf of `pid` (`write_bytes` in /proc/PID/io).
func processWriteBytes(_ pid: Int32) -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("write_bytes:") {
        return Double(line.dropFirst("write_bytes:".count).trimmingCharacters(in: .whitespaces))
    }
    return nil
}

/// Bytes written to the block device holding `path` so far (sectors written × 512, from
/// /sys/dev/block/MAJOR:MINOR/stat): what the medium gets, journal and metadata included. Only meaningful when
/// nothing else writes to that filesystem (SLUICE_BENCH_FLASH_DIR on a filesystem of its own).
func deviceWriteBytes(path: String) -> Double? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    let dev = UInt64(info.st_dev)
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
    let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
    guard let text = try? String(contentsOfFile: "/sys/dev/block/\(major):\(minor)/stat", encoding: .utf8) else {
        return nil
    }
    let fields = text.split(separator: " ", omittingEmptySubsequences: true)
    guard fields.count > 6, let sectors = Double(fields[6]) else { return nil }
    return sectors * 512
}

/// SLUICE_BENCH_FLASH_DIR: a directory on a filesystem nothing else writes to (e.g. a loop-mounted ext4 image);
/// the Sluice edge of the flash scenarios keeps its store there and the device's own write count is printed.
let flashDeviceDir: String? = ProcessInfo.processInfo.environment["SLUICE_BENCH_FLASH_DIR"]

/// What strace saw the store do while it was attached.
struct StoreSyscalls {
    var bytes = 0.0  // returned by write-family calls on files in the store directory
    var flushes = 0.0  // fdatasync/fsync/sync_file_range calls, plus writes through O_DSYNC/O_SYNC descriptors
}

/// strace attached to every thread of a running process, writing to a file; stopped with SIGINT (which detaches).
final class SyscallTrace {
    private let process: ChildProcess
    private let output: String

    init?(pid: Int32, output: String) {
        guard access("/usr/bin/strace", X_OK) == 0 else { return nil }
        self.output = output
        let calls = "write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,sync_file_range,msync"
        guard
            let p = try? ChildProcess.spawn(
                "/usr/bin/strace",
                ["-f", "-qq", "-y", "-e", "trace=\(calls)", "-o", output, "-p", "\(pid)"],
                logPath: output + ".log"
            )
        else { return nil }
        process = p
    }

    /// Detaches strace and sums what it saw on files under `storeDir`. `syncFDs` are the descriptors opened with
    /// O_DSYNC or O_SYNC (a write through them is a flush).
    func finish(storeDir: String, syncFDs: Set<Int>) -> StoreSyscalls {
        kill(process.pid, SIGINT)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        var result = StoreSyscalls()
        guard let text = try? String(contentsOfFile: output, encoding: .utf8) else { return result }
        for line in text.split(separator: "\n") {
            // "1234  pwrite64(5</tmp/x/sluice.db>, "..."..., 4096, 8192) = 4096"
            guard let open = line.firstIndex(of: "("), let fdEnd = line[open...].firstIndex(of: "<"),
                let pathEnd = line[fdEnd...].firstIndex(of: ">")
            else { continue }
            let call = line[..<open].split(separator: " ").last.map(String.init) ?? ""
            let fd = Int(line[line.index(after: open)..<fdEnd]) ?? -1
            let path = line[line.index(after: fdEnd)..<pathEnd]
            guard path.hasPrefix(storeDir), !path.hasSuffix(".log") else { continue }
            let returned = line.split(separator: "=").last.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            switch call {
            case "fsync", "fdatasync", "sync_file_range", "msync":
                result.flushes += 1
            default:
                result.bytes += max(0, returned ?? 0)
                if syncFDs.contains(fd) { result.flushes += 1 }
            }
        }
        return result
    }
}

/// Descriptors of `pid` opened with O_DSYNC or O_SYNC, from /proc/PID/fdinfo (flags are octal; O_DSYNC is 010000).
func syncDescriptors(_ pid: Int32) -> Set<Int> {
    let dir = "/proc/\(pid)/fdinfo"
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
    var result = Set<Int>()
    for entry in entries {
        guard let fd = Int(entry), let text = try? String(contentsOfFile: "\(dir)/\(entry)", encoding: .utf8) else {
            continue
        }
        for line in text.split(separator: "\n") where line.hasPrefix("flags:") {
            let flags = Int(line.dropFirst("flags:".count).trimmingCharacters(in: .whitespaces), radix: 8) ?? 0
            if flags & Int(O_DSYNC) != 0 { result.insert(fd) }
        }
    }
    return result
}

func flashScenario(_ c: FlashCase, quick: Bool) -> Scenario {
    let seconds = quick ? 6.0 : 20.0
    let traceSeconds = quick ? 4.0 : 10.0
    let rateText = c.rate == c.rate.rounded() ? "\(Int(c.rate))" : "\(c.rate)"
    let tag = "flash \(c.sensors)×\(rateText)/s \(c.centralUp ? "up" : "down")"
    return Scenario(
        name: c.name,
        description:
            "\(c.sensors) QoS 1 sensor(s), \(rateText) msg/s in all, 64 B, bridged `bench/# out 1`, central \(c.centralUp ? "up" : "down"); \(Int(seconds)) s measured + \(Int(traceSeconds)) s under strace",
        metrics: [
            MetricSpec(key: "ioBytes", label: "\(tag): write_bytes per msg (B)", unit: "B", better: .lower),
            MetricSpec(key: "sysBytes", label: "\(tag): store write syscalls per msg (B)", unit: "B", better: .lower),
            MetricSpec(
                key: "deviceBytes",
                label: "\(tag): device writes per msg (B, own fs)",
                unit: "B",
                better: .lower
            ),
            MetricSpec(key: "flushes", label: "\(tag): device flushes per msg", unit: "1", better: .lower),
            MetricSpec(key: "commits", label: "\(tag): LMDB commits per msg", unit: "1", better: .info),
            MetricSpec(
                key: "floorBytes",
                label: "\(tag): floor: 4 KiB per commit, per msg (B)",
                unit: "B",
                better: .info
            ),
            MetricSpec(key: "p50", label: "\(tag): PUBACK latency p50 (ms)", unit: "ms", better: .lower),
            MetricSpec(key: "p99", label: "\(tag): PUBACK latency p99 (ms)", unit: "ms", better: .lower),
            MetricSpec(key: "gbPerDay", label: "\(tag): GB written per day at this rate", unit: "GB", better: .lower),
        ]
    ) { kind, ctx in
        let centralDir = try BrokerProcess.makeTempDir("central")
        var central: BrokerProcess? = try await startCentral(ctx, dir: centralDir)
        defer { central?.stop() }
        let centralPort = central!.port
        let edgeDir = try flashDeviceDir.map { try BrokerProcess.makeTempDir("edge", under: $0) }
        let (edge, metricsPort) = try await startBridgedEdge(kind, ctx, centralPort: centralPort, dir: edgeDir)
        defer { edge.stop() }
        do {
            try await waitForBridge(ctx, edgePort: edge.port, centralPort: centralPort)
            if !c.centralUp {
                central?.stop(removeDir: false)
                central = nil
                try await Task.sleep(nanoseconds: 1_000_000_000)  // the bridge notices and the queue starts to grow
            }
            var out = RunOutcome()
            // Pass 1: /proc write_bytes, commits, PUBACK latency.
            let io0 = processWriteBytes(edge.pid)
            let device0 = edgeDir.flatMap { deviceWriteBytes(path: $0) }
            let c0 = metricsPort.flatMap { StoreCounters.scrape(metricsPort: $0) }
            var acked = 0
            var latencies: [UInt64] = []
            let m = try await measured(edge) {
                (acked, latencies) = try await runSensors(ctx, port: edge.port, c, seconds: seconds)
            }
            try await Task.sleep(nanoseconds: 1_500_000_000)  // the last removals (central up) commit
            let io1 = processWriteBytes(edge.pid)
            let device1 = edgeDir.flatMap { deviceWriteBytes(path: $0) }
            let c1 = metricsPort.flatMap { StoreCounters.scrape(metricsPort: $0) }
            guard acked > 0 else { throw BenchError("no message was acknowledged") }
            let n = Double(acked)
            if let io0, let io1 { out.values["ioBytes"] = (io1 - io0) / n }
            if let device0, let device1 { out.values["deviceBytes"] = (device1 - device0) / n }
            if let c0, let c1 {
                out.values["commits"] = (c1.commits - c0.commits) / n
                out.values["floorBytes"] = 4096 * (c1.commits - c0.commits) / n
            }
            let sorted = latencies.sorted()
            out.values["p50"] = percentile(sorted, 0.50) / 1e6
            out.values["p99"] = percentile(sorted, 0.99) / 1e6
            if let perMessage = out.values["ioBytes"] { out.values["gbPerDay"] = perMessage * c.rate * 86_400 / 1e9 }
            out.record(m)

            // Pass 2, under strace: bytes handed to the store file and device flushes.
            let syncFDs = syncDescriptors(edge.pid)
            if let trace = SyscallTrace(pid: edge.pid, output: edge.dir + "/strace.out") {
                try await Task.sleep(nanoseconds: 500_000_000)  // attached to every thread
                let (tracedAcked, _) = try await runSensors(ctx, port: edge.port, c, seconds: traceSeconds)
                try await Task.sleep(nanoseconds: 1_500_000_000)
                let seen = trace.finish(storeDir: edge.dir, syncFDs: syncFDs)
                if tracedAcked > 0 {
                    out.values["sysBytes"] = seen.bytes / Double(tracedAcked)
                    out.values["flushes"] = seen.flushes / Double(tracedAcked)
                }
            } else {
                out.note = "strace not installed: no syscall rows"
            }
            return out
        } catch {
            throw BenchError("\(error)\nedge log:\n\(edge.logTail())")
        }
    }
}

/// `c.sensors` QoS 1 publishers on `bench/flash/sN`, paced to `c.rate` in all for `seconds`; returns how many were
/// acknowledged and each one's PUBACK latency.
func runSensors(_ ctx: BenchContext, port: Int, _ c: FlashCase, seconds: Double) async throws -> (Int, [UInt64]) {
    var channels: [Channel] = []
    var sensors: [BenchConnection] = []
    defer { for ch in channels { ch.close(promise: nil) } }
    let tag = UInt32.random(in: 0...UInt32.max)
    for i in 0..<c.sensors {
        let (ch, conn) = try await Net.connect(group: ctx.group, port: port, clientID: "flash\(tag)-\(i)").get()
        channels.append(ch)
        sensors.append(conn)
    }
    let perSensorRate = c.rate / Double(c.sensors)
    let perSensor = max(1, Int((perSensorRate * seconds).rounded()))
    // Each sensor starts at a random phase of its period, as independent devices do (in step, they would
    // arrive in bursts that group commit gathers, which flatters the store).
    let futures = sensors.enumerated().map { i, s in
        let phase = TimeAmount.nanoseconds(Int64(Double.random(in: 0..<(1 / perSensorRate)) * 1e9))
        return s.loop.flatScheduleTask(in: phase) {
            s.recordAckLatency = true
            return s.startPublishing(
                topic: "bench/flash/s\(i)",
                qos: .atLeastOnce,
                payloadSize: 64,
                count: perSensor,
                window: 20,
                rate: perSensorRate
            )
        }.futureResult
    }
    // Bounded: a sensor whose PUBACKs stop coming is counted with what it got.
    let done = SharedFlag()
    EventLoopFuture.whenAllComplete(futures, on: ctx.group.next()).whenComplete { _ in done.value = true }
    let deadline = nowNanos() + UInt64((seconds + 1 / perSensorRate + 30) * 1e9)
    while !done.value && nowNanos() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
    var acked = 0
    var latencies: [UInt64] = []
    for s in sensors {
        let (n, l) = try await s.loop.submit { (s.completed, s.ackLatencies) }.get()
        acked += n
        latencies += l
        s.loop.execute { s.disconnect() }
    }
    return (acked, latencies)
}
