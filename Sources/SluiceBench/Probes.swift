import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// CPU of a set of processes and of the generator at one instant, to turn two samples into
/// "% of one core" over the span between them.
struct CPUSample {
    var time: UInt64
    var generator: Double
    /// Per process (by the caller's key): CPU seconds so far, nil if it could not be read.
    var processes: [String: Double?]

    static func take(_ processes: [String: BrokerProcess]) -> CPUSample {
        CPUSample(
            time: nowNanos(),
            generator: generatorCPUSeconds(),
            processes: processes.mapValues { $0.cpuSeconds() }
        )
    }

    /// Share of one core used by `key` ("gen" for the generator) between `self` and `later`.
    func share(_ key: String, until later: CPUSample) -> Double? {
        let wall = Double(later.time - time) / 1e9
        guard wall > 0 else { return nil }
        if key == "gen" { return (later.generator - generator) / wall }
        guard let a = processes[key] ?? nil, let b = later.processes[key] ?? nil else { return nil }
        return (b - a) / wall
    }
}

/// A blocking HTTP/1.0 GET on 127.0.0.1 (for Sluice's metrics listener), bounded by a 2 s timeout.
func httpGet(port: Int, path: String) -> String? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else { return nil }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else { return nil }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16_384)
    // The server may keep the connection open: stop once Content-Length bytes of body are in.
    let separator = Array("\r\n\r\n".utf8)
    while response.count < 4 << 20 {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response += chunk[0..<n]
        guard let end = response.firstRange(of: separator) else { continue }
        let head = String(decoding: response[..<end.lowerBound], as: UTF8.self).lowercased()
        let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }
        if let length, response.count - end.upperBound >= length { break }
    }
    return String(decoding: response, as: UTF8.self)
}

/// Sluice's store counters from its metrics listener: LMDB write transactions committed and write
/// operations in them (`sluice_store_commits_total`, `sluice_store_operations_total`).
struct StoreCounters {
    var commits: Double
    var operations: Double

    static func scrape(metricsPort: Int) -> StoreCounters? {
        guard let text = httpGet(port: metricsPort, path: "/metrics") else { return nil }
        func value(_ name: String) -> Double? {
            for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
                return Double(line.split(separator: " ").last ?? "")
            }
            return nil
        }
        guard let commits = value("sluice_store_commits_total"),
            let operations = value("sluice_store_operations_total")
        else { return nil }
        return StoreCounters(commits: commits, operations: operations)
    }
}

/// Median time of `rounds` 4 KiB pwrite + fdatasync in `dir` (ms): what one durable write costs on
/// this disk right now. An LMDB commit costs two of them.
func fdatasyncMilliseconds(dir: String, rounds: Int = 15) -> Double? {
    let path = dir + "/fdatasync-probe"
    let fd = open(path, O_CREAT | O_WRONLY, 0o600)
    guard fd >= 0 else { return nil }
    defer {
        close(fd)
        unlink(path)
    }
    let page = [UInt8](repeating: 0x5a, count: 4096)
    var times: [Double] = []
    for i in 0..<rounds {
        let t0 = nowNanos()
        let written = page.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(i % 4) * 4096) }
        guard written == page.count, fdatasync(fd) == 0 else { return nil }
        times.append(Double(nowNanos() - t0) / 1e6)
    }
    times.sort()
    return times[times.count / 2]
}
