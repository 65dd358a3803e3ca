import SluiceConfig
import SluicePOSIX

#if canImport(Glibc)
    import Glibc
#endif

/// The standard Prometheus process collector's figures (`process_*`), read from /proc at scrape time.
struct ProcessMetrics: Equatable {
    var cpuSeconds: Double
    var residentBytes: Int
    var virtualBytes: Int
    /// Seconds since the Unix epoch.
    var startTimeSeconds: Double
    var openFileDescriptors: Int?
    var maxFileDescriptors: Int?

    /// This process, or nil where /proc is not mounted.
    static func current() -> ProcessMetrics? {
        guard let stat = try? FileSystem.readText("/proc/self/stat"),
            let system = try? FileSystem.readText("/proc/stat"),
            let bootTime = bootTime(procStat: system)
        else { return nil }
        let ticks = max(1, sysconf(Int32(_SC_CLK_TCK)))
        guard
            var metrics = parse(
                stat: stat,
                clockTicks: ticks,
                pageSize: sysconf(Int32(_SC_PAGESIZE)),
                bootTime: bootTime
            )
        else {
            return nil
        }
        metrics.openFileDescriptors = (try? FileSystem.directoryEntries("/proc/self/fd")).map { $0.count }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max {
            metrics.maxFileDescriptors = Int(clamping: limit.rlim_cur)
        }
        return metrics
    }

    /// Fields of /proc/[pid]/stat (proc(5)): counted after the command name's closing parenthesis, which
    /// may itself hold spaces and parentheses. utime 14, stime 15 and starttime 22 are in clock ticks,
    /// vsize 23 in bytes, rss 24 in pages.
    static func parse(stat: String, clockTicks: Int, pageSize: Int, bootTime: Double) -> ProcessMetrics? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // fields[0] is field 3 (state).
        func field(_ number: Int) -> Int? {
            let index = number - 3
            return fields.indices.contains(index)
                ? Int(fields[index].trimmingBlanksAndNewlines()) : nil
        }
        guard let user = field(14), let system = field(15), let start = field(22), let virtual = field(23),
            let resident = field(24), clockTicks > 0
        else { return nil }
        return ProcessMetrics(
            cpuSeconds: Double(user + system) / Double(clockTicks),
            residentBytes: resident * pageSize,
            virtualBytes: virtual,
            startTimeSeconds: bootTime + Double(start) / Double(clockTicks)
        )
    }

    /// `btime` of /proc/stat: when the system booted, in seconds since the Unix epoch.
    static func bootTime(procStat: String) -> Double? {
        let line = procStat.split(separator: "\n").first { $0.hasPrefix("btime ") }
        return line.flatMap { Double($0.dropFirst("btime ".count).trimmingBlanks()) }
    }

    func report(into page: inout MetricsPage) {
        page.add(
            "process_cpu_seconds_total",
            .counter,
            "Total user and system CPU time spent in seconds.",
            .real(cpuSeconds)
        )
        page.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", residentBytes)
        page.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", virtualBytes)
        page.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            startTimeSeconds.rounded(.down)
        )
        if let openFileDescriptors {
            page.gauge("process_open_fds", "Number of open file descriptors.", openFileDescriptors)
        }
        if let maxFileDescriptors {
            page.gauge("process_max_fds", "Maximum number of open file descriptors.", maxFileDescriptors)
        }
    }
}
