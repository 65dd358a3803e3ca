import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

enum BrokerKind: String, CaseIterable, Codable {
    case mosquitto, sluice
}

/// Settings both brokers get. Everything else is each broker's default.
enum FairConfig {
    /// Lines added to both configs, with why.
    static let shared: [(String, String)] = [
        ("allow_anonymous true", "benchmark clients do not authenticate"),
        (
            "max_queued_messages 0",
            "unlimited per-client queue: Mosquitto's default 1000 would drop messages and count as loss"
        ),
    ]
    static let mosquittoOnly: [(String, String)] = [
        ("user root", "so Debian's mosquitto does not drop privileges away from the temp directory"),
        ("log_dest stderr", "log captured to a file in the temp directory"),
    ]
    static let sluiceOnly: [(String, String)] = [
        ("persistence_location DIR/", "Sluice's LMDB store in the run's temp directory")
    ]
    static var summary: String {
        var s = "Both brokers: listener PORT 127.0.0.1, "
        s += shared.map { $0.0 }.joined(separator: ", ")
        s += ". Mosquitto also: " + mosquittoOnly.map { $0.0 }.joined(separator: ", ")
        s += ". Sluice also: " + sluiceOnly.map { $0.0 }.joined(separator: ", ")
        s += ". All else default (e.g. max_inflight_messages 20 on both; Mosquitto persistence off)."
        return s
    }
}

/// A broker process started by the bench, on a free loopback port, with a generated config.
final class BrokerProcess: @unchecked Sendable {
    let kind: BrokerKind
    let port: Int
    let dir: String
    let process: ChildProcess
    var pid: Int32 { process.pid }

    private init(kind: BrokerKind, port: Int, dir: String, process: ChildProcess) {
        self.kind = kind
        self.port = port
        self.dir = dir
        self.process = process
    }

    static func makeTempDir(_ tag: String, under base: String = NSTemporaryDirectory()) throws -> String {
        let base = base.hasSuffix("/") ? base : base + "/"
        var template = Array((base + "sluice-bench-\(tag)-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw BenchError("mkdtemp failed") }
        return String(cString: p)
    }

    /// Starts a broker; `extraConfig` lines are appended (bridge scenarios).
    static func start(
        kind: BrokerKind,
        sluicePath: String,
        group: EventLoopGroup,
        port givenPort: Int? = nil,
        extraConfig: [String] = [],
        dir givenDir: String? = nil,
        startTimeout: Double = 15
    ) async throws -> BrokerProcess {
        let port: Int
        if let givenPort { port = givenPort } else { port = try await Net.freePort(group: group) }
        let dir = try givenDir ?? makeTempDir(kind.rawValue)
        var lines = ["listener \(port) 127.0.0.1"] + FairConfig.shared.map { $0.0 }
        switch kind {
        case .mosquitto: lines += FairConfig.mosquittoOnly.map { $0.0 }
        case .sluice: lines += ["persistence_location \(dir)/"]
        }
        lines += extraConfig
        let confPath = dir + "/broker.conf"
        try (lines.joined(separator: "\n") + "\n").write(toFile: confPath, atomically: true, encoding: .utf8)
        let executable: String
        let arguments: [String]
        switch kind {
        case .mosquitto:
            executable = mosquittoPath()
            arguments = ["-c", confPath]
        case .sluice:
            executable = sluicePath
            arguments = ["run", "-c", confPath, "--log-level", "warning"]
        }
        let p = try ChildProcess.spawn(executable, arguments, logPath: dir + "/broker.log")
        let broker = BrokerProcess(kind: kind, port: port, dir: dir, process: p)
        // Wait (bounded) until it accepts connections.
        // (Polled every 5 ms: the bridge-startup scenario times this.)
        let deadline = Date().addingTimeInterval(startTimeout)
        while Date() < deadline {
            if !p.isRunning {
                throw BenchError("\(kind.rawValue) exited at start; log:\n\(broker.logTail())")
            }
            if await Net.canConnect(group: group, port: port) { return broker }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        broker.stop()
        throw BenchError(
            "\(kind.rawValue) did not listen on \(port) within \(Int(startTimeout)) s; log:\n\(broker.logTail())"
        )
    }

    static func mosquittoPath() -> String {
        for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        where FileManager.default.isExecutableFile(atPath: p) {
            return p
        }
        return "/usr/sbin/mosquitto"
    }

    func logTail() -> String {
        guard let s = try? String(contentsOfFile: dir + "/broker.log", encoding: .utf8) else { return "" }
        return s.split(separator: "\n").suffix(15).joined(separator: "\n")
    }

    /// Resident set size in bytes (VmRSS from /proc/PID/status).
    func rssBytes() -> Int? {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    /// Anonymous resident memory in bytes (RssAnon from /proc/PID/status): heap and stacks, without the
    /// binary's file-backed pages.
    func anonymousBytes() -> Int? {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("RssAnon:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    /// CPU seconds (user + system) the broker has used so far, from /proc/PID/stat.
    func cpuSeconds() -> Double? {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = s.lastIndex(of: ")")
        else { return nil }
        let fields = s[s.index(after: close)...].split(separator: " ")
        // fields[0] is state (field 3); utime is field 14, stime 15.
        guard fields.count > 13, let ut = Double(fields[11]), let st = Double(fields[12]) else { return nil }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        return (ut + st) / hz
    }

    /// SIGTERM, then SIGKILL after `timeout` seconds. Only this process (by its pid).
    func stop(removeDir: Bool = true, timeout: Double = 5) {
        if process.isRunning {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning {
                log("warning: \(kind.rawValue) (pid \(pid)) ignored SIGTERM for \(Int(timeout)) s: SIGKILL")
                kill(pid, SIGKILL)
                while process.isRunning { usleep(10_000) }
            }
        }
        if removeDir && ProcessInfo.processInfo.environment["SLUICE_BENCH_KEEP"] == nil {
            try? FileManager.default.removeItem(atPath: dir)
        }
    }
}

/// CPU seconds of this (load generator) process: getrusage(RUSAGE_SELF), user + system.
func generatorCPUSeconds() -> Double {
    var r = rusage()
    getrusage(RUSAGE_SELF.rawValue, &r)
    func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return s(r.ru_utime) + s(r.ru_stime)
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit (children inherit it). Returns the new soft limit.
func raiseFileLimit() -> Int {
    var lim = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
    }
    return Int(lim.rlim_cur)
}

func shell(_ cmd: String) -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", cmd]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return "" }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A child started with posix_spawn, with an empty signal mask and default signal dispositions
/// (Foundation's Process passes this process's blocked signals on, and a broker that never sees
/// SIGTERM cannot shut down cleanly, e.g. Mosquitto would not save its persistence file).
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    private let lock = NSLock()
    private var exited = false

    private init(pid: pid_t) { self.pid = pid }

    static func spawn(_ path: String, _ args: [String], logPath: String) throws -> ChildProcess {
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fa, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var all = sigset_t()
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &fa, &attr, argv, environ)
        guard rc == 0 else { throw BenchError("posix_spawn \(path): \(String(cString: strerror(rc)))") }
        return ChildProcess(pid: pid)
    }

    /// Reaps the child when it has exited (waitpid WNOHANG on its own pid only).
    var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        if exited { return false }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid || (r < 0 && errno == ECHILD) { exited = true }
        return !exited
    }
}
