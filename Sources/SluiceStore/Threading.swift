#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A mutex with a condition variable on POSIX threads: what the writer used `NSCondition` for,
/// without linking full Foundation (and with it ICU) into the binary. Timed waits use the
/// monotonic clock, so a wall-clock step cannot stretch or cut a commit window.
public final class ConditionMutex: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        #if !canImport(Darwin)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        #endif
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }

    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    public func signal() { pthread_cond_signal(condition) }
    public func broadcast() { pthread_cond_broadcast(condition) }

    /// Waits for a signal; the mutex must be held.
    public func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits for a signal until `deadline` (from `deadline(after:)`); false once the deadline passed.
    /// The mutex must be held.
    public func wait(until deadline: timespec) -> Bool {
        var deadline = deadline
        #if canImport(Darwin)
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            var relative = timespec(
                tv_sec: max(0, deadline.tv_sec - now.tv_sec),
                tv_nsec: deadline.tv_nsec - now.tv_nsec
            )
            if relative.tv_nsec < 0 {
                relative.tv_sec -= 1
                relative.tv_nsec += 1_000_000_000
            }
            return pthread_cond_timedwait_relative_np(condition, mutex, &relative) == 0
        #else
            return pthread_cond_timedwait(condition, mutex, &deadline) == 0
        #endif
    }

    /// The moment `duration` from now, on the clock timed waits use.
    public static func deadline(after duration: Duration) -> timespec {
        var now = timespec()
        #if canImport(Darwin)
            clock_gettime(CLOCK_REALTIME, &now)
        #else
            clock_gettime(CLOCK_MONOTONIC, &now)
        #endif
        let (seconds, attoseconds) = duration.components
        var nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
        var wholeSeconds = Int(now.tv_sec) + Int(seconds)
        wholeSeconds += nanoseconds / 1_000_000_000
        nanoseconds %= 1_000_000_000
        return timespec(tv_sec: wholeSeconds, tv_nsec: nanoseconds)
    }
}

/// A named POSIX thread running one closure (the writer's `Thread`, without Foundation).
public final class NamedThread: @unchecked Sendable {
    private var handle: pthread_t?
    private let lock = ConditionMutex()

    public init() {}

    /// Starts `body` on a new thread called `name` (at most 15 bytes are kept on Linux).
    public func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadBody(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread,
            nil,
            { raw in
                let start = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
                NamedThread.nameCurrentThread(start.name)
                start.body()
                return nil
            },
            box
        )
        precondition(result == 0, "pthread_create failed: \(result)")
        pthread_detach(thread)
        lock.withLock { handle = thread }
    }

    /// Linux keeps 15 bytes of a thread's name; `pthread_setname_np` is not visible to Swift without
    /// `_GNU_SOURCE`, so the name goes through procfs (best effort: only `top -H` and core dumps show it).
    private static func nameCurrentThread(_ name: String) {
        #if os(Linux)
            let descriptor = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return }
            defer { close(descriptor) }
            let bytes = Array(name.utf8.prefix(15))
            _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        #endif
    }

    /// Whether `start` has recorded the thread.
    var hasHandle: Bool { lock.withLock { handle != nil } }

    /// Whether the caller runs on this thread.
    public var isCurrent: Bool {
        guard let handle = lock.withLock({ handle }) else { return false }
        return pthread_equal(handle, pthread_self()) != 0
    }
}

private final class ThreadBody {
    let name: String
    let body: @Sendable () -> Void
    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}

/// `NSString`'s path helpers for the cases the gateway uses, without Foundation.
public enum PathText {
    /// `directory/component` (`appendingPathComponent`).
    public static func appending(_ component: String, to directory: String) -> String {
        if directory.isEmpty { return component }
        return directory.hasSuffix("/") ? directory + component : directory + "/" + component
    }

    /// The size of the file at `path` (stat(2)), or nil if it cannot be read. FoundationEssentials'
    /// `attributesOfItem` gives `UInt` where full Foundation gave an `Int`-bridging NSNumber.
    public static func fileSize(_ path: String) -> UInt64? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return UInt64(max(0, status.st_size))
    }

    /// The path without its last component (`deletingLastPathComponent`): "" for a bare name, "/" for a
    /// name in the root.
    public static func parent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "" }
        var parent = trimmed[..<slash]
        while parent.hasSuffix("/") { parent = parent.dropLast() }
        return parent.isEmpty ? "/" : String(parent)
    }
}
